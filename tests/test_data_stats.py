"""Statistics (Table 1) and the box-area histogram (Fig. 6) on a small known set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from giqa.data import area_histogram, box_area_histogram, box_areas, dataset_stats
from giqa.types import Box, GroundedPhrase, Provenance, Sample


def _region(phrase, *xyxys):
    return GroundedPhrase(phrase=phrase, boxes=tuple(Box.from_xyxy(b) for b in xyxys))


def known_set():
    a = (0.0, 0.0, 0.5, 0.5)  # area 0.25
    b = (0.0, 0.0, 1.0, 1.0)  # area 1.0
    c = (0.2, 0.2, 0.3, 0.4)  # area 0.02
    des = [
        Sample(id="d1", image="x/1.jpg", task="des", question="q", answer="a",
               regions=(_region("dog", a, c), _region("dog again", a)), meta={"source": "spaq"}),
        Sample(id="d2", image="x/2.jpg", task="des", question="q", answer="a", regions=(_region("sky", b),),
               meta={"source": "kadis700k"}, provenance=Provenance(random_weights=True)),
    ]
    vqa = [
        Sample(id="y1", image="x/1.jpg", task="vqa", vqa_kind="yes_no", vqa_mode="referring", question="Is it?",
               answer="Yes.", regions=(_region("dog", a),), meta={"source": "spaq"}),
        Sample(id="y2", image="x/1.jpg", task="vqa", vqa_kind="yes_no", question="Is it?", answer="yes, it is",
               meta={"source": "spaq"}),
        Sample(id="y3", image="x/2.jpg", task="vqa", vqa_kind="yes_no", question="Is it?", answer="No."),
        Sample(id="y4", image="x/3.jpg", task="vqa", vqa_kind="yes_no", question="Is it?", answer="Maybe."),
        Sample(id="w1", image="x/2.jpg", task="vqa", vqa_kind="what", vqa_mode="grounding", question="What?",
               answer="The sky."),
        Sample(id="w2", image="x/2.jpg", task="vqa", vqa_kind="why", question="Why?", answer="Noise."),
    ]
    return des + vqa


def test_table1_counts():
    st = dataset_stats(known_set(), name="tiny")
    assert (st.images, st.total, st.des, st.vqa, st.vqa_yes_no, st.vqa_open) == (3, 8, 2, 6, 4, 2)
    assert (st.yes, st.no, st.yes_no_other) == (2, 1, 1)
    assert st.vqa_kinds == {"yes_no": 4, "what": 1, "why": 1}
    assert st.vqa_modes == {"referring": 1, "grounding": 1}
    assert st.sources == {"spaq": 3, "kadis700k": 1} and st.source_images == {"spaq": 1, "kadis700k": 1}
    assert st.boxes == 3  # DES only, each distinct box of a sample once
    assert st.random_weights == 1
    md = st.to_markdown()
    assert "| tiny | 3 | 8 | 2 | 4 | 2 |" in md
    assert "| SPAQ | 1 | 3 |" in md and "random-weight" in md
    assert dataset_stats(known_set(), box_tasks=("des", "vqa")).boxes == 4
    with pytest.raises(TypeError):
        dataset_stats([{"id": "x"}])


def test_box_areas_and_histogram():
    areas = box_areas(known_set())
    assert sorted(areas.round(6).tolist()) == [0.02, 0.25, 1.0]
    edges, share = area_histogram(areas, bins=4)
    assert edges.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert share.tolist() == pytest.approx([1 / 3, 1 / 3, 0.0, 1 / 3])  # 0.25 -> 2nd bin, 1.0 -> last bin
    assert area_histogram([], bins=3)[1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="inside"):
        area_histogram([1.5])


def test_histogram_png(tmp_path):
    rng = np.random.default_rng(0)
    data = box_area_histogram(
        {"GIQA-160K (Ref)": known_set(), "GIQA-160K (Raw)": rng.uniform(0, 0.2, 50)},
        tmp_path / "fig" / "fig6.png", bins=10,
    )
    png = tmp_path / "fig" / "fig6.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert data["GIQA-160K (Ref)"]["n"] == [3.0] and sum(data["GIQA-160K (Raw)"]["share"]) == pytest.approx(1.0)
    assert not (tmp_path / "fig" / "fig6.png.incomplete").exists()
