"""scripts/evaluate_adapter.py and scripts/adapter_metrics.py with fake scorers and tiny files."""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import adapter_metrics as am  # noqa: E402
import evaluate_adapter as ea  # noqa: E402

from guardrail import Guard, builtin_policy  # noqa: E402
from guardrail._calibrate import pick_threshold  # noqa: E402
from guardrail._exceptions import ConfigError  # noqa: E402
from guardrail.testing import FunctionScorer  # noqa: E402

POLICIES = ("dangerous", "harassment", "hate", "sexual")


def test_fast_fpr_threshold_matches_pick_threshold() -> None:
    checked = 0
    for trial in range(200):
        rng = random.Random(trial)
        n = rng.randint(5, 150)
        labels = [int(rng.random() < 0.4) for _ in range(n)]
        if not 0 < sum(labels) < n:
            continue
        scores = [round(rng.random(), 2) if trial % 2 else rng.random() for _ in range(n)]  # ties half the time
        try:
            expected = pick_threshold(scores, labels, goal="fpr", target=0.05).threshold
        except ConfigError:  # the top negatives tie with everything above them: no threshold at all
            with pytest.raises(ValueError):
                am.fpr_threshold(scores, labels)
            continue
        assert am.fpr_threshold(scores, labels) == expected
        checked += 1
    assert checked > 100


def test_a_lower_fpr_target_fits_a_higher_threshold() -> None:
    neg = [{"id": f"n{i}", "stage": "input", "labels": {"hate": 0}, "scores": {"hate": i / 100}} for i in range(100)]
    pos = [{"id": f"p{i}", "stage": "input", "labels": {"hate": 1}, "scores": {"hate": 0.5 + i / 100}} for i in range(50)]
    loose, strict = (am.fit_thresholds(neg + pos, ["hate"], target=t, rounds=50)["hate"] for t in (0.05, 0.01))
    assert loose.threshold == pytest.approx(0.945) and loose.fpr == pytest.approx(0.05)
    assert strict.threshold == pytest.approx(0.985) and strict.fpr == pytest.approx(0.01)
    assert strict.recall < loose.recall


def _blocked(scores: list[float], threshold: float) -> list[bool]:
    return [s >= threshold for s in scores]


def test_recall_at_five_percent_fpr_and_at_the_guard_threshold() -> None:
    negatives = [i / 100 for i in range(20)]  # 0.00 .. 0.19: one may reach the threshold
    positives = [0.175, 0.3, 0.4, 0.5]
    scores, labels = negatives + positives, [0] * 20 + [1] * 4
    m = am.group_metrics(scores, labels, _blocked(scores, 0.35))
    assert (m.n, m.positives) == (24, 4)
    assert m.recall_at_fpr == pytest.approx(0.75)  # 0.175 sits below the 0.18 negative
    assert m.threshold_at_fpr == pytest.approx((0.19 + 0.3) / 2)
    assert m.recall == pytest.approx(0.5) and m.fpr == 0.0 and m.precision == 1.0
    assert m.roc_auc == pytest.approx((18 + 3 * 20) / 80)  # 0.175 beats the 18 negatives below it


def test_no_threshold_reaches_the_fpr_when_negatives_tie_at_the_top() -> None:
    m = am.group_metrics([0.5, 0.5, 0.5, 0.2], [1, 0, 0, 0], [True, True, True, False])
    assert m.recall_at_fpr is None and m.threshold_at_fpr is None
    assert m.recall == 1.0 and m.fpr == pytest.approx(2 / 3)


def _row(rid: str, stage: str, labels: dict, scores: dict, threshold: float = 0.5) -> dict:
    return {"id": rid, "stage": stage, "labels": labels, "scores": scores, "source": "s", "prompt": rid,
            "blocked": {p: v >= threshold for p, v in scores.items()}}


