"""Grounding DINO through transformers: open-vocabulary detection of describing phrases.

Several phrases of one image go through **one** forward pass: they are joined as
``"phrase one. phrase two."`` (Grounding DINO's own prompt format; its text encoder masks
attention between the ``.``-separated phrases). Several images go through one forward pass too:
images of the same preprocessed size are stacked (``pad_batches=True`` also stacks different
sizes, zero-padded with a pixel mask). Each box is then scored against each phrase on that
phrase's own tokens. Note that Grounding DINO fuses all phrases of a pass with the image
features and picks its queries over all of them, so a phrase's boxes can differ from a pass
with that phrase alone; batching *images* changes nothing (tested).

Scoring (the rule of Grounding DINO's reference inference, applied per phrase): for query ``q``
and phrase ``j`` with token positions ``T_j`` (between the separators),
``score_j(q) = max_{t in T_j} sigmoid(logit[q, t])``; the box is a detection of phrase ``j``
when ``score_j(q) > box_threshold`` and ``score_j(q) > text_threshold``. Boxes are the model's
``pred_boxes`` (cxcywh) as xyxy (the processor's ``center_to_corners_format``), clipped to the
image, returned normalised.

Throughput (the device never waits on Python between passes):

- each distinct phrase is tokenised once per call (one batched tokenizer call); a prompt's ids
  are the phrases' ids joined with ``.`` and the tokenizer's special tokens, and its phrase
  spans are found once per prompt;
- passes are planned before any pixel is touched: images are grouped by the size the image
  processor will give them (computed from its ``size`` rule), then cut into ``batch_size``;
- the CPU half of the next ``prefetch`` passes (resize, normalise, stacking, copy to the
  device on a side CUDA stream) runs in background threads (:mod:`giqa.models._prefetch`)
  while the model runs the current pass; a torch-backed image processor (transformers'
  torchvision backend, when torchvision is installed) runs on the model's device;
- post-processing runs on the device in a few tensor operations (max over each phrase's tokens
  with one ``scatter_reduce``, a stable sort over the queries, top-k, box conversion and
  clipping); only the kept boxes come back to the CPU, copied while the next pass runs.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Optional, Sequence

from pydantic import Field

from giqa.errors import BackendError, GiqaError
from giqa.models._hf import HFBackend, as_rgb_images, from_pretrained, torch_module, transformers_module
from giqa.models._prefetch import Prefetcher
from giqa.models.protocols import Detection
from giqa.models.settings import DType, HFSettings
from giqa.types import Box

__all__ = ["GroundingDinoSettings", "GroundingDinoDetector", "post_process_kwargs", "select_detections"]

# Token ids Grounding DINO treats as phrase boundaries (BERT: [CLS], [SEP], ".", "?").
_SEPARATORS = (101, 102, 1012, 1029)


class GroundingDinoSettings(HFSettings):
    """Settings of :class:`GroundingDinoDetector`.

    ``batch_size`` counts images per forward pass. ``box_threshold`` / ``text_threshold``
    default to the Grounding DINO paper's 0.35 / 0.25. ``max_detections`` keeps only the best
    ``k`` boxes per phrase (None: all above threshold). ``pad_batches``: False (default) puts
    only images of the same preprocessed size in one pass, so results equal one-image passes
    exactly; True also batches different sizes with zero padding and a pixel mask (fewer
    passes, sorted by size to pad little, but the backbone sees the padding, so scores shift
    slightly). ``prefetch``: passes prepared ahead in background threads (0: none, all in the
    calling thread; same results); None: 2 on CUDA, 0 elsewhere (on the CPU the forward
    already keeps the cores busy, and for a small model, Python-heavy preprocessing threads
    slow its forward through the GIL: measured, benchmarks/RESULTS.md).

    Precision: ``dtype`` (the weights' dtype) defaults to float32. ``autocast`` (``"bfloat16"``
    or ``"float16"``) runs the forward under ``torch.autocast`` in that dtype while the weights
    stay in ``dtype``: matmuls in half precision, numerically sensitive operations (softmax,
    log, exp) in float32. Measured (benchmarks/RESULTS.md, "Detector dtype"): weights cast to
    bfloat16 gave NaN boxes on random weights, while bfloat16 autocast moved boxes little but
    changed which proposals rank first; so the default stays float32, and
    ``autocast="bfloat16"`` is the way to trade accuracy for speed. Weights in bfloat16 or
    float16 run under autocast in their own dtype (transformers 4.56's forward mixes float32
    intermediates into it). A pass whose outputs hold
    NaN raises :class:`giqa.errors.BackendError` (never an empty result).
    """

    model_id: str = "IDEA-Research/grounding-dino-base"
    dtype: DType = "float32"
    batch_size: int = Field(4, ge=1, le=256)
    box_threshold: float = Field(0.35, ge=0.0, le=1.0)
    text_threshold: float = Field(0.25, ge=0.0, le=1.0)
    max_detections: Optional[int] = Field(None, ge=1)
    pad_batches: bool = False
    prefetch: Optional[int] = Field(None, ge=0, le=32)
    autocast: Optional[Literal["bfloat16", "float16"]] = None


def post_process_kwargs(fn: Any, *, box_threshold: float, text_threshold: float, input_ids: Any) -> dict[str, Any]:
    """Keyword arguments for ``post_process_grounded_object_detection`` of any transformers version.

    transformers < 4.51 spells the box threshold ``box_threshold``, later versions
    ``threshold``; ``input_ids`` was optional/required at times and ``text_labels`` appeared in
    4.51 (unused). ``target_sizes`` stays unset so boxes stay normalised. (The detector does
    its own post-processing on the device; this helps callers of the processor's.)
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


# -- planning: prompts and passes ------------------------------------------------------------
@dataclass(frozen=True)
class _Row:
    """One forward-pass row: image ``image`` and some of its phrases.

    ``phrases``: indices ``j`` into ``phrases[image]``; ``ids``: the prompt's token ids with
    the special tokens; ``spans``: each phrase's ``[start, end)`` positions in ``ids``.
    """

    image: int
    phrases: tuple[int, ...]
    ids: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]


