"""score(): every Table 5 column on hand-checked benches, other models' formats, reports, CIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from giqa.bench import BenchReport, Judge, bleu, read_bench, score, write_reports
from giqa.errors import ParseError
from giqa.bench.bootstrap import VqaArrays, bootstrap_cis
from giqa.models.callable import CallableEmbedder, CallableLLM
from giqa.types import Box, Sample

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bench"


def g(phrase: str, *boxes) -> str:
    """giqa grounded text for a phrase (20 x 20 grid)."""
    from giqa.text import format_phrase

    return format_phrase(phrase, [Box.from_xyxy(b) for b in boxes])


SKY = (0.0, 0.0, 1.0, 0.4)
EYE1, EYE2 = (0.2, 0.3, 0.4, 0.5), (0.6, 0.3, 0.8, 0.5)
WINDOW = (0.5, 0.0, 1.0, 0.5)


def _bench() -> list[Sample]:
    q = "Describe and evaluate the quality of the image."
    return [
        Sample(id="d1", image="a.jpg", task="des", question=q, answer=f"The {g('sky', SKY)} is overexposed."),
        Sample(id="d2", image="b.jpg", task="des", question=q,
               answer=f"The cat's {g('eyes', EYE1, EYE2)} are sharp, the fur is soft."),
        Sample(id="y1", image="a.jpg", task="vqa", vqa_kind="yes_no", question="Is the sky overexposed?", answer="Yes."),
        Sample(id="y2", image="b.jpg", task="vqa", vqa_kind="yes_no", question="Is the cat blurry?", answer="No."),
        Sample(id="w1", image="c.jpg", task="vqa", vqa_kind="what", question="What is overexposed?",
               answer=f"The {g('window', WINDOW)}.", vqa_mode="grounding"),
        Sample(id="w2", image="c.jpg", task="vqa", vqa_kind="how", question="How is the door?", answer="Blurry."),
    ]


PREDS = {
    "d1": f"The {g('sky', SKY)} is overexposed.",
    "d2": f"The {g('eyes', EYE1)} are sharp.",
    "y1": "Yes, it is.",
    "y2": "I don't know",
    "w1": f"The {g('door', WINDOW)}.",
    "w2": "blurry.",
}


def _exact_judge_fn(messages):
    """4 when the candidate equals the reference (case-insensitive), else 1."""
    p = messages[0]["content"]
    if "Reference description:" in p:
        ref = p.split("Reference description:\n")[1].split("\n\n")[0]
        cand = p.split("Candidate description:\n")[1].split("\n\n")[0]
    else:
        ref = p.split("Correct answer:\n")[1].split("\n\n")[0]
        cand = p.split("Model answer:\n")[1].split("\n\n")[0]
    return '{"score": %d}' % (4 if ref.strip().lower() == cand.strip().lower() else 1)


def test_score_hand_checked_bench():
    judge = Judge(CallableLLM(_exact_judge_fn, model_id="exact-judge"))
    r = score(PREDS, _bench(), judge=judge, n_boot=200)
    m = r.metrics
    assert m["des_miou"] == pytest.approx(2 / 3)  # sky 1.0, eyes 1.0 + 0 (one eye missing)
    assert m["des_tag_recall"] == pytest.approx(2 / 3)
    assert m["llm_score"] == pytest.approx((4 + 1) / 2 * 25)
    assert m["vqa_miou"] == pytest.approx(1.0)  # right box ...
    assert m["vqa_tag_recall"] == 0.0  # ... wrong name
    assert m["acc_y"] == 0.5
    assert m["acc_w"] == pytest.approx((1 + 4) / 8)
    assert m["acc_total"] == pytest.approx((2 * 0.5 + 2 * 0.625) / 4)
    expected_bleu = bleu(["The sky is overexposed.", "The eyes are sharp."],
                         ["The sky is overexposed.", "The cat's eyes are sharp, the fur is soft."])
    assert m["bleu4"] == pytest.approx(expected_bleu.score * 100)
    assert r.counts == {"des": 2, "vqa_y": 2, "vqa_w": 2, "missing": 0, "extra": 0, "judge_failed": 0,
                        "formats": {"giqa": 3, "plain": 3}}
    ps = {s["id"]: s for s in r.per_sample}
    assert ps["y2"]["yes_no"] is None and ps["y2"]["correct"] is False
    assert ps["d2"]["n_ref_boxes"] == 2 and ps["d2"]["n_pred_boxes"] == 1
    assert ps["d1"]["prediction"] == "The sky is overexposed."
    for k, v in m.items():
        if k in r.ci:
            lo, hi = r.ci[k]
            assert lo - 1e-9 <= v <= hi + 1e-9, k


def test_without_judge_judge_metrics_are_na():
    r = score(PREDS, _bench(), n_boot=0)
    assert r.metrics["llm_score"] is None and r.metrics["acc_w"] is None and r.metrics["acc_total"] is None
    assert r.metrics["acc_y"] == 0.5
    assert any("no judge" in n for n in r.notes)


def test_na_for_a_model_without_boxes():
    plain = {k: v for k, v in PREDS.items()}
    plain.update(d1="The sky is overexposed.", d2="The eyes are sharp.", w1="The door.")
    r = score(plain, _bench(), n_boot=50)
    for k in ("des_miou", "des_tag_recall", "vqa_miou", "vqa_tag_recall"):
        assert r.metrics[k] is None and k not in r.ci
    assert "N/A" in r.to_markdown()


def test_embedder_similarity_for_tag_recall():
    vecs = {"window": [1.0, 0.0], "door": [0.8, 0.6], "sky": [0.0, 1.0], "eyes": [0.6, 0.8]}
    emb = CallableEmbedder(lambda t: vecs[t], model_id="toy")
    r = score(PREDS, _bench(), embedder=emb, n_boot=0)
    assert r.metrics["vqa_tag_recall"] == 1.0  # cos(door, window) = 0.8 > 0.5
    assert emb.calls == 1  # every name embedded in one call


def test_missing_extra_and_duplicate_predictions():
    preds = [{"id": "d1", "answer": "The sky."}, {"id": "zzz", "answer": "?"}]
    r = score(preds, _bench(), n_boot=0)
    assert r.counts["missing"] == 5 and r.counts["extra"] == 1
    with pytest.raises(ParseError, match="'d1' appears twice \\(entries 1 and 2\\)"):
        score([{"id": "d1", "answer": "a"}, {"id": "d1", "answer": "b"}], _bench())
    with pytest.raises(ValueError, match="flavour"):
        score(PREDS, _bench(), bleu_flavour="nist")


def test_unparseable_judge_is_reported_and_left_out():
    def fn(messages):
        return "great" if "Blurry" in messages[0]["content"] or "blurry" in messages[-1]["content"] else _exact_judge_fn(messages)

    r = score(PREDS, _bench(), judge=Judge(CallableLLM(fn), max_retries=1), n_boot=0)
    assert r.counts["judge_failed"] == 1
    assert r.metrics["acc_w"] == pytest.approx(1 / 4)  # only w1 (score 1) remains
    assert any("unparseable" in n and "w2" in n for n in r.notes)


@pytest.fixture(scope="module")
def example_reports():
    gt = read_bench(EXAMPLE / "bench.jsonl")
    return {
        fmt: score(EXAMPLE / f"predictions.{fmt}.jsonl", gt, fmt=fmt if fmt != "plain" else "giqa", n_boot=100,
                   tokenizer="python")
        for fmt in ("giqa", "kosmos2", "qwen-vl", "plain")
    }


def test_example_bench_is_valid():
    gt = read_bench(EXAMPLE / "bench.jsonl")
    assert sum(s.task.value == "des" for s in gt) == 4
    assert {s.vqa_kind.value for s in gt if s.vqa_kind} == {"yes_no", "what", "why", "how"}
    for s in gt:
        assert (EXAMPLE / s.image).is_file()


@pytest.mark.parametrize("fmt", ["kosmos2", "qwen-vl"])
def test_other_formats_score_like_giqa(example_reports, fmt):
    ours, other = example_reports["giqa"], example_reports[fmt]
    # same words, different box syntax: text metrics agree exactly
    assert other.metrics["bleu4"] == pytest.approx(ours.metrics["bleu4"], rel=1e-9)
    assert other.metrics["acc_y"] == ours.metrics["acc_y"]
    # boxes are read (not N/A) and land near the same places
    for k in ("des_miou", "vqa_miou"):
        assert other.metrics[k] is not None and abs(other.metrics[k] - ours.metrics[k]) < 0.15
    assert other.metrics["vqa_tag_recall"] == ours.metrics["vqa_tag_recall"] == 1.0
    assert other.settings["format"] == fmt
    clean = {s["id"]: s["prediction"] for s in other.per_sample}
    assert "<" not in clean["coffee-des"] and "saucer" in clean["coffee-des"]


def test_plain_text_model_gets_na(example_reports):
    assert example_reports["plain"].metrics["des_miou"] is None
    assert example_reports["plain"].metrics["bleu4"] == pytest.approx(example_reports["giqa"].metrics["bleu4"])


def test_report_files(tmp_path, example_reports):
    reports = [example_reports["giqa"], example_reports["plain"]]
    paths = write_reports(reports, tmp_path)
    md = paths["md"].read_text()
    assert md.count("\n| ") >= 4 and "BLEU@4" in md and "N/A" in md and "95%" in md
    rows = paths["csv"].read_text().splitlines()
    assert rows[0].startswith("method,reference,bleu_flavour,des_miou,des_tag_recall,bleu4") and len(rows) == 3
    data = json.loads(paths["json"].read_text())
    assert data[1]["metrics"]["des_miou"] is None
    back = BenchReport.from_dict(data[0])
    assert back.metrics["bleu4"] == pytest.approx(example_reports["giqa"].metrics["bleu4"])
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    per = [json.loads(l) for l in next(p for k, p in paths.items() if k.startswith("per_sample")).read_text().splitlines()]
    assert len(per) == 16 and {"id", "prediction", "raw_prediction", "iou_sum", "box_hits"} <= set(per[0])
    assert not list(tmp_path.glob("*.incomplete"))


def _yes_no_arrays(n: int, rate: float, seed: int) -> VqaArrays:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(float)
    z = np.zeros(n)
    return VqaArrays(np.ones(n, bool), y, np.full(n, np.nan), z, z, z, z, has_judge=False)


def test_bootstrap_contains_estimate_and_narrows():
    widths = []
    for n in (30, 300):
        a = _yes_no_arrays(n, 0.7, seed=n)
        ci = bootstrap_cis(None, a, n_boot=500, seed=0)
        lo, hi = ci["acc_y"]
        assert lo <= a.y.mean() <= hi
        widths.append(hi - lo)
        assert "acc_w" not in ci and "vqa_miou" not in ci  # N/A metrics get no interval
    assert widths[1] < widths[0] * 0.6  # ~ 1/sqrt(10)
    # seeded: the same seed gives the same interval
    a = _yes_no_arrays(30, 0.7, seed=1)
    assert bootstrap_cis(None, a, n_boot=200, seed=3) == bootstrap_cis(None, a, n_boot=200, seed=3)


def test_yes_no_fallback_asks_the_judge_only_for_unknowns():
    asked = []

    def fn(messages):
        p = messages[0]["content"]
        if "yes/no question" in p:
            asked.append(p)
            return '{"answer": "no"}'
        return _exact_judge_fn(messages)

    r = score(PREDS, _bench(), judge=Judge(CallableLLM(fn)), yes_no_fallback=True, n_boot=0)
    assert len(asked) == 1 and "I don't know" in asked[0]
    assert r.metrics["acc_y"] == 1.0  # y2 read as "no", which is right
    with pytest.raises(ValueError, match="needs a judge"):
        score(PREDS, _bench(), yes_no_fallback=True)


def test_malformed_jsonl_names_the_line(tmp_path):
    from giqa.bench import read_predictions

    good = '{"id": "d1", "answer": "a"}\n'
    for bad, why in (("{nope\n", "not valid JSON"), ("[1, 2]\n", "not a JSON object"), (b"\xff\n", "not valid UTF-8"),
                     ('{"id": "d2"}\n', "needs a string 'id' and a string 'answer'")):
        p = tmp_path / "preds.jsonl"
        p.write_bytes(b"\xef\xbb\xbf" + good.encode() + b"\n" + (bad if isinstance(bad, bytes) else bad.encode()))
        with pytest.raises(ParseError, match=f"preds.jsonl: line 3: .*{why}"):
            read_predictions(p)
    p.write_text(good + "\n" + good.replace("d1", "d2"))
    assert [(x.id, x.line) for x in read_predictions(p)] == [("d1", 1), ("d2", 3)]
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_predictions(tmp_path / "missing.jsonl")