def test_groups_follow_the_known_labels_and_any_is_the_max() -> None:
    rows = [
        _row("a", "input", {"hate": 1}, {"hate": 0.9, "sexual": 0.2}),
        _row("b", "input", {"hate": 0, "sexual": 0}, {"hate": 0.1, "sexual": 0.7}),
        _row("c", "output", {"sexual": 1}, {"hate": 0.95, "sexual": 0.3}),
    ]
    groups = am.pairs_by_group(rows, ["hate", "sexual"])
    assert set(groups) == {"hate", "hate/input", "sexual", "sexual/input", "sexual/output", "any", "any/input", "any/output"}
    assert groups["hate"][1] == [1, 0] and groups["sexual"][1] == [0, 1]
    # any: max over the row's labelled policies only (c's hate score 0.95 is not used: hate is unknown there)
    assert groups["any"] == ([0.9, 0.7, 0.3], [1, 0, 1], [True, True, False])


def test_fitted_thresholds_keep_calibration_fpr_and_have_an_interval() -> None:
    rng = random.Random(5)
    rows = [_row(f"n{i}", "input", {"hate": 0}, {"hate": rng.betavariate(2, 5)}) for i in range(300)]
    rows += [_row(f"p{i}", "input", {"hate": 1}, {"hate": rng.betavariate(5, 2)}) for i in range(120)]
    rows += [_row(f"o{i}", "output", {"hate": int(i < 40)}, {"hate": rng.random()}) for i in range(160)]
    fits = am.fit_thresholds(rows, ["hate"], rounds=200, seed=1)
    assert set(fits) == {"hate", "hate/input", "hate/output"}
    for fit in fits.values():
        assert fit.low <= fit.threshold <= fit.high
        assert fit.fpr <= 0.05
    assert fits["hate/input"].recall > fits["hate/output"].recall  # the output rows are noise
    assert fits["hate/input"].positives == 120 and fits["hate"].n == 580


def test_stages_get_their_own_thresholds_only_where_their_intervals_part() -> None:
    rng = random.Random(6)
    low = [_row(f"i{i}", "input", {"hate": int(i < 150)}, {"hate": rng.uniform(0.2, 0.4) if i < 150 else rng.uniform(0, 0.2)})
           for i in range(450)]
    high = [_row(f"o{i}", "output", {"hate": int(i < 150)}, {"hate": rng.uniform(0.8, 1) if i < 150 else rng.uniform(0.6, 0.8)})
            for i in range(450)]
    fits = am.fit_thresholds(low + high, ["hate"], rounds=200, seed=1)
    threshold, output = am.choose_thresholds(fits, "hate")
    assert 0.18 < threshold < 0.22 and 0.78 < output < 0.82  # one pooled threshold would miss the inputs
    marked = ea.blocked(low[:1] + high[:1], {"hate": threshold, "hate/output": output})
    assert [r["blocked"]["hate"] for r in marked] == [True, True]
    assert ea.blocked(low[:1], {"hate": 0.5})[0]["blocked"]["hate"] is False
    same = am.fit_thresholds(low + [{**r, "stage": "output", "id": "x" + r["id"]} for r in low], ["hate"], rounds=200)
    assert am.choose_thresholds(same, "hate")[1] is None  # overlapping intervals: one pooled threshold
    data = ea.thresholds_json(fits, ["hate"], Path("cal.jsonl"), 900, 0.05)
    assert data["policies"]["hate"]["output_threshold"] == pytest.approx(output, abs=1e-6)
    assert "FPR <= 0.05" in data["fitted_on"]["goal"]


def test_list_figures_count_rows_blocked_by_any_policy() -> None:
    rows = [
        {**_row("m1", "input", {"dangerous": 1}, {"dangerous": 0.9, "hate": 0.1}), "category": "weapons"},
        {**_row("m2", "input", {"dangerous": 1}, {"dangerous": 0.2, "hate": 0.8}), "category": "weapons"},
        {**_row("m3", "input", {"hate": 1}, {"dangerous": 0.1, "hate": 0.2}), "category": "hate"},
    ]
    f = am.list_figures(rows)
    assert (f["n"], f["blocked"]) == (3, 2) and f["blocked_share"] == pytest.approx(2 / 3)
    assert f["caught_by_labelled_policy"] == pytest.approx(1 / 3)
    assert f["by_category"] == {"hate": {"n": 1, "blocked": 0}, "weapons": {"n": 2, "blocked": 2}}
    assert f["fired"] == {"dangerous": 1, "hate": 1}