class _PromptBuilder:
    """Builds prompt ids from phrase ids: ``prefix + p1 + [.] + p2 + [.] + ... + suffix``.

    For BERT this equals tokenising ``"p1. p2."`` with special tokens (its pre-tokenizer splits
    at whitespace and punctuation; tested), without tokenising anything twice.
    """

    def __init__(self, tokenizer: Any, max_text_len: int) -> None:
        self.tokenizer = tokenizer
        bare = list(tokenizer(".", add_special_tokens=False)["input_ids"])
        full = list(tokenizer(".", add_special_tokens=True)["input_ids"])
        if len(bare) != 1 or full.count(bare[0]) != 1:
            raise BackendError(f"the tokenizer does not read '.' as one token ({bare}); not a Grounding DINO tokenizer")
        at = full.index(bare[0])
        self.dot = bare[0]
        self.prefix, self.suffix = full[:at], full[at + 1:]
        self.budget = max_text_len - len(self.prefix) - len(self.suffix)

    def rows(self, phrases: Sequence[Sequence[str]]) -> list[_Row]:
        """The passes' rows for ``phrases[i][j]`` (within the token budget, in order)."""
        cleaned = [[_clean_phrase(p) for p in ps] for ps in phrases]
        ids_of = self._ids({t for ps in cleaned for t in ps if t})
        rows: list[_Row] = []
        for i, texts in enumerate(cleaned):
            idx: list[int] = []
            used = 0
            for j, text in enumerate(texts):
                if not text:
                    continue
                n = len(ids_of[text]) + 1  # + "."
                if n > self.budget:
                    raise ValueError(
                        f"phrases[{i}][{j}] has {n} tokens; Grounding DINO reads at most {self.budget} per pass"
                    )
                if idx and used + n > self.budget:
                    rows.append(self._row(i, idx, texts, ids_of))
                    idx, used = [], 0
                idx.append(j)
                used += n
            if idx:
                rows.append(self._row(i, idx, texts, ids_of))
        return rows

    def _ids(self, texts: set[str]) -> dict[str, list[int]]:
        unique = sorted(texts)
        if not unique:
            return {}
        enc = self.tokenizer(unique, add_special_tokens=False)["input_ids"]
        return {t: list(ids) for t, ids in zip(unique, enc)}

    def _row(self, i: int, idx: list[int], texts: list[str], ids_of: dict[str, list[int]]) -> _Row:
        ids = list(self.prefix)
        for j in idx:
            ids += ids_of[texts[j]]
            ids.append(self.dot)
        ids += self.suffix
        spans = _phrase_spans(ids, [1] * len(ids))
        if len(spans) != len(idx):
            raise BackendError(
                f"could not map tokens back to phrases: {len(idx)} phrases but {len(spans)} token spans "
                f"in {'. '.join(texts[j] for j in idx) + '.'!r}"
            )
        return _Row(i, tuple(idx), tuple(ids), tuple(spans))


