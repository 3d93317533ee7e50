"""Grounding DINO through transformers: open-vocabulary detection of describing phrases.

Several phrases of one image go through **one** forward pass: they are joined as
``"phrase one. phrase two."`` (Grounding DINO's own prompt format; its text encoder masks
attention between the ``.``-separated phrases). Several images go through one forward pass too:
each image is preprocessed once, and images of the same preprocessed size are stacked
(``pad_batches=True`` also stacks different sizes, zero-padded with a pixel mask). Each box is
then scored against each phrase on that phrase's own tokens. Note that Grounding DINO fuses
all phrases of a pass with the image features and picks its queries over all of them, so a
phrase's boxes can differ from a pass with that phrase alone; batching *images* changes
nothing (tested).

Scoring (the rule of Grounding DINO's reference inference, applied per phrase): for query ``q``
and phrase ``j`` with token positions ``T_j`` (between the separators),
``score_j(q) = max_{t in T_j} sigmoid(logit[q, t])``; the box is a detection of phrase ``j``
when ``score_j(q) > box_threshold`` and ``score_j(q) > text_threshold``. Boxes come from the
processor's ``post_process_grounded_object_detection`` (its signature is inspected, so
``threshold``/``box_threshold`` and ``input_ids``/``text_labels`` spellings of different
transformers versions both work), are clipped to the image and returned as normalised xyxy.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Optional, Sequence

from pydantic import Field

from giqa.errors import BackendError, GiqaError
from giqa.models._hf import HFBackend, as_rgb_images, batches, from_pretrained, torch_module, transformers_module
from giqa.models.protocols import Detection
from giqa.models.settings import DType, HFSettings
from giqa.types import Box

__all__ = ["GroundingDinoSettings", "GroundingDinoDetector", "post_process_kwargs"]

# Token ids Grounding DINO treats as phrase boundaries (BERT: [CLS], [SEP], ".", "?").
_SEPARATORS = (101, 102, 1012, 1029)


class GroundingDinoSettings(HFSettings):
    """Settings of :class:`GroundingDinoDetector`.

    ``batch_size`` counts images per forward pass. ``box_threshold`` / ``text_threshold``
    default to the Grounding DINO paper's 0.35 / 0.25. ``max_detections`` keeps only the best
    ``k`` boxes per phrase (None: all above threshold). ``pad_batches``: False (default) puts
    only images of the same preprocessed size in one pass, so results equal one-image passes
    exactly; True also batches different sizes with zero padding and a pixel mask (fewer
    passes, but the backbone sees the padding, so scores shift slightly). ``dtype`` defaults
    to float32 (half precision shifts the deformable-attention sampling); set it to
    ``"auto"``/``"bfloat16"`` to trade accuracy for memory.
    """

    model_id: str = "IDEA-Research/grounding-dino-base"
    dtype: DType = "float32"
    batch_size: int = Field(4, ge=1, le=256)
    box_threshold: float = Field(0.35, ge=0.0, le=1.0)
    text_threshold: float = Field(0.25, ge=0.0, le=1.0)
    max_detections: Optional[int] = Field(None, ge=1)
    pad_batches: bool = False


def post_process_kwargs(fn: Any, *, box_threshold: float, text_threshold: float, input_ids: Any) -> dict[str, Any]:
    """Keyword arguments for ``post_process_grounded_object_detection`` of any transformers version.

    transformers < 4.51 spells the box threshold ``box_threshold``, later versions
    ``threshold``; ``input_ids`` was optional/required at times and ``text_labels`` appeared in
    4.51 (unused). ``target_sizes`` stays unset so boxes stay normalised.
    """
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    if "threshold" in params:
        kwargs["threshold"] = box_threshold
    elif "box_threshold" in params:
        kwargs["box_threshold"] = box_threshold
    else:
        raise BackendError(
            "post_process_grounded_object_detection takes neither 'threshold' nor 'box_threshold'; "
            f"unsupported transformers version (signature: {inspect.signature(fn)})"
        )
    if "text_threshold" in params:
        kwargs["text_threshold"] = text_threshold
    if "input_ids" in params:
        kwargs["input_ids"] = input_ids
    return kwargs


def _clean_phrase(phrase: str) -> str:
    """Phrase text safe to join: "." and "?" would split it in two, so they become spaces."""
    return " ".join(phrase.replace(".", " ").replace("?", " ").split())


def _phrase_spans(ids: Sequence[int], mask: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` token ranges between separator (or padding) tokens, in order."""
    spans, start = [], None
    for pos, (tok, m) in enumerate(zip(ids, mask)):
        if tok in _SEPARATORS or not m:
            if start is not None:
                spans.append((start, pos))
                start = None
        elif start is None:
            start = pos
    if start is not None:
        spans.append((start, len(ids)))
    return spans


