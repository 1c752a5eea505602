"""The embedded default is base + the shipped adapter + the thresholds calibrated for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail import BatchingScorer, Guard, builtin_policy, load_config
from guardrail._embedded import EmbeddedScorer, calibrated_thresholds, default_adapter

SHIPPED = Path(__file__).resolve().parents[1] / "guardrail" / "adapters" / "embedded-v2"


def _per_policy() -> dict[str, float]:
    """The calibrated thresholds by policy name (without the `NAME/output` ones)."""
    return {k: v for k, v in calibrated_thresholds().items() if "/" not in k}


def test_the_package_ships_a_small_adapter_with_thresholds() -> None:
    assert default_adapter() == SHIPPED
    sizes = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert sizes < 20 * 2**20, "the shipped adapter must stay under 20 MB"
    data = json.loads((SHIPPED / "thresholds.json").read_text())
    assert set(data["policies"]) == {"dangerous", "harassment", "hate", "sexual"}
    expected = {k: v["threshold"] for k, v in data["policies"].items()}
    expected |= {f"{k}/output": v["output_threshold"] for k, v in data["policies"].items() if "output_threshold" in v}
    assert calibrated_thresholds() == expected
    assert all(0 < t < 1 for t in calibrated_thresholds().values())


def test_guard_without_a_scorer_uses_the_shipped_adapter_and_its_thresholds() -> None:
    guard = Guard()
    # Batching is composed around the default scorer; the thresholds are the scorer's.
    assert isinstance(guard.scorer, BatchingScorer) and guard.scorer.max_wait_ms == 0
    assert isinstance(guard.scorer.inner, EmbeddedScorer) and guard.scorer.inner.adapter == str(SHIPPED)
    assert {p.name: p.threshold for p in guard.policies} == _per_policy()
    assert all(p.threshold_for("output") == calibrated_thresholds().get(f"{p.name}/output", p.threshold)
               for p in guard.policies)
    explicit = Guard(scorer=EmbeddedScorer())
    assert {p.name: p.threshold for p in explicit.policies} == _per_policy()
    assert EmbeddedScorer(adapter=None).thresholds == {}
    assert all(p.threshold == 0.5 for p in Guard(scorer=EmbeddedScorer(adapter=None)).policies)


def test_explicit_choices_win_over_the_calibration() -> None:
    guard = Guard([builtin_policy("hate", threshold=0.9), "sexual"])
    assert [p.threshold for p in guard.policies] == [0.9, calibrated_thresholds()["sexual"]]
    assert EmbeddedScorer(adapter=None).adapter is None


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("", "calibrated"),
        ("[policies.hate]\naction = 'flag'\n", "calibrated"),
        ("[policies.hate]\nthreshold = 0.7\n", 0.7),
        ("[model]\nadapter = 'none'\n[policies.hate]\n", 0.5),
    ],
)
def test_config_uses_the_calibration_only_for_the_shipped_adapter(tmp_path: Path, toml: str, expected: object) -> None:
    path = tmp_path / "g.toml"
    path.write_text(toml)
    config = load_config(path, environ={})
    hate = next(p for p in config.policies if p.name == "hate")
    assert hate.threshold == (calibrated_thresholds()["hate"] if expected == "calibrated" else expected)
    scorer = config.model.build_scorer().inner  # inside the BatchingScorer
    assert scorer.adapter == (None if "none" in toml else str(SHIPPED))
    assert config.select(["sexual"]).policies[0].threshold == (0.5 if "none" in toml else calibrated_thresholds()["sexual"])