def _size_rule() -> Any:
    """transformers' ``get_size_with_aspect_ratio`` (moved between versions), or None."""
    try:
        from transformers.image_transforms import get_size_with_aspect_ratio
    except ImportError:
        try:
            from transformers.models.grounding_dino.image_processing_grounding_dino import get_size_with_aspect_ratio
        except ImportError:
            return None
    return get_size_with_aspect_ratio


def _resized_shape(image_processor: Any, width: int, height: int) -> tuple[int, int]:
    """``(H, W)`` the image processor will resize a ``width x height`` image to.

    Known rules: ``shortest_edge``/``longest_edge`` (Grounding DINO's) and ``height``/``width``;
    any other rule gives the input size (images of one input size share a pass; a wrong guess
    only costs passes: :meth:`GroundingDinoDetector._prepare` checks real shapes).
    """
    size = getattr(image_processor, "size", None)
    if not getattr(image_processor, "do_resize", True) or size is None:
        return (height, width)
    get = size.get if isinstance(size, dict) else partial(getattr, size)
    shortest, longest = get("shortest_edge", None), get("longest_edge", None)
    rule = _size_rule()
    if shortest and rule is not None:
        return tuple(rule((height, width), shortest, longest or shortest))
    fixed_h, fixed_w = get("height", None), get("width", None)
    if fixed_h and fixed_w:
        return (int(fixed_h), int(fixed_w))
    return (height, width)


def _plan_batches(rows: list[_Row], shapes: list[tuple[int, int]], batch_size: int, pad: bool) -> list[list[_Row]]:
    """Rows cut into passes of at most ``batch_size``: one shape per pass, or (``pad``) sorted by shape.

    ``shapes[i]``: the preprocessed ``(H, W)`` of image ``i``.
    """
    if pad:
        groups = [sorted(rows, key=lambda r: shapes[r.image])]
    else:
        by_shape: dict[tuple[int, int], list[_Row]] = {}
        for row in rows:
            by_shape.setdefault(shapes[row.image], []).append(row)
        groups = list(by_shape.values())
    return [g[k:k + batch_size] for g in groups for k in range(0, len(g), batch_size)]


# -- device-side post-processing --------------------------------------------------------------
def _xyxy_clipped(cxcywh: Any) -> Any:
    """``(..., 4)`` cxcywh -> xyxy in float32, non-finite values 0, clipped to [0, 1], ordered."""
    torch = torch_module()
    cx, cy, w, h = cxcywh.float().unbind(-1)
    xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
    xyxy = torch.nan_to_num(xyxy, nan=0.0, posinf=0.0, neginf=0.0).clamp_(0.0, 1.0)
    lo, hi = torch.minimum(xyxy[..., :2], xyxy[..., 2:]), torch.maximum(xyxy[..., :2], xyxy[..., 2:])
    return torch.cat([lo, hi], dim=-1)


