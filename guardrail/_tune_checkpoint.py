"""Resumable tuning: what a stopped run needs to go on exactly as if it had never stopped.

A checkpoint (`<out>/checkpoint/state.pt`, a few MB) holds the fp32 adapter weights, the
optimizer and scheduler state, where the run is (epoch, steps done, the shuffling RNG as it was at
the start of the epoch), the torch and Python RNGs, and the validation history with the best
weights so far. `<out>/checkpoint/adapter/` is the current adapter, loadable as is. A checkpoint
records a fingerprint of the options and the encoded data: resuming with other data or other
options is an error, not a silent restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail._exceptions import ConfigError

__all__ = ["Progress", "fingerprint", "load_checkpoint", "save_checkpoint"]

STATE = "state.pt"


@dataclass
class Progress:
    """Where a run is. `order_state` is the shuffling RNG's state at the start of `epoch`."""

    epoch: int = 1
    step: int = 0
    steps_done: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_weights: list[Any] | None = None
    stale: int = 0
    order_state: Any = None


def fingerprint(options: dict[str, Any], rows: list[Any]) -> str:
    """sha256 of the options and every encoded row: a resumed run must see the same of both."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for row in rows:
        digest.update(repr((row.prefix, row.suffixes, row.labels)).encode())
    return digest.hexdigest()


def save_checkpoint(
    directory: Path, *, progress: Progress, weights: list[Any], optimizer: Any, scheduler: Any, print_: str,
) -> None:
    """Write the state to `directory/state.pt` atomically (a crash mid-write leaves the old one)."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "fingerprint": print_,
        "progress": progress.__dict__,
        "weights": [w.detach().clone() for w in weights],
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
    }
    partial = directory / (STATE + ".partial")
    torch.save(state, partial)
    os.replace(partial, directory / STATE)


def load_checkpoint(
    directory: Path, *, weights: list[Any], optimizer: Any, scheduler: Any, print_: str,
) -> Progress:
    """Restore weights (in place), optimizer, scheduler and RNGs; return where the run was."""
    import torch

    path = directory / STATE
    if not path.is_file():
        raise ConfigError(f"no checkpoint to resume at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["fingerprint"] != print_:
        raise ConfigError(
            f"the checkpoint at {directory} was made with other data or options; "
            "resume with the same command, or start afresh in another directory"
        )
    with torch.no_grad():
        for target, saved in zip(weights, state["weights"], strict=True):
            target.copy_(saved)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return Progress(**state["progress"])
