"""giqa des / vqa / show from the command line, and the prompt templates."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import pipeline_fakes as F
from giqa import prompts
from giqa.cli import main
from giqa.data.io import read_jsonl
from giqa.types import Box, GroundedPhrase, Sample, Tag


def test_show_writes_a_png_of_the_image_size(tmp_path, capsys):
    F.write_image(tmp_path / "img" / "a.png", size=(120, 80))
    s = Sample(id="x1", image="a.png", task="des", question="q?", answer="The [sky](<0, 399>) is blue.",
               regions=(GroundedPhrase(phrase="sky", boxes=(Box.from_xyxy((0.1, 0.1, 0.6, 0.5)),)),))
    other = s.model_copy(update={"id": "x0"})
    (tmp_path / "s.jsonl").write_text(other.model_dump_json() + "\n" + s.model_dump_json() + "\n")
    rc = main(["show", str(tmp_path / "s.jsonl"), "--root", str(tmp_path / "img"), "--id", "x1",
               "--out", str(tmp_path / "o" / "x.png")])
    assert rc == 0
    im = Image.open(tmp_path / "o" / "x.png")
    assert im.format == "PNG" and im.size == (120, 80)
    # the box outline is drawn in the first palette colour at the box's left edge
    from giqa.render import PALETTE

    assert im.convert("RGB").getpixel((12, 30)) == PALETTE[0]
    assert "1 region" in capsys.readouterr().out


def test_show_unknown_id_and_escaping_path_are_clear_errors(tmp_path, capsys):
    s = Sample(id="x", image="../../etc/passwd", task="des", question="q", answer="a")
    (tmp_path / "s.jsonl").write_text(s.model_dump_json() + "\n")
    assert main(["show", str(tmp_path / "s.jsonl"), "--root", str(tmp_path), "--id", "nope", "--out", str(tmp_path / "x.png")]) == 1
    assert "no sample with id 'nope'" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "s.jsonl"), "--root", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 1
    assert "escapes the dataset root" in capsys.readouterr().err


def test_prompts_load_and_render():
    pool = prompts.question_pool()
    assert len(pool) == 15 and len(set(pool)) == 15
    assert pool[0].startswith("Explore the quality factors of the image") and pool[0].endswith("[label](<x, y>).")
    assert pool[1].endswith("Mention positions.")
    p = prompts.load("tag_extraction")
    assert (p.name, p.version) == ("tag_extraction", "v1") and prompts.load("tag_extraction.v1") == p
    msgs = p.messages(description="The sky is {bright}.")
    assert [m["role"] for m in msgs] == ["system", "user"] and "The sky is {bright}." in msgs[1]["content"]
    # the JSON example in the template is valid against Tag once filled in
    example = msgs[1]["content"].split("nothing else:\n", 1)[1].split("\n", 1)[0]
    tag = json.loads(example.replace('"..."', '"x"'))["tags"][0]
    assert Tag.model_validate(tag).effect.value == "positive"
    assert prompts.load("iqa_filter").render(quality="blurry").strip() == "Is the image quality blurry?"
    for name in ("vqa_yes_no", "vqa_open"):
        text = prompts.load(name).render(description="d", objects="- dog: blurry", n=3)
        assert "- dog: blurry" in text and "$" not in text
    with pytest.raises(KeyError):
        prompts.load("nope")
    with pytest.raises(KeyError):
        prompts.load("tag_extraction.v9")
    with pytest.raises(KeyError):
        p.render()  # a missing placeholder value is an error, not a silent "$description"


def test_vqa_cli_with_bad_input_writes_error_records(tmp_path, capsys):
    bad = Sample(id="v", image="a.png", task="vqa", question="Is it?", answer="Yes.", vqa_kind="yes_no")
    (tmp_path / "in.jsonl").write_text(bad.model_dump_json() + "\nnot json\n")
    rc = main(["vqa", "--input", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out"),
               "--preset", "tiny-random", "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 2 and summary["balanced_counts"] == {"yes": 0, "no": 0, "open": 0, "other": 0}
    errs = list(read_jsonl(tmp_path / "out" / "errors.jsonl"))
    assert {e["stage"] for e in errs} == {"input"}
    assert any("not DES" in e["message"] for e in errs) and any("not valid JSON" in e["message"] for e in errs)


@pytest.mark.slow
def test_des_cli_with_tiny_random_preset(tmp_path, capsys, monkeypatch, tiny_models_dir, tiny_grounding_dino_dir,
                                        tiny_llava_dir, tiny_llama_dir, tiny_embedder_dir):
    # the preset builds its models in $GIQA_CACHE_DIR/tiny-random-v1: reuse the session's builds
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny-random-v1").symlink_to(tiny_models_dir, target_is_directory=True)
    monkeypatch.setenv("GIQA_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "img"
    items = F.make_dataset(root, 2)
    for it in items:  # a random-weight LLM writes no valid JSON: the tags come with the input
        it["tags"] = F.TAGS[it["description"]]
    items.append({"id": "bad", "image": "../x.png", "description": "x"})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    args = ["des", "--input", str(tmp_path / "in.jsonl"), "--root", str(root), "--out", str(tmp_path / "out"),
            "--preset", "tiny-random", "--no-progress"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["succeeded"], summary["failed"], summary["preset"]) == (2, 1, "tiny-random")
    samples = [Sample.model_validate(s) for s in read_jsonl(tmp_path / "out" / "samples.jsonl")]
    assert all(s.provenance.random_weights and s.provenance.preset == "tiny-random" for s in samples)
    assert main(args) == 0  # resumes: nothing left to do
    again = json.loads(capsys.readouterr().out)
    assert (again["already_done"], again["processed"], again["skipped_failed"]) == (2, 0, 1)


def test_ray_stage_options_flag_is_checked_before_anything_runs(tmp_path, capsys):
    from giqa.cli import main

    with pytest.raises(SystemExit):
        main(["des", "--input", "x.jsonl", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
              "--runner", "ray", "--ray-stage-options", "{not json"])
    assert "not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["des", "--input", "x.jsonl", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
              "--runner", "ray", "--ray-stage-options", '{"detect": 4}'])
    assert "expected" in capsys.readouterr().err


# -- run configuration, flags, fail-fast ------------------------------------------------------------
@pytest.fixture()
def fake_backends(monkeypatch):
    """Registry entries for the in-memory fake backends, so config files can name them."""
    from giqa.models import registry

    monkeypatch.setattr(registry, "_registry", {k: dict(v) for k, v in registry._BUILTIN.items()})
    monkeypatch.setattr(registry, "_entry_points_loaded", True)
    registry.register("llm", "fake-tags.v1", lambda model_id="fake-llm", **_: F.make_llm(model_id=model_id))
    registry.register("detector", "fake-det.v1", lambda **_: F.make_detector())
    registry.register("quality_filter", "fake-filter.v1", lambda **_: F.make_filter())


def _items(tmp_path, n=3):
    root = tmp_path / "img"
    items = F.make_dataset(root, n)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return root


def test_des_from_a_config_file_with_flags_overriding_it(tmp_path, capsys, fake_backends):
    root = _items(tmp_path)
    (tmp_path / "run.toml").write_text(f"""
