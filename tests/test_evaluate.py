"""`evaluate`, metrics, the report and the `eval` command, with fake scorers and tiny JSONL."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from guardrail import Guard, builtin_policy
from guardrail._cli import main
from guardrail._data import LabeledExample
from guardrail._evaluate import binary_metrics, evaluate, write_report
from guardrail.testing import FunctionScorer, KeywordScorer


def test_binary_metrics_known_values() -> None:
    m = binary_metrics([0.9, 0.6, 0.55, 0.2, 0.1], [1, 0, 1, 0, 0], threshold=0.5)
    assert (m.n, m.positives) == (5, 2)
    assert m.precision == pytest.approx(2 / 3) and m.recall == 1.0 and m.fpr == pytest.approx(1 / 3)
    assert m.roc_auc == pytest.approx(5 / 6)
    assert m.best_f1 == pytest.approx(0.8) and m.best_threshold == pytest.approx(0.55)


def test_binary_metrics_one_class_has_no_auc() -> None:
    m = binary_metrics([0.3, 0.7], [0, 0])
    assert m.roc_auc is None and m.au_prc is None and m.best_f1 is None and m.fpr == 0.5


def _examples() -> list[LabeledExample]:
    return [
        LabeledExample(id="1", prompt="kill them all", labels={"hate": 1, "dangerous": 1}),
        LabeledExample(id="2", prompt="bake bread", labels={"hate": 0, "dangerous": 0}),
        LabeledExample(id="3", prompt="hi", response="you vermin", labels={"hate": 1}),
        LabeledExample(id="4", prompt="hi", response="hello", labels={"hate": 0}),
        LabeledExample(id="5", prompt="bomb recipe", labels={"dangerous": 1}),
        LabeledExample(id="6", prompt="only sexual known", labels={"sexual": 0}),
    ]


def _guard() -> Guard:
    scorer = KeywordScorer({"kill": 0.9, "vermin": 0.8, "bomb": 0.7, "bread": 0.3})
    return Guard([builtin_policy("hate", threshold=0.5), builtin_policy("dangerous", threshold=0.75)], scorer=scorer)


def test_evaluate_groups_and_any_is_max_over_known_policies() -> None:
    report = evaluate(_guard(), _examples())
    assert report.rows == 6 and report.skipped == 1  # row 6 has no label for hate/dangerous
    assert set(report.groups) == {"any", "any/input", "any/output", "dangerous", "dangerous/input",
                                  "hate", "hate/input", "hate/output"}
    assert report.raw["hate"].labels == [1, 0, 1, 0]
    assert report.raw["any"].scores == [0.9, 0.3, 0.8, 0.01, 0.7]
    assert report.raw["any"].labels == [1, 0, 1, 0, 1]
    # dangerous at 0.75 misses the bomb prompt (0.7); "any" counts a turn caught when any policy fires.
    assert report.groups["dangerous"].recall == pytest.approx(0.5)
    assert report.groups["any"].threshold is None and report.groups["any"].recall == pytest.approx(2 / 3)
    assert report.groups["hate"].roc_auc == 1.0
    assert report.latency_ms["checks"] == 5.0 and report.latency_ms["p95"] >= report.latency_ms["p50"] >= 0


def test_write_report_json_and_plots(tmp_path: Path) -> None:
    report = evaluate(_guard(), _examples())
    path = write_report(report, tmp_path / "out")
    data = json.loads(path.read_text())
    assert data["groups"]["hate"]["roc_auc"] == 1.0 and data["groups"]["any"]["threshold"] is None
    for name in ("pr_hate.png", "hist_hate.png", "pr_any.png", "hist_dangerous_input.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one_class = evaluate(_guard(), [LabeledExample(id="x", prompt="kill", labels={"hate": 1})])
    write_report(one_class, tmp_path / "one")
    assert (tmp_path / "one" / "hist_hate.png").exists() and not (tmp_path / "one" / "pr_hate.png").exists()


def test_cli_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": e.prompt, "response": e.response, "labels": dict(e.labels)}) + "\n"
                            for e in _examples()))
    scorer = FunctionScorer(lambda r: 0.9 if "kill" in r.turn.prompt else 0.1)
    code = main(["eval", str(data), "--policy", "hate", "--out", str(tmp_path / "r"), "--quiet", "--no-plots"],
                scorer=scorer)
    assert code == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert set(report["groups"]) >= {"hate", "any"} and report["groups"]["hate"]["n"] == 4
    assert not list((tmp_path / "r").glob("*.png"))
    assert main(["eval", str(tmp_path / "nope.jsonl")], scorer=scorer) == 2


def test_a_failing_scorer_is_an_error_not_a_pass(tmp_path: Path) -> None:
    def broken(request: object) -> float:
        return math.nan

    from guardrail import ScorerError

    with pytest.raises(ScorerError):
        evaluate(Guard(["hate"], scorer=FunctionScorer(broken)), _examples())