class GroundingDinoDetector(HFBackend):
    """:class:`giqa.models.Detector` on ``GroundingDinoForObjectDetection``.

    ``detect(images, phrases)`` -> ``out[i][j]``: detections of ``phrases[i][j]`` in
    ``images[i]``, best first, boxes normalised xyxy. Empty phrases (or phrases that are
    only punctuation) get no detections. Phrases of one image that exceed the text encoder's
    token budget (``max_text_len``, 256) are split over several passes.
    """

    settings_cls = GroundingDinoSettings
    settings: GroundingDinoSettings

    def _load(self) -> None:
        transformers = transformers_module()
        self.processor = from_pretrained(transformers.AutoProcessor, self.settings)
        self.model = from_pretrained(transformers.GroundingDinoForObjectDetection, self.settings, **self.model_kwargs())
        self.model.to(self.device).eval()
        self.max_text_len = int(getattr(self.model.config, "max_text_len", 256))
        self._post_kwargs_fn = self.processor.post_process_grounded_object_detection

    def _release(self) -> None:
        del self.model, self.processor

    # -- public ----------------------------------------------------------------------------
    def detect(self, images: Sequence[Any], phrases: Sequence[Sequence[str]]) -> list[list[list[Detection]]]:
        images = as_rgb_images(images)
        if isinstance(phrases, (str, bytes)) or len(images) != len(phrases):
            raise ValueError(f"{len(images)} images but {len(phrases)} phrase lists (one list per image)")
        for i, image_phrases in enumerate(phrases):
            if isinstance(image_phrases, str) or not all(isinstance(p, str) for p in image_phrases):
                raise TypeError(f"phrases[{i}] must be a list of strings, got {image_phrases!r}")
        out: list[list[list[Detection]]] = [[[] for _ in ps] for ps in phrases]
        self.load()
        jobs = self._jobs(phrases)
        try:
            pixels = self._pixels(images, sorted({i for i, _, _ in jobs}))
            for group in self._groups(jobs, pixels):
                for sl in batches(len(group), self.settings.batch_size):
                    self._run(phrases, group[sl], pixels, out)
        except GiqaError:
            raise
        except Exception as exc:
            raise BackendError(f"Grounding DINO ({self.model_id}) failed: {exc}") from exc
        return out

    # -- internals -------------------------------------------------------------------------
    def _jobs(self, phrases: Sequence[Sequence[str]]) -> list[tuple[int, list[int], list[str]]]:
        """(image index, phrase indices, cleaned phrases) per forward-pass row, within the token budget."""
        tok = self.processor.tokenizer
        budget = self.max_text_len - 2  # [CLS] ... [SEP]
        jobs = []
        for i, image_phrases in enumerate(phrases):
            idx: list[int] = []
            texts: list[str] = []
            used = 0
            for j, phrase in enumerate(image_phrases):
                text = _clean_phrase(phrase)
                if not text:
                    continue
                n = len(tok(text, add_special_tokens=False)["input_ids"]) + 1  # + "."
                if n > budget:
                    raise ValueError(
                        f"phrases[{i}][{j}] has {n} tokens; Grounding DINO reads at most {budget} per pass"
                    )
                if idx and used + n > budget:
                    jobs.append((i, idx, texts))
                    idx, texts, used = [], [], 0
                idx.append(j)
                texts.append(text)
                used += n
            if idx:
                jobs.append((i, idx, texts))
        return jobs

    def _pixels(self, images, indices: list[int]) -> dict[int, Any]:
        """Preprocessed ``(3, H, W)`` float tensor of each image used (once per image)."""
        ip = self.processor.image_processor
        return {i: ip(images=[images[i]], return_tensors="pt")["pixel_values"][0] for i in indices}

    def _groups(self, jobs, pixels) -> list[list]:
        if self.settings.pad_batches:
            return [jobs] if jobs else []
        by_shape: dict[tuple[int, ...], list] = {}
        for job in jobs:
            by_shape.setdefault(tuple(pixels[job[0]].shape), []).append(job)
        return list(by_shape.values())

    def _run(self, phrases, jobs, pixels, out) -> None:
        torch = torch_module()
        prompts = [". ".join(texts) + "." for _, _, texts in jobs]
        tensors = [pixels[i] for i, _, _ in jobs]
        h = max(t.shape[1] for t in tensors)
        w = max(t.shape[2] for t in tensors)
        pixel_values = torch.zeros((len(tensors), 3, h, w), dtype=torch.float32)
        pixel_mask = torch.zeros((len(tensors), h, w), dtype=torch.long)
        for b, t in enumerate(tensors):  # zero padding at the bottom/right, as DETR does
            pixel_values[b, :, : t.shape[1], : t.shape[2]] = t
            pixel_mask[b, : t.shape[1], : t.shape[2]] = 1
        text = self.processor.tokenizer(
            prompts, padding=True, return_tensors="pt", return_token_type_ids=True, add_special_tokens=True
        )
        inputs = {k: v.to(self.device) for k, v in text.items()}
        inputs["pixel_values"] = pixel_values.to(self.device, self.dtype)
        inputs["pixel_mask"] = pixel_mask.to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        input_ids = inputs["input_ids"]
        boxes = self._boxes(outputs, input_ids)  # (B, Q, 4) xyxy normalised, float32 CPU
        probs = outputs.logits.float().sigmoid().cpu()  # (B, Q, max_text_len)
        ids_cpu = input_ids.cpu().tolist()
        mask_cpu = inputs["attention_mask"].cpu().tolist()
        s = self.settings
        for row, (i, idx, texts) in enumerate(jobs):
            spans = _phrase_spans(ids_cpu[row], mask_cpu[row])
            if len(spans) != len(idx):
                raise BackendError(
                    f"could not map tokens back to phrases: {len(idx)} phrases but {len(spans)} "
                    f"token spans in {prompts[row]!r}"
                )
            for j, (start, end) in zip(idx, spans):
                scores = probs[row, :, start:end].max(dim=-1).values  # (Q,)
                kept = torch.nonzero((scores > s.box_threshold) & (scores > s.text_threshold)).flatten()
                kept = kept[torch.argsort(scores[kept], descending=True, stable=True)]
                if s.max_detections is not None:
                    kept = kept[: s.max_detections]
                out[i][j] = [
                    Detection(box=_to_box(boxes[row, q].tolist()), score=float(scores[q]), phrase=phrases[i][j])
                    for q in kept.tolist()
                ]

    def _boxes(self, outputs, input_ids):
        """All queries' boxes as normalised xyxy ``(B, Q, 4)`` float32 on CPU.

        Asks the processor's post-processor with a threshold that keeps every query (so rows
        stay aligned with the logits); falls back to converting ``pred_boxes`` here if a
        future version reorders or drops queries.
        """
        torch = torch_module()
        n_queries = outputs.pred_boxes.shape[1]
        fn = self._post_kwargs_fn
        kwargs = post_process_kwargs(fn, box_threshold=-1.0, text_threshold=1.0, input_ids=input_ids)
        results = fn(outputs, **kwargs)
        if len(results) == input_ids.shape[0] and all(len(r["boxes"]) == n_queries for r in results):
            return torch.stack([r["boxes"].float().cpu() for r in results])
        cx, cy, w, h = outputs.pred_boxes.float().cpu().unbind(-1)
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _to_box(xyxy) -> Box:
    x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) if math.isfinite(float(v)) else 0.0 for v in xyxy)
    return Box.from_xyxy((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))