preset = "paper"
[backends]
llm = {{name = "fake-tags", model_id = "from-config"}}
detector = "fake-det"
quality_filter = {{name = "fake-filter"}}
[des]
root = "{root}"
area_thr = 0.3
[runner]
batch_size = 2
progress = false
""")
    rc = main(["des", "--config", str(tmp_path / "run.toml"), "--input", str(tmp_path / "in.jsonl"),
               "--out", str(tmp_path / "out"), "--llm-model", "from-flag", "--cover-thr", "0.9"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["succeeded"] == 3
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["area_thr"] == 0.3 and run["config"]["cover_thr"] == 0.9  # file, then flag
    assert run["backends"]["llm"]["settings"]["model_id"] == "from-flag"
    assert run["run_config"]["runner"]["batch_size"] == 2
    s = Sample.model_validate(next(read_jsonl(tmp_path / "out" / "samples.jsonl")))
    assert s.provenance.models["llm"] == "from-flag"
    assert s.provenance.extra["run"]["config"]["area_thr"] == 0.3
    assert s.provenance.extra["run"]["backends"]["detector"]["name"] == "fake-det"


@pytest.mark.parametrize("text, words", [
    ("[des]\narea_thr = 2.0\n", "des.area_thr: Input should be less than or equal to 1"),
    ("[des]\nareathr = 0.2\n", "des.areathr: Extra inputs are not permitted"),
    ("[backends]\nsegmenter = 'x'\n", "unknown backend role 'segmenter'"),
    ("[backends]\nllm = {name = 'openai', max_concurency = 3}\n", "max_concurency"),
    ("[backends]\nllm = {model_id = 'x'}\n", "needs name = <registry name> or preset"),
    ("[runner]\nkind = 'slurm'\n", "runner.kind: Input should be 'local' or 'ray'"),
    ("preset = 'huge'\n", "no preset named 'huge'"),
    ("[des\n", "not valid TOML"),
])
def test_config_errors_name_the_file_and_field(tmp_path, capsys, text, words):
    (tmp_path / "bad.toml").write_text(text)
    rc = main(["des", "--config", str(tmp_path / "bad.toml"), "--input", "x.jsonl", "--root", str(tmp_path),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and str(tmp_path / "bad.toml") in err and words in err, err


def test_flags_that_do_not_apply_are_refused(tmp_path, capsys):
    rc = main(["des", "--input", "x.jsonl", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
               "--llm", "transformers", "--timeout", "5"])
    assert rc == 1 and "--timeout does not apply to the llm backend 'transformers'" in capsys.readouterr().err


def test_llm_flags_select_an_openai_server(tmp_path):
    import argparse

    from giqa.cli import build_parser
    from giqa.cli._run import resolve_config
    from giqa.models import Role

    args = build_parser().parse_args(["des", "--input", "x", "--root", str(tmp_path), "--out", "o",
                                      "--llm-base-url", "http://gpu:8000/v1", "--llm-model", "llama",
                                      "--llm-concurrency", "64", "--timeout", "30", "--retries", "1",
                                      "--device", "cuda:1", "--no-filter"])
    assert isinstance(args, argparse.Namespace)
    config = resolve_config(args, "des", ("llm", "detector", "quality_filter"))
    llm = config.backend(Role.llm)
    assert llm.name == "openai" and llm.settings == {"base_url": "http://gpu:8000/v1", "model_id": "llama",
                                                     "max_concurrency": 64, "timeout_s": 30.0, "max_retries": 1}
    assert config.backend(Role.detector).settings["device"] == "cuda:1"  # every in-process model
    assert config.backend(Role.quality_filter) is None


def test_a_dead_llm_server_stops_the_run_in_seconds(tmp_path, capsys):
    import socket
    import time

    root = _items(tmp_path, 30)
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.monotonic()
    rc = main(["des", "--input", str(tmp_path / "in.jsonl"), "--root", str(root), "--out", str(tmp_path / "out"),
               "--llm-base-url", f"http://127.0.0.1:{port}/v1", "--retries", "1", "--no-progress"])
    seconds = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert rc == 1 and seconds < 20, seconds
    assert "the first 20 records all failed" in err
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["aborted"] == "the first 20 records all failed" and summary["succeeded"] == 0
    assert json.loads(out)["failed"] == 20
    errors = list(read_jsonl(tmp_path / "out" / "errors.jsonl"))
    assert len(errors) == 20 and all(e["stage"] == "tags" for e in errors)
    assert any("ConnectError" in e["message"] or "unreachable" in e["message"] for e in errors)
