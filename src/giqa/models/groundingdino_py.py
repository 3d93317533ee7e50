"""Grounding DINO through IDEA-Research's own ``groundingdino`` package (``groundingdino-py``).

For the original checkpoints that Grounded-SAM users already have: a config ``.py`` (e.g.
``GroundingDINO_SwinB_cfg.py``) and its ``.pth`` (``groundingdino_swinb_cogcoor.pth``). Same
:class:`~giqa.models.protocols.Detector` protocol and box convention as the transformers backend
(:mod:`giqa.models.grounding_dino`): phrases of one image are joined as ``"a . b ."`` (the
package's caption format), and each query is scored per phrase on that phrase's own tokens,
``score_j(q) = max_{t in T_j} sigmoid(logit[q, t])``, kept when above both thresholds. The
package's boxes (normalised cxcywh) become normalised xyxy, clipped to [0, 1].

``pip install "giqa[groundingdino]"`` (the package needs torchvision and builds an optional
C++/CUDA op; it is kept out of ``[dev]``). Weights load with ``torch.load`` inside the package.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from pydantic import Field

from giqa.errors import BackendError, GiqaError, require
from giqa.models._hf import as_rgb_images, pick_device, torch_module
from giqa.models.grounding_dino import _phrase_spans
from giqa.models.protocols import Detection
from giqa.models.settings import BackendSettings
from giqa.types import Box

__all__ = ["GroundingDinoPySettings", "GroundingDinoPyDetector", "caption_of"]

# groundingdino's own preprocessing (datasets/transforms.py as used by util/inference.load_image)
_SIZE, _MAX_SIZE = 800, 1333
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class GroundingDinoPySettings(BackendSettings):
    """Settings of :class:`GroundingDinoPyDetector`.

    ``config_path`` / ``checkpoint_path``: the IDEA config ``.py`` and weights ``.pth``
    (``model_id`` defaults to the checkpoint path, for provenance). ``device``: ``"auto"``
    (CUDA, else CPU) or a torch device name.
    """

    model_id: str = ""
    config_path: str = Field(min_length=1)
    checkpoint_path: str = Field(min_length=1)
    box_threshold: float = Field(0.35, ge=0.0, le=1.0)
    text_threshold: float = Field(0.25, ge=0.0, le=1.0)
    max_detections: Optional[int] = Field(None, ge=1)
    device: str = "auto"


def caption_of(phrases: Sequence[str]) -> tuple[str, list[int]]:
    """``(caption, kept)``: non-empty phrases joined in groundingdino's format (lower case,
    ``" . "`` between, ``" ."`` at the end) and the indices of the phrases it holds."""
    cleaned = [" ".join(p.replace(".", " ").replace("?", " ").split()).lower() for p in phrases]
    kept = [j for j, p in enumerate(cleaned) if p]
    return " . ".join(cleaned[j] for j in kept) + " .", kept


def _spans(ids: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` token ranges between separator tokens, in order."""
    return _phrase_spans(ids, [1] * len(ids))


class GroundingDinoPyDetector:
    """:class:`giqa.models.Detector` on the ``groundingdino`` package's model (one image per pass)."""

    def __init__(self, settings: Optional[Any] = None, **overrides: Any) -> None:
        from giqa.models._hf import resolve_settings

        self.settings = resolve_settings(GroundingDinoPySettings, settings, overrides)
        self.model_id = self.settings.model_id or self.settings.checkpoint_path
        self.random_weights = bool(self.settings.random_weights)
        self.model: Any = None

    def load(self) -> "GroundingDinoPyDetector":
        if self.model is None:
            inference = require("groundingdino.util.inference", "groundingdino")
            self._transforms = require("groundingdino.datasets.transforms", "groundingdino")
            self.device = pick_device(self.settings.device)
            try:
                model = inference.load_model(self.settings.config_path, self.settings.checkpoint_path, device=str(self.device))
            except GiqaError:
                raise
            except Exception as exc:
                raise BackendError(f"groundingdino could not load {self.settings.checkpoint_path!r}: {exc}") from exc
            self.model = model.to(self.device).eval()
        return self

    def close(self) -> None:
        self.model = None

    def _tensor(self, image: Any) -> Any:
        T = self._transforms
        transform = T.Compose([T.RandomResize([_SIZE], max_size=_MAX_SIZE), T.ToTensor(), T.Normalize(list(_MEAN), list(_STD))])
        tensor, _ = transform(image, None)
        return tensor

    def detect(self, images: Sequence[Any], phrases: Sequence[Sequence[str]]) -> list[list[list[Detection]]]:
        images = as_rgb_images(images)
        if len(images) != len(phrases):
            raise ValueError(f"{len(images)} images but {len(phrases)} phrase lists")
        self.load()
        try:
            return [self._detect_one(im, list(ph)) for im, ph in zip(images, phrases)]
        except GiqaError:
            raise
        except Exception as exc:
            raise BackendError(f"groundingdino detector {self.model_id!r} failed: {exc}") from exc

    def _detect_one(self, image: Any, phrases: list[str]) -> list[list[Detection]]:
        out: list[list[Detection]] = [[] for _ in phrases]
        caption, kept = caption_of(phrases)
        if not kept:
            return out
        torch = torch_module()
        with torch.no_grad():
            pred = self.model(self._tensor(image)[None].to(self.device), captions=[caption])
        probs = pred["pred_logits"].float().sigmoid()[0].cpu()  # (Q, 256)
        boxes = pred["pred_boxes"].float()[0].cpu()  # (Q, 4) normalised cxcywh
        spans = _spans(self.model.tokenizer(caption)["input_ids"])
        if len(spans) != len(kept):
            raise BackendError(f"caption {caption!r} tokenized into {len(spans)} phrases, expected {len(kept)}")
        for j, (a, b) in zip(kept, spans):
            score = probs[:, a:b].max(dim=1).values
            keep = (score > self.settings.box_threshold) & (score > self.settings.text_threshold)
            found = [Detection(box=_xyxy(boxes[q]), score=float(score[q]), phrase=phrases[j]) for q in torch.nonzero(keep).flatten().tolist()]
            found.sort(key=lambda d: -d.score)
            out[j] = found[: self.settings.max_detections] if self.settings.max_detections else found
        return out


def _xyxy(cxcywh: Any) -> Box:
    """Normalised cxcywh -> normalised xyxy :class:`Box`, clipped to [0, 1]."""
    cx, cy, w, h = (float(v) for v in cxcywh)
    clip = lambda v: min(max(v, 0.0), 1.0)  # noqa: E731
    return Box(x1=clip(cx - w / 2), y1=clip(cy - h / 2), x2=clip(cx + w / 2), y2=clip(cy + h / 2))
