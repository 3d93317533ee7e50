"""The groundingdino-py adapter: against a fake of the package's inference module here, the real package where it imports."""

from __future__ import annotations

import sys
import types

import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from giqa.errors import MissingDependencyError  # noqa: E402
from giqa.models import Detector, create  # noqa: E402
from giqa.models.groundingdino_py import GroundingDinoPyDetector, caption_of  # noqa: E402

# A caption's BERT ids: [CLS] words... "." ... [SEP], with "." = 1012 (as bert-base-uncased).
_VOCAB = {"[CLS]": 101, "[SEP]": 102, ".": 1012}


def _tokenize(caption: str) -> dict:
    ids = [101]
    for word in caption.split():
        ids.append(_VOCAB.get(word, 2000 + len(word)))
    return {"input_ids": ids + [102]}


class FakeModel(torch.nn.Module):
    """Stands in for groundingdino's GroundingDINO: 3 queries with fixed boxes and token logits.

    Query 0 lights the tokens of the first phrase (p=0.9), query 1 the second phrase's last token
    (p=0.6), query 2 nothing (p=0.1)."""

    def __init__(self):
        super().__init__()
        self.tokenizer = _tokenize
        self.calls = []

    def forward(self, images, captions):
        self.calls.append((tuple(images.shape), captions))
        ids = _tokenize(captions[0])["input_ids"]
        seps = [i for i, t in enumerate(ids) if t in (101, 102, 1012)]
        logits = torch.full((1, 3, 256), -2.2)  # sigmoid ~ 0.1
        a0, b0 = seps[0] + 1, seps[1]
        logits[0, 0, a0:b0] = 2.2  # ~ 0.9
        if len(seps) > 2:
            logits[0, 1, seps[2] - 1] = 0.405  # ~ 0.6
        boxes = torch.tensor([[[0.5, 0.5, 0.4, 0.2], [0.1, 0.9, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]]])
        return {"pred_logits": logits, "pred_boxes": boxes}


@pytest.fixture
def fake_package(monkeypatch):
    """Installs a fake ``groundingdino`` (inference + transforms modules) for one test."""
    model = FakeModel()
    loaded = []

    def load_model(config, checkpoint, device="cuda"):
        loaded.append((config, checkpoint, device))
        return model

    class Compose:
        def __init__(self, steps):
            self.steps = steps

        def __call__(self, image, target):
            for step in self.steps:
                image, target = step(image, target)
            return image, target

    def RandomResize(sizes, max_size=None):
        return lambda im, t: (im.resize((sizes[0] * im.width // im.height, sizes[0])), t)

    def ToTensor():
        return lambda im, t: (torch.from_numpy(__import__("numpy").array(im)).permute(2, 0, 1).float() / 255, t)

    def Normalize(mean, std):
        return lambda x, t: ((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1), t)

    pkg = types.ModuleType("groundingdino")
    util = types.ModuleType("groundingdino.util")
    inference = types.ModuleType("groundingdino.util.inference")
    inference.load_model = load_model
    datasets = types.ModuleType("groundingdino.datasets")
    transforms = types.ModuleType("groundingdino.datasets.transforms")
    transforms.Compose, transforms.RandomResize, transforms.ToTensor, transforms.Normalize = Compose, RandomResize, ToTensor, Normalize
    for name, mod in {"groundingdino": pkg, "groundingdino.util": util, "groundingdino.util.inference": inference,
                      "groundingdino.datasets": datasets, "groundingdino.datasets.transforms": transforms}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return model, loaded


def test_caption_format():
    assert caption_of(["The Dog.", "", "blurry sky?"]) == ("the dog . blurry sky .", [0, 2])


def test_adapter_maps_boxes_and_phrases(fake_package):
    model, loaded = fake_package
    det = create("detector", "groundingdino-py", config_path="GroundingDINO_SwinB_cfg.py",
                 checkpoint_path="groundingdino_swinb_cogcoor.pth", device="cpu")
    assert isinstance(det, GroundingDinoPyDetector) and isinstance(det, Detector)
    assert det.model_id == "groundingdino_swinb_cogcoor.pth"
    out = det.detect([Image.new("RGB", (64, 32))], [["the dog", "", "blurry sky"]])
    assert loaded == [("GroundingDINO_SwinB_cfg.py", "groundingdino_swinb_cogcoor.pth", "cpu")]
    assert model.calls[0] == ((1, 3, 800, 1600), ["the dog . blurry sky ."])  # shortest edge 800
    dog, empty, sky = out[0]
    assert empty == []
    assert [d.phrase for d in dog] == ["the dog"] and dog[0].score == pytest.approx(0.9, abs=1e-3)
    assert dog[0].box.as_tuple() == pytest.approx((0.3, 0.4, 0.7, 0.6))  # cxcywh -> xyxy
    assert [d.phrase for d in sky] == ["blurry sky"] and sky[0].score == pytest.approx(0.6, abs=1e-3)
    assert sky[0].box.as_tuple() == pytest.approx((0.0, 0.7, 0.3, 1.0))  # clipped to [0, 1]
    strict = GroundingDinoPyDetector(config_path="c.py", checkpoint_path="w.pth", device="cpu", box_threshold=0.7)
    assert [len(d) for d in strict.detect([Image.new("RGB", (32, 32))], [["the dog", "blurry sky"]])[0]] == [1, 0]


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "groundingdino", None)
    det = GroundingDinoPyDetector(config_path="c.py", checkpoint_path="w.pth")
    with pytest.raises(MissingDependencyError, match=r"giqa\[groundingdino\]"):
        det.detect([Image.new("RGB", (8, 8))], [["a dog"]])


def test_real_package_with_random_weights(tmp_path):
    """Where groundingdino imports (it needs torchvision, absent here), build its model from a
    config with random weights and run the adapter on it."""
    try:
        import groundingdino  # noqa: F401
        from groundingdino.util.slconfig import SLConfig  # noqa: F401
    except Exception as exc:  # ImportError, or torchvision's op registration failing
        pytest.skip(f"groundingdino-py is not importable here ({type(exc).__name__}: {exc}); "
                    "it needs torchvision, which has no CPU build on this machine")
    import os

    from groundingdino.util.inference import load_model  # noqa: F401

    cfg = os.path.join(os.path.dirname(groundingdino.__file__), "config", "GroundingDINO_SwinT_OGC.py")
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig

    args = SLConfig.fromfile(cfg)
    args.device = "cpu"
    ckpt = tmp_path / "random.pth"
    torch.save({"model": build_model(args).state_dict()}, ckpt)
    det = GroundingDinoPyDetector(config_path=cfg, checkpoint_path=str(ckpt), device="cpu", box_threshold=0.0, text_threshold=0.0)
    out = det.detect([Image.new("RGB", (64, 48))], [["a dog", "the sky"]])
    assert len(out[0]) == 2 and all(0 <= b <= 1 for d in out[0][0] for b in d.box.as_tuple())
