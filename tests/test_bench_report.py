"""Reports a researcher can check: provenance, breakdowns, paired tests, paper rows, labels,
row names, radar chart, no interval for N/A, the CLI's flags and clean errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from giqa.bench import Judge, compare_reports, reference_reports, score, table5_markdown, unique_names
from giqa.bench.bootstrap import VqaArrays, paired_bootstrap
from giqa.bench.paper_table5 import TABLE5
from giqa.bench.ptb import PORT_NAME
from giqa.bench.report import radar_chart, write_reports
from giqa.cli import main
from giqa.models.callable import CallableLLM
from giqa.types import Sample

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bench"
BENCH = EXAMPLE / "bench.jsonl"


def _yes_no_bench(answers: list[str]) -> list[Sample]:
    out = [Sample(id=f"y{k}", image="a.jpg", task="vqa", vqa_kind="yes_no", question="Is it blurry?", answer=a)
           for k, a in enumerate(answers)]
    out += [Sample(id="w0", image="a.jpg", task="vqa", vqa_kind="why", question="Why?", answer="Noise."),
            Sample(id="w1", image="a.jpg", task="vqa", vqa_kind="how", question="How?", answer="Badly.")]
    return out


def test_breakdown_shows_an_always_no_model():
    gt = _yes_no_bench(["No."] * 6 + ["Yes."] * 4)
    preds = {f"y{k}": "No, it is fine." for k in range(10)} | {"w0": "noise", "w1": "badly"}
    judge = Judge(CallableLLM(lambda m: '{"score": 2.5}'))
    r = score(preds, gt, judge=judge, n_boot=0, tokenizer="python")
    b = r.breakdown
    assert r.metrics["acc_y"] == pytest.approx(0.6)  # looks fine ...
    assert b["by_gt"]["yes"] == {"n": 4, "acc": 0.0} and b["by_gt"]["no"] == {"n": 6, "acc": 1.0}  # ... it is not
    assert b["yes_ratio"] == 0.0 and b["always_no"] == pytest.approx(0.6) and b["always_yes"] == pytest.approx(0.4)
    assert b["by_kind"]["yes_no"] == {"n": 10, "acc": pytest.approx(0.6)}
    assert b["by_kind"]["why"] == {"n": 1, "acc": pytest.approx(2.5 / 4)}  # judge decimals kept
    assert r.metrics["acc_w"] == pytest.approx(2.5 / 4)
    md = r.to_markdown()
    assert "always-No" in md and "0.6000" in md


def test_first_word_rule_in_scoring():
    gt = _yes_no_bench(["Yes."])
    r = score({"y0": "Yes, there is no visible noise."}, gt, n_boot=0, tokenizer="python")
    assert r.metrics["acc_y"] == 1.0


def test_no_interval_for_na_metrics():
    gt = _yes_no_bench(["Yes.", "No.", "Yes."])
    r = score({"y0": "Yes", "y1": "No", "y2": "No"}, gt, n_boot=300, tokenizer="python")
    assert r.metrics["acc_total"] is None and "acc_total" not in r.ci  # no judge for the open items
    assert "acc_w" not in r.ci and "acc_y" in r.ci


def test_provenance_and_raw_outputs(tmp_path):
    preds = EXAMPLE / "predictions.kosmos2.jsonl"

    class Served(CallableLLM):
        base_url = "http://judge.example/v1"

    judge = Judge(Served(lambda m: "I'd say 3 out of 4", model_id="my-judge"))
    r = score(preds, BENCH, judge=judge, n_boot=0, tokenizer="python", command=["giqa", "bench", "score", "x"])
    p = r.provenance
    assert p["bench"]["sha256"] == hashlib.sha256(BENCH.read_bytes()).hexdigest()
    assert p["predictions"]["sha256"] == hashlib.sha256(preds.read_bytes()).hexdigest()
    assert p["predictions"]["path"] == str(preds)
    assert p["tokenizer"] == PORT_NAME and p["bleu"] == "coco" and p["command"] == ["giqa", "bench", "score", "x"]
    assert p["judge"]["model"] == "my-judge" and p["judge"]["url"] == "http://judge.example/v1"
    assert p["giqa_version"] and p["timestamp"].endswith("+00:00")
    row = next(s for s in r.per_sample if s["id"] == "coffee-des")
    assert row["raw_prediction"].startswith("<grounding>") and "<" not in row["prediction"]
    assert row["judge_raw"] == "I'd say 3 out of 4" and row["judge_score"] == 3
    # in-memory inputs are hashed too, as id<TAB>text lines
    r2 = score({"coffee-des": "x"}, BENCH, n_boot=0, tokenizer="python")
    assert r2.provenance["predictions"]["path"] is None
    assert r2.provenance["predictions"]["sha256"] == hashlib.sha256(b"coffee-des\tx\n").hexdigest()


def _vqa_arrays(correct: np.ndarray) -> VqaArrays:
    n = len(correct)
    z = np.zeros(n)
    return VqaArrays(np.ones(n, bool), correct.astype(float), np.full(n, np.nan), z, z, z, z, has_judge=False)


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    base = (rng.random(200) < 0.6).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:30]] = 1.0  # right on 30 more items, never worse
    got = paired_bootstrap(_vqa_arrays(better), _vqa_arrays(base), n_boot=500, seed=1)["acc_y"]
    assert got["diff"] == pytest.approx(30 / 200)
    assert got["low"] > 0 and got["p"] < 0.01
    same = paired_bootstrap(_vqa_arrays(base), _vqa_arrays(base), n_boot=200)["acc_y"]
    assert same["diff"] == 0 and same["p"] == 1.0
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap(_vqa_arrays(base), _vqa_arrays(base[:10]))


def test_compare_reports_between_files():
    gt = _yes_no_bench(["Yes."] * 20 + ["No."] * 20)
    good = {f"y{k}": ("Yes" if k < 20 else "No") for k in range(40)}
    bad = {f"y{k}": "No" for k in range(40)}
    ra = score(good, gt, name="good", n_boot=0, tokenizer="python")
    rb = score(bad, gt, name="bad", n_boot=0, tokenizer="python")
    (c,) = compare_reports([ra, rb, *reference_reports(["Ferret"])], n_boot=300)
    assert (c["a"], c["b"]) == ("good", "bad")
    assert c["metrics"]["acc_y"]["diff"] == pytest.approx(0.5) and c["metrics"]["acc_y"]["p"] < 0.01
    md = table5_markdown([ra, rb], comparisons=[c])
    assert "Paired bootstrap, good minus bad" in md and "| acc_y | +0.5000 |" in md


def test_paper_rows_are_the_papers_numbers():
    rows = reference_reports()
    assert len(rows) == len(TABLE5) == 16 and all(r.reference for r in rows)
    ferret = next(r for r in rows if "Ferret" in r.name)
    assert ferret.metrics["des_miou"] == 0.6458 and ferret.metrics["acc_total"] == 0.4417
    llava = next(r for r in rows if r.name == "paper: LLaVA-v1.5-7B")
    assert llava.value("des_miou") is None and llava.metrics["bleu4"] == 2.82
    md = table5_markdown(rows[:2])
    assert "*paper: LLaVA-v1.5-7B*" in md and "N/A" in md
    with pytest.raises(ValueError, match="no Table 5 method"):
        reference_reports(["GPT-9"])


def test_unique_row_names():
    assert unique_names(["runA/preds.jsonl", "runB/preds.jsonl", "x/other.jsonl"]) == ["runA/preds", "runB/preds", "other"]
    assert unique_names(["a/b/p.jsonl", "c/b/p.jsonl"]) == ["a/b/p", "c/b/p"]
    assert unique_names(["p.jsonl", "p.jsonl"]) == ["p #1", "p #2"]


def test_sacrebleu_flavour_labels_everywhere(tmp_path):
    r = score(EXAMPLE / "predictions.giqa.jsonl", BENCH, bleu_flavour="sacrebleu-13a", n_boot=0)
    paths = write_reports([r], tmp_path)
    md = paths["md"].read_text()
    assert "BLEU@4 (sacrebleu-13a)" in md and "BLEU@4 (coco)" not in md
    assert "sacrebleu-13a" in paths["csv"].read_text().splitlines()[1]
    mixed = table5_markdown([r, *reference_reports(["Ferret"])])
    assert "BLEU@4 (flavour per row)" in mixed and "[sacrebleu-13a]" in mixed and "[coco]" in mixed


def test_radar_on_absolute_axes_with_na(tmp_path, monkeypatch):
    import matplotlib.axes

    texts = []
    original = matplotlib.axes.Axes.annotate

    def spy(self, text, xy, *a, **kw):
        texts.append((text, xy[1]))
        return original(self, text, xy, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", spy)
    plain = score(EXAMPLE / "predictions.plain.jsonl", BENCH, n_boot=0, tokenizer="python")
    path = radar_chart([plain], tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [t for t, _ in texts]
    assert labels.count("N/A") == 7  # no boxes (4 grounding axes) and no judge (3)
    acc_y = plain.value("acc_y")
    assert (f"{acc_y * 100:.1f}", pytest.approx(acc_y * 100)) in texts  # absolute 0-100, not scaled to the best


def test_cli_two_files_same_stem_and_references(tmp_path):
    for run in ("runA", "runB"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "preds.jsonl").write_text((EXAMPLE / "predictions.giqa.jsonl").read_text())
    out = tmp_path / "rep"
    rc = main(["bench", "score", str(tmp_path / "runA" / "preds.jsonl"), str(tmp_path / "runB" / "preds.jsonl"),
               "--gt", str(BENCH), "--out", str(out), "--bootstrap", "50", "--tokenizer", "python",
               "--reference", "Ferret", "--no-radar"])
    assert rc == 0
    data = json.loads((out / "report.json").read_text())
    assert [d["name"] for d in data] == ["runA/preds", "runB/preds", "paper: Ferret-7B"]
    assert len(list(out.glob("per_sample.*.jsonl"))) == 2
    assert data[0]["provenance"]["command"][:3] == ["giqa", "bench", "score"]
    assert "--reference" in data[0]["provenance"]["command"]
    comparisons = json.loads((out / "comparisons.json").read_text())
    assert comparisons[0]["metrics"]["acc_y"]["diff"] == 0.0  # the same answers twice


def test_cli_duplicate_ids_is_a_clean_error(tmp_path, capsys):
    preds = tmp_path / "dup.jsonl"
    preds.write_text('{"id": "astronaut-des", "answer": "a"}\n{"id": "coffee-des", "answer": "b"}\n'
                     '{"id": "astronaut-des", "answer": "c"}\n')
    rc = main(["bench", "score", str(preds), "--gt", str(BENCH), "--tokenizer", "python"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "'astronaut-des' appears twice (lines 1 and 3)" in err
    with pytest.raises(SystemExit, match="no such file"):
        main(["bench", "score", str(tmp_path / "missing.jsonl"), "--gt", str(BENCH)])


def test_cli_judge_flags_need_a_judge():
    with pytest.raises(SystemExit, match="need --judge"):
        main(["bench", "score", str(EXAMPLE / "predictions.giqa.jsonl"), "--gt", str(BENCH), "--judge-timeout", "5"])


def test_cli_judge_timeout_and_retries_reach_the_http_backend(tmp_path):
    import argparse

    from giqa.cli.bench import _judge

    args = argparse.Namespace(judge="openai", judge_model="m", judge_base_url="http://127.0.0.1:9/v1",
                              judge_device=None, judge_timeout=2.5, judge_retries=1, judge_parse_retries=3,
                              judge_cache=None, out=str(tmp_path))
    judge = _judge(args)
    try:
        assert judge.llm.settings.timeout_s == 2.5 and judge.llm.settings.max_retries == 1
        assert judge.max_retries == 3 and judge.base_url == "http://127.0.0.1:9/v1"
    finally:
        judge.llm.close()
        judge.cache.close()
