"""The real backend code paths with tiny random-weight models (offline)."""

from __future__ import annotations

import pytest

import pipeline_fakes as F
from giqa.data.io import read_jsonl
from giqa.errors import RunAborted
from giqa.pipeline import DesConfig, DesPipeline, run_local
from giqa.pipeline.stages import run_stages

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backends(tiny_grounding_dino_dir, tiny_llava_dir, tiny_llama_dir):
    from giqa.models import create

    det = create("detector", "grounding-dino", model_id=str(tiny_grounding_dino_dir), device="cpu",
                 box_threshold=0.0, text_threshold=0.0, max_detections=3)
    qf = create("filter", "llava", model_id=str(tiny_llava_dir), device="cpu")
    llm = create("llm", "transformers", model_id=str(tiny_llama_dir), device="cpu")
    yield det, qf, llm
    for b in (det, qf, llm):
        b.close()


def test_one_image_through_all_four_stages(tmp_path, backends):
    det, qf, llm = backends
    F.write_image(tmp_path / "a.png", size=(96, 64))
    item = {"id": "a", "image": "a.png", "description": F.DESC_DOG,
            "tags": F.TAGS[F.DESC_DOG]}  # a random-weight LLM writes no valid JSON: tags given
    pipe = DesPipeline(llm=llm, detector=det, quality_filter=qf, config=DesConfig(root=str(tmp_path)))
    recs = run_stages(pipe.stages, pipe.make_inputs([item]))
    r = recs[0]
    assert r.ok, r.error
    assert [len(d) for d in r.detections] == [3, 3]  # thresholds 0, max 3 per phrase
    for g in r.regions:
        assert g.p_yes is not None and len(g.p_yes) == 3
        assert all(0.0 <= p <= 1.0 for p in g.p_yes)
        assert 1 <= len(g.boxes) <= 3
    samples, errors = pipe.finalize(recs)
    assert errors == []
    s = samples[0]
    assert s.provenance.random_weights is True
    assert s.provenance.models["detector"] == det.model_id and s.provenance.models["quality_filter"] == qf.model_id
    # the filter's image policy (how its crops reached the vision tower) is in the provenance
    assert s.provenance.extra["backends"]["quality_filter"] == {"image_aspect": qf.image_aspect} == {"image_aspect": "pad"}
    assert "[The dog on the left](<" in s.answer


def test_random_llm_output_becomes_a_tags_error_record(tmp_path, backends):
    det, qf, llm = backends
    F.write_image(tmp_path / "a.png")
    pipe = DesPipeline(llm=llm, detector=det, quality_filter=qf,
                       config=DesConfig(root=str(tmp_path), max_retries=1, max_new_tokens=16))
    with pytest.raises(RunAborted, match="1 of 1 records failed") as info:  # the run failed as a whole
        run_local(pipe, [{"id": "a", "image": "a.png", "description": F.DESC_DOG}], tmp_path / "out", progress=False)
    assert info.value.summary.failed == 1
    (err,) = list(read_jsonl(tmp_path / "out" / "errors.jsonl"))
    assert err["stage"] == "tags" and "malformed LLM output after 2 attempt(s)" in err["message"]
