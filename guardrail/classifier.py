"""The classifier toolkit: labeled data, LoRA tuning, evaluation and calibration.

What `guardrail tune`, `guardrail eval` and `guardrail calibrate` run, as a small Python API:

>>> from guardrail.classifier import TuneOptions, load_labeled, tune
>>> rows = load_labeled(["train.jsonl"])                                       # doctest: +SKIP
>>> tune("embedded", rows, out_dir="my-adapter", policies=["hate"],            # doctest: +SKIP
...      options=TuneOptions(epochs=3))
>>> from guardrail.classifier import evaluate, calibrate                       # doctest: +SKIP

The model side: `embedded_model_path()` is the converted embedded base (Gemma 3 270M),
`default_adapter()` the adapter this build ships and `calibrated_thresholds()` its thresholds;
`encode_request` gives the exact token ids a local scorer reads for a request (one BOS, control
tokens typed inside content kept as plain text), which training and benchmarks share.

Importing this module loads no torch, transformers or peft; they load when a function needs them.
"""

from __future__ import annotations

from guardrail._calibrate import GOALS, Calibration, calibrate, pick_threshold, write_thresholds
from guardrail._data import (
    DataSummary,
    LabeledExample,
    LabeledPair,
    dataset_hash,
    labeled_pairs,
    load_labeled,
    split_examples,
)
from guardrail._embedded import calibrated_thresholds, default_adapter, embedded_model_path
from guardrail._evaluate import BinaryMetrics, EvalReport, binary_metrics, evaluate, write_report
from guardrail._tokens import answer_token_ids, control_token_ids, encode_prompt, encode_request
from guardrail._tune import RunOptions, TuneOptions, TuneResult, read_training_record, tune

__all__ = [
    "BinaryMetrics",
    "Calibration",
    "DataSummary",
    "EvalReport",
    "GOALS",
    "LabeledExample",
    "LabeledPair",
    "RunOptions",
    "TuneOptions",
    "TuneResult",
    "answer_token_ids",
    "binary_metrics",
    "calibrate",
    "calibrated_thresholds",
    "control_token_ids",
    "dataset_hash",
    "default_adapter",
    "embedded_model_path",
    "encode_prompt",
    "encode_request",
    "evaluate",
    "labeled_pairs",
    "load_labeled",
    "pick_threshold",
    "read_training_record",
    "split_examples",
    "tune",
    "write_report",
    "write_thresholds",
]