def test_stratified_limit_takes_every_stratum_and_is_stable() -> None:
    rows = [{"id": f"a{i}", "prompt": "x", "response": None, "labels": {"hate": 0}, "source": "big"} for i in range(100)]
    rows += [{"id": f"b{i}", "prompt": "x", "response": "y", "labels": {"hate": 1}, "source": "small"} for i in range(3)]
    picked = ea.stratified(rows, 10, seed=1)
    assert len(picked) == 10 and sum(r["source"] == "small" for r in picked) == 3
    assert picked == ea.stratified(rows, 10, seed=1)
    assert ea.stratified(rows, None, seed=1) == rows


def test_calibration_keeps_every_positive_and_a_sample_of_negatives() -> None:
    rows = [{"id": f"r{i}", "prompt": f"p{i}", "labels": {"hate": int(i % 10 == 0)}, "source": "s"} for i in range(200)]
    chosen = ea.with_every_positive(rows, 30, seed=1)
    assert sum(r["labels"]["hate"] for r in chosen) == 20 and len(chosen) == 50
    assert chosen == ea.with_every_positive(rows, 30, seed=1) and ea.with_every_positive(rows, None, seed=1) == rows


def test_exclude_drops_rows_an_adapter_trained_on_but_not_shared_short_prompts() -> None:
    trained = [{"prompt": "What do you think?", "response": "they are all vermin and should leave this country now"}]
    rows = [
        {"id": "1", "prompt": "Tell me.", "response": "They are all vermin and should leave this country, now!"},
        {"id": "2", "prompt": "What do you think?", "response": "I like the park near my house a lot"},
    ]
    assert [r["id"] for r in ea.exclude(rows, trained)] == ["2"]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _files(tmp_path: Path) -> dict[str, Path]:
    rng = random.Random(2)
    held = []
    for i in range(40):
        bad = i % 4 == 0
        held.append({"id": f"h{i}", "prompt": ("bomb " if bad else "bread ") + str(i), "response": None,
                     "labels": {"dangerous": int(bad), "sexual": 0}, "source": "src", "meta": {"kind": "source"}})
    held.append({"id": "h-out", "prompt": "hi", "response": "bomb parts", "labels": {"dangerous": 1}, "source": "src"})
    cal = [{"id": f"c{i}", "prompt": ("bomb " if i % 3 == 0 else "cake ") + str(rng.random()), "response": None,
            "labels": {"dangerous": int(i % 3 == 0)}, "source": "cal"} for i in range(90)]
    must = [{"id": "mb0", "prompt": "bomb recipe", "response": None, "labels": {"dangerous": 1}, "category": "explosives"},
            {"id": "mb1", "prompt": "a quiet threat", "response": None, "labels": {"harassment": 1}, "category": "threats"}]
    over = [{"id": "ob0", "prompt": "Tell me about bread.", "response": None, "labels": dict.fromkeys(POLICIES, 0),
             "category": "cooking"},
            {"id": "ob1", "prompt": "How do bomb squads work?", "response": None, "labels": dict.fromkeys(POLICIES, 0),
             "category": "safety"}]
    return {"heldout": _write(tmp_path / "heldout.jsonl", held), "calibration": _write(tmp_path / "cal.jsonl", cal),
            "must": _write(tmp_path / "must.jsonl", must), "over": _write(tmp_path / "over.jsonl", over)}


class CountingScorer(FunctionScorer):
    """Dangerous when the judged text mentions a bomb; everything else scores low. Counts requests."""

    def __init__(self) -> None:
        self.calls = 0
        super().__init__(self._score)

    def _score(self, request) -> float:  # noqa: ANN001
        self.calls += 1
        text = request.turn.response if request.turn.response is not None else request.turn.prompt
        return 0.9 if "bomb" in text and "Dangerous" in request.guideline else 0.05


