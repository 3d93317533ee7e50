"""``giqa build sources / export / stats`` end to end on the example sources and known samples."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from giqa.cli import main
from giqa.data import load_samples, write_jsonl
from giqa.data.io import read_jsonl

from test_data_stats import known_set

SOURCES = Path(__file__).resolve().parents[1] / "examples" / "sources"


def test_build_sources(tmp_path, capsys):
    out = tmp_path / "items.jsonl"
    rc = main(["build", "sources", "--qpathway", str(SOURCES / "q-instruct" / "cleaned_labels.json"),
               "--dq495k", *map(str, sorted(SOURCES.glob("DataDepictQA/KADIS700K/*/metas/*.json"))),
               "--root", str(SOURCES), "--check-images", "--out", str(out)])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == 11 and report["sources"]["DQ-495K"]["skipped"] == 1
    items = list(read_jsonl(out))
    assert items[0]["image"] == "q-instruct/spaq_koniq/00003.jpg" and items[-1]["source"] == "kadis700k"
    assert all((SOURCES / it["image"]).is_file() for it in items)


def test_build_sources_lenient_writes_errors(tmp_path, capsys):
    bad = tmp_path / "cleaned_labels.json"
    bad.write_text(json.dumps([{"id": "x", "image": "/abs.jpg", "conversations": []}]))
    assert main(["build", "sources", "--qpathway", str(bad), "--out", str(tmp_path / "i.jsonl")]) == 1  # strict
    assert "record 0" in capsys.readouterr().err
    assert main(["build", "sources", "--qpathway", str(bad), "--lenient", "--out", str(tmp_path / "i.jsonl")]) == 0
    errors = list(read_jsonl(tmp_path / "i.jsonl.errors.jsonl"))
    assert errors[0]["index"] == 0 and errors[0]["field"] == "image"


def test_build_export_balance_and_stats(tmp_path, capsys):
    src = write_jsonl(known_set(), tmp_path / "samples.jsonl")
    assert main(["build", "export", str(src), "--to", "llava", "--balance", "--seed", "1",
                 "--out", str(tmp_path / "g.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    # known_set: 2 Yes, 1 No, 1 "Maybe", 2 open -> balanced to 1 Yes, 1 No, 2 open
    assert (report["des"], report["yes"], report["no"], report["vqa_open"]) == (2, 1, 1, 2)
    assert len(load_samples(tmp_path / "g.json")) == 6

    png = tmp_path / "fig6.png"
    assert main(["build", "stats", str(src), "--name", "tiny", "--png", str(png),
                 "--compare", f"again={src}"]) == 0
    md = capsys.readouterr().out
    assert "| tiny | 3 | 8 | 2 | 4 | 2 |" in md
    with Image.open(png) as im:
        assert im.format == "PNG"
    assert main(["build", "stats", str(src), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vqa_yes_no"] == 4
    assert main(["build", "stats", str(src), "--png", str(png), "--compare", "oops"]) == 2


def test_build_steps_take_defaults_from_a_config_file(tmp_path, capsys):
    out = tmp_path / "items.jsonl"
    (tmp_path / "run.toml").write_text(f"""
[build.sources]
qpathway = ["{SOURCES / 'q-instruct' / 'cleaned_labels.json'}"]
min_words = 200
out = "{out}"
""")
    assert main(["build", "sources", "--config", str(tmp_path / "run.toml")]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 0  # min_words = 200 came from the file
    assert main(["build", "sources", "--config", str(tmp_path / "run.toml"), "--min-words", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] > 0  # the flag wins
    (tmp_path / "bad.toml").write_text("[build.sources]\nmin_word = 3\n")
    assert main(["build", "sources", "--config", str(tmp_path / "bad.toml"), "--out", str(out)]) == 1
    assert "unknown option(s) ['min_word']" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("[build.sources]\nmin_words = 'many'\n")
    assert main(["build", "sources", "--config", str(tmp_path / "bad.toml"), "--out", str(out)]) == 1
    assert "min_words" in capsys.readouterr().err
    assert main(["build", "export", str(out), "--to", "jsonl"]) == 1
    assert "give --out" in capsys.readouterr().err