def select_detections(
    logits: Any, pred_boxes: Any, token_phrase: Any, n_phrases: int, threshold: float, k: Optional[int]
) -> tuple[Any, Any]:
    """Each phrase's best boxes, on the tensors' device.

    Parameters
    ----------
    logits: ``(B, Q, L)`` text logits of ``Q`` queries over ``L`` text positions.
    pred_boxes: ``(B, Q, 4)`` normalised cxcywh.
    token_phrase: ``(B, T)`` long: the phrase slot in ``[0, n_phrases)`` of each of the first
        ``T`` text positions, ``n_phrases`` for separators, special tokens and padding;
        positions from ``T`` on belong to no phrase (and are not read).
    threshold: keep a box when its phrase score is strictly above this.
    k: at most this many boxes per phrase (None: all above ``threshold``).

    Returns
    -------
    ``(packed, counts)``: ``packed`` ``(B, n_phrases, K, 5)`` float32 rows
    ``[score, x1, y1, x2, y2]`` (normalised xyxy, clipped, ordered), best first, ties in query
    order; ``counts`` ``(B, n_phrases)`` long: how many leading rows are detections.
    """
    torch = torch_module()
    b, q, _ = logits.shape
    length = min(logits.shape[-1], token_phrase.shape[-1])
    probs = logits[..., :length].float().sigmoid()
    index = token_phrase[:, None, :length].expand(b, q, length)
    best = probs.new_zeros((b, q, n_phrases + 1)).scatter_reduce_(2, index, probs, reduce="amax")
    scores = torch.nan_to_num(best[..., :n_phrases].transpose(1, 2), nan=0.0)  # (B, P, Q)
    scores, order = scores.sort(dim=-1, descending=True, stable=True)
    counts = (scores > threshold).sum(-1)
    cap = q if k is None else min(k, q)
    if k is None or b * n_phrases * cap > 4096:  # trim to what is kept (one small sync)
        cap = min(cap, int(counts.max()) if counts.numel() else 0)
    scores, order = scores[..., :cap], order[..., :cap]
    boxes = _xyxy_clipped(pred_boxes)[:, None].expand(b, n_phrases, q, 4)
    boxes = torch.gather(boxes, 2, order[..., None].expand(b, n_phrases, cap, 4))
    return torch.cat([scores[..., None], boxes], dim=-1), counts.clamp_(max=cap)


# -- prepared passes ---------------------------------------------------------------------------
@dataclass
class _Pass:
    """The device inputs of one forward pass and what maps its outputs back."""

    rows: list[_Row]
    inputs: dict[str, Any]
    token_phrase: Any  # (B, T) long, see select_detections
    n_phrases: int
    ready: Any = None  # CUDA event recorded after the inputs' copy (None off CUDA)