def test_main_writes_the_report_fits_thresholds_and_reuses_scores(tmp_path: Path) -> None:
    f = _files(tmp_path)
    scorer = CountingScorer()
    guard = Guard([builtin_policy(p, threshold=0.5) for p in POLICIES], scorer=scorer)
    out = tmp_path / "eval"
    argv = ["--heldout", str(f["heldout"]), "--must-block", str(f["must"]), "--over-blocking", str(f["over"]),
            "--calibration", str(f["calibration"]), "--bootstrap", "50", "--thresholds-out", str(tmp_path / "t.json"),
            "--out", str(out), "--quiet"]
    assert ea.main(argv, guard=guard) == 0
    report = json.loads((out / "report.json").read_text())
    first_calls = scorer.calls
    assert first_calls == (41 + 90 + 4) * 4  # every row once, four policies each
    groups = report["heldout"]["groups"]
    assert groups["dangerous/input"]["roc_auc"] == 1.0 and groups["dangerous/input"]["recall"] == 1.0
    assert groups["dangerous/output"]["positives"] == 1 and groups["dangerous/output"]["fpr"] is None
    assert report["must_block"]["blocked"] == 1 and report["must_block"]["caught_by_labelled_policy"] == 0.5
    assert report["over_blocking"]["blocked"] == 1  # "bomb squads" trips the keyword fake
    assert [r["id"] for r in report["over_blocking"]["blocked_rows"]] == ["ob1"]
    saved = json.loads((tmp_path / "t.json").read_text())
    assert 0.05 < saved["policies"]["dangerous"]["threshold"] < 0.9
    assert saved["policies"]["dangerous"]["per_stage"]["input"]["positives"] == 30
    text = (out / "report.md").read_text()
    assert "| dangerous/input | 40 | 10 | 1.000 |" in text and "Must block: 1/2 blocked (50.0 %)" in text
    assert "`ob1` 'How do bomb squads work?'" in text and "only 30 calibration positives" in text
    # A rerun with the same --out scores nothing again.
    assert ea.main(argv, guard=guard) == 0
    assert scorer.calls == first_calls


def test_use_fitted_applies_the_calibrated_thresholds(tmp_path: Path) -> None:
    f = _files(tmp_path)
    guard = Guard([builtin_policy(p, threshold=0.95) for p in POLICIES], scorer=CountingScorer())
    base = ["--heldout", str(f["heldout"]), "--must-block", str(f["must"]), "--over-blocking", str(f["over"]), "--quiet"]
    ea.main([*base, "--out", str(tmp_path / "a")], guard=guard)
    ea.main([*base, "--out", str(tmp_path / "b"), "--calibration", str(f["calibration"]), "--bootstrap", "20",
             "--use-fitted"], guard=guard)
    at_guard = json.loads((tmp_path / "a" / "report.json").read_text())
    at_fitted = json.loads((tmp_path / "b" / "report.json").read_text())
    assert at_guard["must_block"]["blocked"] == 0 and at_fitted["must_block"]["blocked"] == 1
    assert at_fitted["thresholds_from"].startswith("fitted")


def test_calibration_can_cap_positives_per_policy_and_stage_keeping_thin_cells_whole() -> None:
    rows = [{"id": f"h{i}", "prompt": f"h{i}", "labels": {"hate": 1, "sexual": 0}, "source": "s"} for i in range(300)]
    rows += [{"id": f"s{i}", "prompt": f"s{i}", "response": "r", "labels": {"sexual": 1}, "source": "s"} for i in range(40)]
    rows += [{"id": f"b{i}", "prompt": f"b{i}", "labels": {"hate": 1, "sexual": 1}, "source": "s"} for i in range(5)]
    rows += [{"id": f"n{i}", "prompt": f"n{i}", "labels": {"hate": 0}, "source": "s"} for i in range(100)]
    chosen = ea.with_every_positive(rows, 20, seed=3, per_cell=60)
    cells = Counter(c for r in chosen for c in ea._cells(r))
    assert 60 <= cells["hate/input"] <= 65  # capped (rows drawn later for sexual/input may add to it)
    assert cells["sexual/output"] == 40 and cells["sexual/input"] == 5  # thinner than the cap: kept whole
    assert sum(not any(r["labels"].values()) for r in chosen) == 20
    assert chosen == ea.with_every_positive(rows, 20, seed=3, per_cell=60)
