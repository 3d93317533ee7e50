"""The typed core: Box invariants and conversions, Tag, Sample, LLaVA records, JSON schemas."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from giqa import Box, Effect, GroundedPhrase, Provenance, Sample, Tag, Task, VqaKind
from giqa.errors import GiqaError, InvalidBoxError
from giqa.types import json_schemas

unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def boxes(draw):
    x1, x2 = sorted((draw(unit), draw(unit)))
    y1, y2 = sorted((draw(unit), draw(unit)))
    return Box(x1=x1, y1=y1, x2=x2, y2=y2)


class TestBoxValidation:
    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
    def test_non_finite_rejected(self, bad):
        with pytest.raises(InvalidBoxError, match="not finite"):
            Box.from_xyxy((0.1, 0.1, bad, 0.5))

    def test_inverted_rejected_with_axis_named(self):
        with pytest.raises(InvalidBoxError, match="x1=0.6 > x2=0.2"):
            Box.from_xyxy((0.6, 0.1, 0.2, 0.5))
        with pytest.raises(InvalidBoxError, match="y1=0.9 > y2=0.5"):
            Box.from_xyxy((0.1, 0.9, 0.2, 0.5))

    def test_out_of_range_rejected_and_hints_at_pixels(self):
        with pytest.raises(InvalidBoxError, match="from_pixels"):
            Box.from_xyxy((0, 0, 12, 30))

    def test_direct_construction_raises_value_error(self):
        with pytest.raises(ValidationError, match="inverted"):
            Box(x1=0.5, y1=0, x2=0.4, y2=1)
        with pytest.raises(ValueError):
            Box(x1=0.5, y1=0, x2=0.4, y2=1)

    def test_errors_share_the_root(self):
        with pytest.raises(GiqaError):
            Box.from_xyxy((0.5, 0, 0.4, 1))

    def test_float_noise_is_clamped(self):
        b = Box.from_xyxy((-1e-9, 0.0, 1 + 1e-9, 1.0))
        assert b.x1 == 0.0 and b.x2 == 1.0

    def test_wrong_length(self):
        with pytest.raises(InvalidBoxError, match="4 numbers"):
            Box.from_xyxy((0.1, 0.2, 0.3))

    def test_frozen(self):
        b = Box.from_xyxy((0.1, 0.2, 0.3, 0.4))
        with pytest.raises(ValidationError):
            b.x1 = 0.0

    def test_degenerate_allowed(self):
        assert Box.from_xyxy((0.3, 0.3, 0.3, 0.3)).area == 0.0


class TestBoxConversions:
    @given(boxes(), st.integers(1, 5000), st.integers(1, 5000))
    @settings(max_examples=100, deadline=None)
    def test_pixels_round_trip(self, b, w, h):
        back = Box.from_pixels(*b.to_pixels(w, h), width=w, height=h)
        assert all(math.isclose(u, v, abs_tol=1e-12) for u, v in zip(b.as_tuple(), back.as_tuple()))

    @given(boxes())
    @settings(max_examples=100, deadline=None)
    def test_xywh_and_cxcywh_round_trip(self, b):
        for to, frm in ((Box.to_xywh, Box.from_xywh), (Box.to_cxcywh, Box.from_cxcywh)):
            back = frm(*to(b))
            assert all(math.isclose(u, v, abs_tol=1e-12) for u, v in zip(b.as_tuple(), back.as_tuple()))

    def test_pixels_needs_positive_size(self):
        with pytest.raises(InvalidBoxError, match="positive"):
            Box.from_pixels(0, 0, 1, 1, width=0, height=10)

    def test_negative_size_rejected(self):
        with pytest.raises(InvalidBoxError, match="negative"):
            Box.from_xywh(0.5, 0.5, -0.1, 0.1)

    def test_grid_golden_tower(self):
        # NOTES.md: [tower](<35, 319>) decodes to x 0.775..0.975, y 0.075..0.775
        b = Box.from_grid(35, 319)
        assert b.as_tuple() == pytest.approx((0.775, 0.075, 0.975, 0.775))
        assert b.to_grid() == (35, 319)

    @given(boxes())
    @settings(max_examples=100, deadline=None)
    def test_grid_round_trip_within_half_a_cell(self, b):
        back = Box.from_grid(*b.to_grid(20, 20), 20, 20)
        for u, v in zip(b.as_tuple(), back.as_tuple()):
            assert abs(u - v) <= 0.5 / 20 + 1e-9


class TestTag:
    @pytest.mark.parametrize("raw", ["no impact", "No-Impact", "no_impact", " neutral "])
    def test_effect_aliases(self, raw):
        t = Tag(name="sky", phrase="the sky", quality="clear", effect=raw)
        assert t.effect is Effect.no_impact

    def test_unknown_effect(self):
        with pytest.raises(ValidationError, match="positive, negative or no_impact"):
            Tag(name="sky", phrase="the sky", quality="clear", effect="great")

    def test_empty_phrase_rejected(self):
        with pytest.raises(ValidationError):
            Tag(name="sky", phrase="  ", quality="clear", effect="positive")

    def test_from_llm_json(self):
        t = Tag.model_validate_json('{"name": "man", "phrase": "the man wearing a white t-shirt", '
                                    '"quality": "blurry", "effect": "negative"}')
        assert t.phrase.startswith("the man") and t.effect is Effect.negative


class TestSample:
    def _des(self, **kw):
        box = Box.from_grid(35, 319)
        base = dict(
            id="s1",
            image="a/b.jpg",
            task="des",
            question="Describe and evaluate the quality of the image.",
            answer="The texture of the [tower](<35, 319>) is clear.",
            regions=(GroundedPhrase(phrase="tower", boxes=(box,)),),
            provenance=Provenance(models={"llm": "x"}, thresholds={"area": 0.256}),
        )
        base.update(kw)
        return Sample(**base)

    def test_des_has_no_vqa_kind(self):
        with pytest.raises(ValidationError, match="no vqa_kind"):
            self._des(vqa_kind="what")

    def test_vqa_needs_kind(self):
        with pytest.raises(ValidationError, match="needs vqa_kind"):
            self._des(task="vqa")
        s = self._des(task="vqa", vqa_kind="yes_no", answer="Yes.")
        assert s.vqa_kind is VqaKind.yes_no and s.vqa_kind.is_binary

    def test_json_round_trip(self):
        s = self._des()
        assert Sample.model_validate_json(s.model_dump_json()) == s

    def test_to_llava_layout(self):
        rec = self._des().to_llava()
        assert rec["conversations"][0] == {
            "from": "human",
            "value": "<image>\nDescribe and evaluate the quality of the image.",
        }
        assert rec["conversations"][1]["from"] == "gpt"
        json.dumps(rec)

    def test_llava_round_trip_reads_regions_back(self):
        from giqa.data import sample_from_llava

        s = self._des()
        back = sample_from_llava(s.to_llava())
        assert back.task is Task.des and back.question == s.question and back.answer == s.answer
        assert [r.phrase for r in back.regions] == ["tower"]
        assert back.regions[0].boxes[0].as_tuple() == pytest.approx(s.regions[0].boxes[0].as_tuple())

    def test_from_llava_rejects_non_records(self):
        from giqa.data import sample_from_llava
        from giqa.errors import ParseError

        with pytest.raises(ParseError, match="not a LLaVA record"):
            sample_from_llava({"id": 1})
        with pytest.raises(ParseError, match="lacks a human or a gpt turn"):
            sample_from_llava({"id": 1, "image": "x", "conversations": [{"from": "human", "value": "q"}]})


def test_json_schemas_export():
    schemas = json_schemas()
    assert set(schemas) == {"Box", "Tag", "GroundedPhrase", "Provenance", "Sample"}
    assert set(schemas["Box"]["properties"]) == {"x1", "y1", "x2", "y2"}
    assert "effect" in schemas["Tag"]["properties"]
    json.dumps(schemas)


class TestRoundingOnWrite:
    """Boxes are written with BOX_DECIMALS places; a Sample's stay in their grid cells."""

    def test_float32_noise_is_not_written(self):
        box = Box.from_xyxy([float(v) for v in np.array([0.1, 0.2, 0.74, 0.9], np.float32)])
        assert box.x2 == 0.7400000095367432  # exact in memory
        assert json.loads(box.model_dump_json()) == {"x1": 0.1, "y1": 0.2, "x2": 0.74, "y2": 0.9}
        assert box.model_dump()["x2"] == 0.7400000095367432  # Python mode: exact

    def test_rounding_never_moves_a_corner_to_another_cell(self):
        below = float(np.float32(0.35))  # 0.3499999940..., column 6 of 20, rounds to 0.35
        s = _sample_with([(below, 0.1, 0.74, float(np.nextafter(0.5, 0)))], grid=(20, 20))
        data = json.loads(s.model_dump_json())
        assert data["regions"][0]["boxes"][0] == {"x1": 0.349999, "y1": 0.1, "x2": 0.74, "y2": 0.499999}
        back = Sample.model_validate(data)
        assert back.regions[0].boxes[0].to_grid() == s.regions[0].boxes[0].to_grid() == (6 + 2 * 20, 14 + 9 * 20)
        assert s.model_dump(mode="json")["regions"] == data["regions"]

    @settings(max_examples=80, deadline=None)
    @given(data=st.data())
    def test_grid_indices_unchanged_by_rounding(self, data):
        n, m = data.draw(st.integers(1, 100)), data.draw(st.integers(1, 100))
        near = st.builds(lambda j, k, d: min(max(j / k + d, 0.0), 1.0), st.integers(0, 100), st.integers(1, 100),
                         st.sampled_from([0.0, -4e-7, -5e-7, -6e-7, 4e-7, -1e-12, 1e-12]))
        f32 = unit.map(lambda v: float(np.float32(v)))
        coord = st.one_of(unit, near, f32)
        rows = []
        for _ in range(data.draw(st.integers(1, 4))):
            x1, x2 = sorted((data.draw(coord), data.draw(coord)))
            y1, y2 = sorted((data.draw(coord), data.draw(coord)))
            rows.append((x1, y1, x2, y2))
        s = _sample_with(rows, grid=(n, m))
        back = Sample.model_validate_json(s.model_dump_json())
        for old, new in zip(s.regions[0].boxes, back.regions[0].boxes):
            assert new.to_grid(n, m) == old.to_grid(n, m)
            for a, b in zip(old.as_tuple(), new.as_tuple()):
                assert abs(a - b) <= 1.0000001e-6 and round(b, 6) == b

    def test_every_writer_stores_rounded_boxes(self, tmp_path):
        from giqa.data.writers import export_samples, load_samples

        s = _sample_with([(float(np.float32(0.1)), 0.2, float(np.float32(0.74)), 0.9)])
        for to, name in (("jsonl", "s.jsonl"), ("parquet", "s.parquet")):
            path = export_samples([s], tmp_path / name, to=to)
            (back,) = load_samples(path)
            assert back.regions[0].boxes[0].as_tuple() == (0.1, 0.2, 0.74, 0.9), to
        assert "0.7400000095367432" not in (tmp_path / "s.jsonl").read_text()


def _sample_with(rows, grid=(20, 20)):
    phrase = GroundedPhrase(phrase="tower", boxes=tuple(Box.from_xyxy(r) for r in rows))
    return Sample(id="s", image="a.jpg", task="des", question="q", answer="a", regions=(phrase,), grid=grid)