@dataclass
class _Pending:
    """A pass's detections on their way to the CPU."""

    rows: list[_Row]
    packed: Any
    counts: Any
    bad: Any  # 0-dim bool: the outputs held NaN (or non-finite boxes)
    done: Any = None  # CUDA event; None when the copy was synchronous


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
        self._prompts = _PromptBuilder(self.processor.tokenizer, self.max_text_len)
        ip = self.processor.image_processor
        torch_backed = getattr(ip, "backend", None) == "torchvision" or type(ip).__name__.endswith("Fast")
        self._pixels_on_device = torch_backed and self.device.type != "cpu"
        self._stream = torch_module().cuda.Stream(self.device) if self.device.type == "cuda" else None

    def _release(self) -> None:
        del self.model, self.processor, self._prompts, self._stream

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
        rows = self._prompts.rows(phrases)
        try:
            self._run(images, phrases, self._plan(images, rows), out)
        except GiqaError:
            raise
        except Exception as exc:
            raise BackendError(f"Grounding DINO ({self.model_id}) failed: {exc}") from exc
        return out

    # -- internals -------------------------------------------------------------------------
    def _plan(self, images: Sequence[Any], rows: list[_Row]) -> list[list[_Row]]:
        """The forward passes for ``rows`` (from the images' sizes alone; no pixel is read)."""
        ip = self.processor.image_processor
        shapes = [_resized_shape(ip, im.width, im.height) for im in images]
        return _plan_batches(rows, shapes, self.settings.batch_size, self.settings.pad_batches)

    def _run(self, images, phrases, batches: list[list[_Row]], out) -> None:
        pending: Optional[_Pending] = None
        prepare = partial(self._prepare, images)
        depth = self.settings.prefetch
        if depth is None:
            depth = 2 if self.device.type == "cuda" else 0
        with Prefetcher(prepare, batches, depth=depth, name="giqa-gdino") as prepared:
            for _, passes in prepared:
                for p in passes:
                    launched = self._forward(p)
                    if pending is not None:  # collect the previous pass while this one runs
                        self._collect(pending, phrases, out)
                    pending = launched
        if pending is not None:
            self._collect(pending, phrases, out)

    def _prepare(self, images, rows: list[_Row]) -> list[_Pass]:
        """The device inputs of a planned pass (runs in a prefetch thread).

        Normally one pass; more if an image's real preprocessed shape differs from the planned
        one and padding is off (then each shape gets its own pass, so results stay exact).
        """
        with self._side_stream():
            cache: dict[int, Any] = {}  # an image split over several rows is preprocessed once
            for r in rows:
                if r.image not in cache:
                    cache[r.image] = self._pixel_values(images[r.image])
            pixels = [cache[r.image] for r in rows]
            if self.settings.pad_batches:
                parts = [list(range(len(rows)))]
            else:
                by_shape: dict[tuple[int, ...], list[int]] = {}
                for b, t in enumerate(pixels):
                    by_shape.setdefault(tuple(t.shape), []).append(b)
                parts = list(by_shape.values())
            return [self._tensors([rows[b] for b in part], [pixels[b] for b in part]) for part in parts]

    def _pixel_values(self, image) -> Any:
        """``(3, H, W)`` float32 pixels of one image (on the device for torch-backed processors)."""
        ip = self.processor.image_processor
        if self._pixels_on_device:
            try:
                return ip(images=[image], return_tensors="pt", device=self.device)["pixel_values"][0]
            except (TypeError, ValueError):  # a version without `device=`: process on the CPU from now on
                self._pixels_on_device = False
        return ip(images=[image], return_tensors="pt")["pixel_values"][0]

    def _tensors(self, rows: list[_Row], pixels: list[Any]) -> _Pass:
        """Stacked, padded pixels and prompts of ``rows``, moved to the device."""
        torch = torch_module()
        tok = self.processor.tokenizer
        pixel_values, pixel_mask = self._stack(pixels)
        n_phrases = max(len(r.phrases) for r in rows)
        length = max(len(r.ids) for r in rows)
        input_ids = torch.full((len(rows), length), tok.pad_token_id or 0, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        token_phrase = torch.full((len(rows), length), n_phrases, dtype=torch.long)
        left = getattr(tok, "padding_side", "right") == "left"
        for b, r in enumerate(rows):
            off = length - len(r.ids) if left else 0
            input_ids[b, off:off + len(r.ids)] = torch.tensor(r.ids)
            attention_mask[b, off:off + len(r.ids)] = 1
            for p, (start, end) in enumerate(r.spans):
                token_phrase[b, off + start:off + end] = p
        host = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}
        if pixel_mask is not None:
            host["pixel_mask"] = pixel_mask
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in host.items()}
        inputs["pixel_values"] = pixel_values.to(self.device, non_blocking=True).to(self.dtype)
        token_phrase = token_phrase.to(self.device, non_blocking=True)
        return _Pass(rows, inputs, token_phrase, n_phrases, ready=self._record_event())

    def _stack(self, pixels: list[Any]) -> tuple[Any, Any]:
        """``(B, 3, H, W)`` pixels (pinned when bound for CUDA) and the ``(B, H, W)`` pixel mask.

        Images of different sizes are zero-padded at the bottom/right, as DETR does, with a mask;
        without padding the mask is None (the model makes its all-ones mask on the device).
        """
        torch = torch_module()
        n, h, w = len(pixels), max(t.shape[1] for t in pixels), max(t.shape[2] for t in pixels)
        pin = self._stream is not None and pixels[0].device.type == "cpu"
        opts = dict(dtype=torch.float32, device=pixels[0].device, pin_memory=pin)
        if all(t.shape[1:] == (h, w) for t in pixels):  # the usual case: no padding to write
            return torch.stack(pixels, out=torch.empty((n, 3, h, w), **opts)), None
        pixel_values = torch.zeros((n, 3, h, w), **opts)
        pixel_mask = torch.zeros((n, h, w), dtype=torch.long)
        for b, t in enumerate(pixels):
            pixel_values[b, :, : t.shape[1], : t.shape[2]] = t
            pixel_mask[b, : t.shape[1], : t.shape[2]] = 1
        return pixel_values, pixel_mask

    def _autocast(self):
        """The forward's autocast: the ``autocast`` setting, else the weights' half dtype, else none.

        Half-precision weights run under autocast in their own dtype because some transformers
        versions (4.56) build float32 intermediates inside the model (text-image attention
        inputs) and a bare half-precision forward then fails with a dtype mismatch.
        """
        torch = torch_module()
        name = self.settings.autocast
        if name is None and self.settings.dtype in ("bfloat16", "float16"):
            name = self.settings.dtype
        if name is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, name))

    def _side_stream(self):
        torch = torch_module()
        return torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext()

    def _record_event(self) -> Any:
        if self._stream is None:
            return None
        event = torch_module().cuda.Event()
        event.record(self._stream)
        return event

    def _forward(self, p: _Pass) -> _Pending:
        """Run the model on a prepared pass and start copying its detections to the CPU."""
        torch = torch_module()
        s = self.settings
        if p.ready is not None:  # inputs were made on the side stream: order and keep them
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(p.ready)
            for t in (*p.inputs.values(), p.token_phrase):
                t.record_stream(stream)
        with torch.inference_mode():
            with self._autocast():
                outputs = self.model(**p.inputs)
            packed, counts = select_detections(
                outputs.logits, outputs.pred_boxes, p.token_phrase, p.n_phrases,
                max(s.box_threshold, s.text_threshold), s.max_detections,
            )
            bad = torch.isnan(outputs.logits).any() | ~torch.isfinite(outputs.pred_boxes).all()
        if packed.device.type != "cuda":
            return _Pending(p.rows, packed.cpu(), counts.cpu(), bad.cpu())
        host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in (packed, counts, bad)]
        for h, t in zip(host, (packed, counts, bad)):
            h.copy_(t, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return _Pending(p.rows, host[0], host[1], host[2], done=done)

    @staticmethod
    def _collect(pending: _Pending, phrases, out) -> None:
        """Detections of a finished pass into ``out[i][j]`` (one loop over kept boxes only)."""
        if pending.done is not None:
            pending.done.synchronize()
        if bool(pending.bad):
            raise BackendError(
                "Grounding DINO returned NaN or infinite outputs; with weights in bfloat16/float16 "
                "this is a known failure: keep dtype='float32' (use autocast='bfloat16' for speed)"
            )
        packed = pending.packed.tolist()
        counts = pending.counts.tolist()
        for b, row in enumerate(pending.rows):
            for p, j in enumerate(row.phrases):
                phrase = phrases[row.image][j]
                out[row.image][j] = [
                    Detection(box=Box.model_construct(x1=x1, y1=y1, x2=x2, y2=y2), score=score, phrase=phrase)
                    for score, x1, y1, x2, y2 in packed[b][p][: counts[b][p]]
                ]
