"""``--format auto``: every box format read from its own markup, mixed files, the warning when a
forced format reads nothing; and the spam-boxes check of the grounding metrics' other side."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giqa.bench import detect_format, markup_formats, score
from giqa.bench.detect import FORMATS
from giqa.cli import main
from giqa.text.formats import get_format

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bench"
BENCH = EXAMPLE / "bench.jsonl"


def _grounded(fmt: str, rng: random.Random) -> str:
    boxes = []
    for _ in range(rng.randint(1, 2)):
        x1, y1 = rng.uniform(0, 0.6), rng.uniform(0, 0.6)
        boxes.append((x1, y1, x1 + rng.uniform(0.1, 0.3), y1 + rng.uniform(0.1, 0.3)))
    text = f"The image is poor. The {get_format(fmt).format_phrase('dog', boxes)} is blurry [3] (a, b)."
    return "<grounding> " + text if fmt == "kosmos2" else text


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_is_detected(fmt):
    rng = random.Random(fmt)
    for _ in range(50):
        assert detect_format(_grounded(fmt, rng)) == fmt
    assert set(FORMATS) == {"giqa", "giqa-norm", "kosmos2", "qwen-vl", "shikra", "ferret", "florence2", "paligemma"}


@pytest.mark.parametrize("text", [
    "The sky [left] is blurry (a, b) and 3/4 of it <is> dark.",
    "Ratings: [1, 2, 3] and [0.5] and (0.1, 0.2, 0.3, 0.4).",
    "Yes.",
    "",
])
def test_plain_text_has_no_format(text):
    assert detect_format(text) is None and markup_formats(text) == []


def test_several_markups_go_to_the_format_with_most_boxes():
    rng = random.Random(0)
    text = _grounded("qwen-vl", rng) + " " + _grounded("qwen-vl", rng) + " as [0, 1, 2, 3]"
    assert markup_formats(text) == ["qwen-vl", "ferret"]
    assert detect_format(text) == "qwen-vl"


def _run(tmp_path: Path, preds: Path, *extra: str) -> dict:
    out = tmp_path / preds.stem / "-".join(extra).replace("-", "")
    rc = main(["bench", "score", str(preds), "--gt", str(BENCH), "--out", str(out), "--bootstrap", "30",
               "--no-radar", "--tokenizer", "python", *extra])
    assert rc == 0
    return json.loads((out / "report.json").read_text())[0]


@pytest.mark.parametrize("fmt", ["giqa", "kosmos2", "qwen-vl", "plain"])
def test_example_files_score_the_same_without_format(tmp_path, fmt):
    preds = EXAMPLE / f"predictions.{fmt}.jsonl"
    auto = _run(tmp_path, preds)
    forced = _run(tmp_path, preds, "--format", "giqa" if fmt == "plain" else fmt)
    assert auto["metrics"] == forced["metrics"]
    assert auto["ci95"] == forced["ci95"]
    assert auto["settings"]["format"] == "auto"
    counts = auto["counts"]["formats"]
    assert counts.get(fmt if fmt != "plain" else "giqa", 0) == (0 if fmt == "plain" else counts.get(fmt))
    if fmt != "plain":
        assert counts[fmt] >= 5 and auto["metrics"]["des_miou"] is not None


def test_forgetting_the_format_is_no_longer_silent(tmp_path):
    wrong = _run(tmp_path, EXAMPLE / "predictions.kosmos2.jsonl", "--format", "giqa")
    assert wrong["metrics"]["des_miou"] is None  # giqa reads no Kosmos-2 boxes ...
    note = next(n for n in wrong["notes"] if "--format giqa read no boxes" in n)
    assert "kosmos2 markup" in note  # ... and says so
    auto = _run(tmp_path, EXAMPLE / "predictions.kosmos2.jsonl")
    assert auto["metrics"]["des_miou"] is not None and auto["metrics"]["bleu4"] > 1
    assert not any("read no boxes" in n for n in auto["notes"])


def test_a_mixed_file_scores_each_answer_in_its_format():
    by_fmt = {f: {json.loads(l)["id"]: json.loads(l)["answer"] for l in (EXAMPLE / f"predictions.{f}.jsonl").open()}
              for f in ("giqa", "kosmos2", "qwen-vl")}
    ids = list(by_fmt["giqa"])
    mixed = {i: by_fmt[("giqa", "kosmos2", "qwen-vl")[k % 3]][i] for k, i in enumerate(ids)}
    r = score(mixed, BENCH, n_boot=0, tokenizer="python")
    assert set(r.counts["formats"]) >= {"giqa", "kosmos2", "qwen-vl"}
    ref = score(by_fmt["giqa"], BENCH, n_boot=0, tokenizer="python")
    assert r.metrics["bleu4"] == pytest.approx(ref.metrics["bleu4"])  # same words in every format
    assert r.metrics["acc_y"] == ref.metrics["acc_y"]
    assert abs(r.metrics["des_miou"] - ref.metrics["des_miou"]) < 0.15


# -- both sides of grounding --------------------------------------------------------------------
def _spam(names: list[str]) -> str:
    """441 boxes that ignore the image: every rectangle of a 6 x 6 lattice (21 spans per
    axis, 21 x 21 boxes), under each of ``names``."""
    spans = [(i / 6, j / 6) for i in range(6) for j in range(i + 1, 7)]
    boxes = [(x1, y1, x2, y2) for x1, x2 in spans for y1, y2 in spans]
    assert len(boxes) == 441
    fmt = get_format("giqa-norm")
    return " ".join(fmt.format_phrase(name, boxes) for name in names)


def test_spam_boxes_raise_recall_and_sink_precision():
    from giqa.bench import read_bench, read_predictions

    gt = {s.id: s for s in read_bench(BENCH)}
    honest = {p.id: p.answer for p in read_predictions(EXAMPLE / "predictions.giqa.jsonl")}
    spam_x = {k: v + " " + _spam(["x"]) if gt[k].task.value == "des" else v for k, v in honest.items()}
    spam_names = {k: v + " " + _spam([r.phrase for r in gt[k].regions]) if gt[k].task.value == "des" else v
                  for k, v in honest.items()}  # the reference names, as the experiment did
    a, b, c = (score(p, list(gt.values()), n_boot=0, tokenizer="python") for p in (honest, spam_x, spam_names))
    m0, mx, mn = a.metrics, b.metrics, c.metrics
    assert mx["des_miou"] > m0["des_miou"] + 0.05  # recall rises ...
    assert mn["des_tag_recall"] > m0["des_tag_recall"]
    assert mx["des_box_precision"] < m0["des_box_precision"] / 10  # ... precision collapses
    assert mx["des_box_f1"] < m0["des_box_f1"]
    assert mx["des_boxes_per_answer"] > 400 > m0["des_boxes_per_answer"]
    assert m0["des_box_precision"] > 0.3 and m0["des_box_recall"] is not None
    md = b.to_markdown()
    assert "Box-P" in md and "Boxes/answer" in md


# Pieces of answers for the reader's fast route: canonical giqa mentions, other formats' markup,
# phrases that look like Shikra / Ferret boxes, and prose with brackets of every kind.
_ANSWER_PIECES = [
    "[tower](<35, 319>)", "[water surface](<160, 299>, <200, 399>)", "[ sky ](<0, 399>)", "[a](<399, 0>)",
    "[x](<5, 400>)", "[](<1, 22>)", "[t](0.1, 0.2, 0.3, 0.4)", "[0.1,0.2,0.3,0.4](<1, 22>)",
    "[12, 34, 56, 78](<1, 22>)", "[.5](<1, 2>)", "<ref>cat</ref><box>(1,2),(3,4)</box>", "<loc_12><loc_40>",
    "<loc0256>", "<grounding>", "<phrase>dog</phrase><object><patch_index_0001><patch_index_0040></object>",
    "[0.1,0.2,0.3,0.4]", "[12, 34, 56, 78]", "the", " ", "is blurry.", "(taken at night)", "a < b", "\n", "[", "]",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_ANSWER_PIECES), max_size=8).map("".join),
       st.sampled_from(["auto", "giqa"]), st.sampled_from([(20, 20), (7, 3)]))
def test_reader_fast_route_equals_detecting_and_parsing(text, fmt, grid):
    from giqa.bench.items import _Reader

    reader = _Reader(fmt)
    assert reader.read(text, grid) == reader._parse(text, grid)
