"""Threshold picking and the TOML edit, with fake scorers and hand-written files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from guardrail import ConfigError, Guard, load_config
from guardrail._calibrate import calibrate, pick_threshold, write_thresholds
from guardrail._cli import main
from guardrail._data import DataSummary, LabeledExample
from guardrail.testing import KeywordScorer

SCORES = [0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05]
LABELS = [1, 1, 0, 1, 1, 0, 1, 0, 0, 0]


def test_f1_goal_picks_the_f1_optimal_observed_score_and_sits_in_the_gap_below_it() -> None:
    c = pick_threshold(SCORES, LABELS, goal="f1")
    # 0.3 is the F1-optimal observed score; 0.2 the next lower one: the threshold goes between.
    assert c.threshold == pytest.approx(0.25) and c.f1 == pytest.approx(10 / 12) and (c.n, c.positives) == (10, 5)
    predicted = [s >= c.threshold for s in SCORES]
    assert predicted == [s >= 0.3 for s in SCORES]  # the same decisions as at the observed score


def test_the_lowest_observed_score_is_its_own_threshold() -> None:
    assert pick_threshold([0.9, 0.2], [1, 1], goal="f1").threshold == 0.2


def test_target_goals() -> None:
    precise = pick_threshold(SCORES, LABELS, goal="precision", target=1.0)
    assert precise.threshold == pytest.approx(0.85) and precise.recall == pytest.approx(0.4)
    recall = pick_threshold(SCORES, LABELS, goal="recall", target=1.0)
    assert recall.threshold == pytest.approx(0.25) and recall.fpr == pytest.approx(0.4)
    fpr = pick_threshold(SCORES, LABELS, goal="fpr", target=0.2)
    assert fpr.threshold == pytest.approx(0.5) and fpr.fpr == pytest.approx(0.2) and fpr.recall == pytest.approx(0.8)


@pytest.mark.parametrize(("goal", "target", "message"), [
    ("f1", 0.5, "none for f1"), ("precision", None, "give a target"), ("auc", None, "must be one of"),
    ("precision", 1.5, "in \\[0, 1\\]"),
])
def test_bad_goals(goal: str, target: float | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        pick_threshold(SCORES, LABELS, goal=goal, target=target)


def test_unreachable_target_and_missing_class() -> None:
    with pytest.raises(ConfigError, match="no threshold reaches"):
        pick_threshold([0.9, 0.8], [0, 1], goal="precision", target=1.0)
    with pytest.raises(ConfigError, match="no positive"):
        pick_threshold([0.9, 0.8], [0, 0], goal="f1", policy="hate")


CONFIG = """# my guard
[model]
name = "embedded"   # keep this comment

[policies.hate]
threshold = 0.5   # old
action = "flag"

[policies.dangerous]
stages = ["input"]
"""


def _fit(threshold: float, policy: str = "hate") -> object:
    """A fit on two pairs whose threshold is `threshold`."""
    return dataclasses.replace(pick_threshold([threshold, 0.0], [1, 0], policy=policy), threshold=threshold)


def test_write_thresholds_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "guard.toml"
    path.write_text(CONFIG)
    data = DataSummary(files=("d.jsonl",), sha256="ab" * 32, rows=10)
    write_thresholds(path, {"hate": _fit(0.37), "dangerous": _fit(0.8, "dangerous")}, data=data)
    text = path.read_text()
    assert "# my guard" in text and "# keep this comment" in text and "# old" not in text
    assert text.count("# calibrated by guardrail: f1 on 2 pairs (1 positive) from 10 rows, sha256 abababab") == 2
    config = load_config(path)
    assert {p.name: p.threshold for p in config.policies} == {"hate": 0.37, "dangerous": 0.8}
    assert config.policies[0].action.value == "flag"
    write_thresholds(path, {"hate": _fit(0.41)}, data=data)  # again: replaced, not duplicated
    text = path.read_text()
    assert text.count("threshold =") == 2 and "0.37" not in text and load_config(path).policies[0].threshold == 0.41


def test_a_file_without_policies_keeps_every_default_policy(tmp_path: Path) -> None:
    path = tmp_path / "guard.toml"
    path.write_text('[model]\nname = "embedded"\n')
    write_thresholds(path, {"hate": _fit(0.3)}, all_policies=["dangerous", "harassment", "hate", "sexual"])
    config = load_config(path)
    assert [p.name for p in config.policies] == ["dangerous", "harassment", "hate", "sexual"]
    from guardrail._embedded import calibrated_thresholds

    # The fitted policy takes its new threshold; the others keep the embedded model's defaults.
    assert config.policies[2].threshold == 0.3
    assert config.policies[0].threshold == calibrated_thresholds().get("dangerous", 0.5)


def test_a_layout_it_cannot_edit_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "guard.toml"
    original = '[policies]\nhate = { threshold = 0.5 }\n'
    path.write_text(original)
    with pytest.raises(ConfigError, match="set the thresholds by hand"):
        write_thresholds(path, {"hate": _fit(0.3)})
    assert path.read_text() == original


def test_calibrate_with_a_guard_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scorer = KeywordScorer({"vermin": 0.9, "pests": 0.6, "bugs": 0.4})
    rows = [LabeledExample(id=str(n), prompt=p, labels={"hate": y})
            for n, (p, y) in enumerate([("vermin", 1), ("pests", 1), ("bugs", 0), ("bread", 0)])]
    assert calibrate(Guard(["hate"], scorer=scorer), rows)["hate"].threshold == pytest.approx(0.5)

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": r.prompt, "labels": dict(r.labels)}) + "\n" for r in rows))
    path = tmp_path / "guard.toml"
    path.write_text(CONFIG)
    assert main(["calibrate", str(data), "--config", str(path), "--dry-run", "--quiet"], scorer=scorer) == 0
    assert path.read_text() == CONFIG
    assert main(["calibrate", str(data), "--config", str(path), "--goal", "recall", "--target", "1", "--quiet"],
                scorer=scorer) == 0
    assert load_config(path).policies[0].threshold == pytest.approx(0.5)
    assert "hate: threshold 0.5000" in capsys.readouterr().out
    assert main(["calibrate", str(data), "--config", str(path), "--goal", "precision", "--quiet"], scorer=scorer) == 2
