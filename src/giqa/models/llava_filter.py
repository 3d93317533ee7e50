"""The IQA-Filter (Q-Instruct's role in Alg. 1): P("Yes") of a LLaVA-style model for each crop.

For each crop the model is asked ``question + prompt_suffix`` (e.g. "Is the image quality
blurry?") and P(Yes) is read from the **next-token logits** after the generation prompt:
``p_yes = softmax([logit[yes_id], logit[no_id]])[0]``, not from parsed text. One forward pass
per batch (no ``generate``), only the last position's logits computed; left padding, with
``position_ids`` from the attention mask, so padding does not change the result.

Throughput (the results equal one pair at a time through the processor, up to float rounding;
tests/test_models_filter_equivalence.py):

- pairs are planned before any pixel is touched: distinct crops are found (same pixels, see
  :func:`giqa.models._llava_batches.crop_keys`), each question is tokenised once, and the
  pairs are sorted by prompt length and cut into ``batch_size`` rows, a crop's questions kept
  in one batch where they fit;
- each distinct crop is padded to a square and preprocessed **once per batch**, in background
  threads ``prefetch`` batches ahead (:mod:`giqa.models._prefetch`) while the model runs;
- a crop asked several questions is **encoded once**: for a LLaVA
  (``LlavaForConditionalGeneration``) the shared prefix (the template up to and including the
  image tokens) runs once per distinct crop with a KV cache, which is then indexed out to
  that crop's questions (``Cache.reorder_cache``), and only the questions' own tokens run
  against it; the vision tower and the ~600-token image prefill are not repeated;
- P(Yes) is computed on the device and copied back while the next batch runs.

Default checkpoint: ``llava-hf/llava-1.5-7b-hf``. Q-Instruct (the paper's filter) is a
LLaVA-1.5-7B fine-tune whose public weights are in the original LLaVA repository format, which
transformers does not load; a Q-Instruct checkpoint converted to the ``llava-hf`` layout (with
transformers' ``convert_llava_weights_to_hf.py``) drops in through ``model_id``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from typing import Any, Optional, Sequence

from pydantic import Field

from giqa.errors import BackendError, GiqaError
from giqa.models._hf import ImageTextBackend, check_pairs, torch_module
from giqa.models._llava_batches import crop_keys, left_pad, plan_rows, split_prefix
from giqa.models._prefetch import Prefetcher
from giqa.models.settings import ImageTextSettings

__all__ = ["LlavaFilterSettings", "LlavaQualityFilter"]


class LlavaFilterSettings(ImageTextSettings):
    """Settings of :class:`LlavaQualityFilter`.

    ``yes_token`` / ``no_token`` must each be a single token of the model's tokenizer (for
    byte-level BPE tokenizers whose template ends with ``":"``, the model answers ``" Yes"``:
    set the tokens with their leading space). ``prompt_suffix`` is appended to each question;
    the default is LLaVA-1.5's short-answer instruction. ``batch_size`` counts (crop, question)
    pairs per forward pass. ``prefetch``: batches whose crops are preprocessed ahead in
    background threads (0: none, all in the calling thread; same results); None: 2 on CUDA, 0
    elsewhere (on a CPU the forward pass already keeps the cores busy).
    """

    model_id: str = "llava-hf/llava-1.5-7b-hf"
    batch_size: int = Field(8, ge=1, le=1024)
    yes_token: str = "Yes"
    no_token: str = "No"
    prompt_suffix: str = "\nAnswer the question using a single word or phrase."
    prefetch: Optional[int] = Field(None, ge=0, le=32)


@dataclass(frozen=True)
class _Batch:
    """One forward pass: ``rows`` (pair indices, in pass order) over the distinct crops ``crops``.

    ``crop_of_row[k]``: the position in ``crops`` of row ``k``'s crop; ``ids``: each row's prompt
    ids (None: the processor tokenises); ``prefix``: the ids the rows share up to the last image
    token, set when a crop has several rows here (then the prefix runs once per crop).
    """

    rows: tuple[int, ...]
    crops: tuple[int, ...]
    crop_of_row: tuple[int, ...]
    ids: Optional[tuple[tuple[int, ...], ...]]
    prefix: Optional[tuple[int, ...]] = None


@dataclass
class _Pending:
    """A pass's P(Yes) on its way to the CPU (``done``: CUDA event; None when already there)."""

    rows: tuple[int, ...]
    probs: Any
    done: Any = None


class LlavaQualityFilter(ImageTextBackend):
    """:class:`giqa.models.QualityFilter` on a LLaVA-style ``AutoModelForImageTextToText``."""

    settings_cls = LlavaFilterSettings
    settings: LlavaFilterSettings

    def _load(self) -> None:
        super()._load()
        tok = self.processor.tokenizer
        ids = []
        for word in (self.settings.yes_token, self.settings.no_token):
            enc = tok.encode(word, add_special_tokens=False)
            if len(enc) != 1:
                raise BackendError(
                    f"{word!r} is {len(enc)} tokens for {self.model_id!r}; yes_token/no_token must be single tokens"
                )
            ids.append(enc[0])
        if ids[0] == ids[1]:
            raise BackendError(f"yes_token and no_token map to the same token id {ids[0]}")
        self.yes_id, self.no_id = ids
        self._cache_kwarg = _cache_keyword(self.model) if self._image_tokens is not None else None

    def p_yes(self, crops: Sequence[Any], questions: Sequence[str]) -> list[float]:
        """P(Yes) in [0, 1] for each (crop, question), from the Yes/No next-token logits."""
        crops, questions = check_pairs(crops, questions, "questions")
        if not crops:
            return []
        self.load()
        try:
            return self._run(crops, [q + self.settings.prompt_suffix for q in questions])
        except GiqaError:
            raise
        except Exception as exc:
            raise BackendError(f"quality filter {self.model_id!r} failed: {exc}") from exc

    def yes_no_logits(self, crops: Sequence[Any], questions: Sequence[str]):
        """``(N, 2)`` float32 tensor of the next-token logits of (Yes, No) in one plain pass through
        the processor (no planning or prefix sharing); for inspection and as a baseline."""
        crops, questions = check_pairs(crops, questions, "questions")
        self.load()
        torch = torch_module()
        inputs = self.encode(crops, [q + self.settings.prompt_suffix for q in questions])
        inputs["position_ids"] = _positions(inputs["attention_mask"])
        with torch.inference_mode():
            logits = self.model(**inputs, logits_to_keep=1).logits[:, -1, :]
        return logits[:, [self.yes_id, self.no_id]].float().cpu()

    # -- planning ------------------------------------------------------------------------------
    def _plan(self, crops: list[Any], texts: list[str]) -> list[_Batch]:
        """The passes for ``(crops[i], texts[i])``: distinct crops, sorted lengths, shared prefixes."""
        first = crop_keys(crops)
        distinct = sorted(set(texts))
        tokenised = self.prompt_ids(distinct)
        ids_of = dict(zip(distinct, tokenised)) if tokenised is not None else None
        lengths = [len(ids_of[t]) if ids_of is not None else len(t) for t in texts]
        batches = []
        for rows in plan_rows(first, lengths, self.settings.batch_size):
            crop_ids = list(dict.fromkeys(first[r] for r in rows))
            where = {c: k for k, c in enumerate(crop_ids)}
            ids = tuple(tuple(ids_of[texts[r]]) for r in rows) if ids_of is not None else None
            batches.append(_Batch(tuple(rows), tuple(crop_ids), tuple(where[first[r]] for r in rows), ids,
                                  self._shared_prefix(ids, len(crop_ids))))
        return batches

    def _shared_prefix(self, ids: Optional[tuple[tuple[int, ...], ...]], n_crops: int) -> Optional[tuple[int, ...]]:
        """The rows' common prefix through the image tokens, when a crop repeats and the model allows it."""
        if ids is None or self._cache_kwarg is None or self._image_tokens is None or n_crops == len(ids):
            return None
        parts = {split_prefix(r, self._image_tokens[0])[0] for r in ids}
        prefix = parts.pop()
        return prefix if prefix and not parts and all(len(r) > len(prefix) for r in ids) else None

    # -- running -------------------------------------------------------------------------------
    def _run(self, crops: list[Any], texts: list[str]) -> list[float]:
        out = [0.0] * len(crops)
        pending: Optional[_Pending] = None
        prepare = partial(self._prepare, crops, texts)
        with Prefetcher(prepare, self._plan(crops, texts), depth=self.prefetch_depth(), name="giqa-filter") as prepared:
            for batch, host in prepared:
                launched = self._launch(batch, host)
                if pending is not None:  # collect the previous pass while this one runs
                    _collect(pending, out)
                pending = launched
        if pending is not None:
            _collect(pending, out)
        return out

    def _prepare(self, crops: list[Any], texts: list[str], b: _Batch) -> dict[str, Any]:
        """CPU inputs of a pass (runs in a prefetch thread): each distinct crop preprocessed once."""
        torch = torch_module()
        pixels: Any = self.pixel_values([crops[c] for c in b.crops]) if b.ids is not None else None
        if b.ids is None or not self.fits(pixels):  # only the processor knows this model's inputs
            return self.pinned(self.encode_host([crops[b.crops[k]] for k in b.crop_of_row], [texts[r] for r in b.rows]))
        pad = self.processor.tokenizer.pad_token_id
        crop_of_row = torch.tensor(b.crop_of_row, dtype=torch.long)
        if b.prefix is None:
            input_ids, mask = left_pad(b.ids, pad)
            if len(b.crops) < len(b.rows):
                pixels = pixels.index_select(0, crop_of_row)
            return self.pinned({"input_ids": input_ids, "attention_mask": mask, "pixel_values": pixels})
        input_ids, mask = left_pad([r[len(b.prefix):] for r in b.ids], pad)
        return self.pinned({"prefix_ids": torch.tensor([b.prefix], dtype=torch.long), "pixel_values": pixels,
                            "input_ids": input_ids, "attention_mask": mask, "crop_of_row": crop_of_row})

    def _launch(self, b: _Batch, host: dict[str, Any]) -> _Pending:
        """Run a prepared pass and start copying its P(Yes) to the CPU."""
        torch = torch_module()
        inputs = self.to_device(host)
        with torch.inference_mode():
            if "prefix_ids" in inputs:
                logits = self._prefix_shared_logits(inputs)
            else:
                inputs["position_ids"] = _positions(inputs["attention_mask"])
                logits = self.model(**inputs, logits_to_keep=1).logits[:, -1, :]
            probs = logits[:, [self.yes_id, self.no_id]].float().softmax(dim=-1)[:, 0]
        if probs.device.type != "cuda":
            return _Pending(b.rows, probs.cpu())
        host_probs = torch.empty(probs.shape, dtype=probs.dtype, pin_memory=True)
        host_probs.copy_(probs, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return _Pending(b.rows, host_probs, done)

    def _prefix_shared_logits(self, inputs: dict[str, Any]) -> Any:
        """``(N, V)`` last-position logits: the prefix (with the image) once per distinct crop, its
        KV cache indexed out to the rows, then the rows' own tokens against it."""
        torch = torch_module()
        prefix = inputs["prefix_ids"].expand(inputs["pixel_values"].shape[0], -1)
        first = self.model(input_ids=prefix, pixel_values=inputs["pixel_values"], use_cache=True, logits_to_keep=1)
        cache = next((c for c in (getattr(first, n, None) for n in ("cache", "past_key_values")) if c is not None), None)
        if cache is None:
            raise BackendError(f"{self.model_id!r} returned no KV cache for the shared prefix")
        cache.reorder_cache(inputs["crop_of_row"])
        mask = inputs["attention_mask"]
        mask = torch.cat([mask.new_ones((mask.shape[0], prefix.shape[1])), mask], dim=1)
        out = self.model(input_ids=inputs["input_ids"], attention_mask=mask,
                         position_ids=_positions(mask)[:, prefix.shape[1]:], logits_to_keep=1,
                         **{str(self._cache_kwarg): cache})
        return out.logits[:, -1, :]


def _positions(mask: Any) -> Any:
    """Position ids from a left-padded attention mask (padding gets 0 or the last real position)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _cache_keyword(model: Any) -> Optional[str]:
    """How ``model.forward`` takes a KV cache (``cache`` from transformers 5.x, ``past_key_values``
    before), or None when it is not a LLaVA whose caches can be indexed (no prefix sharing)."""
    if getattr(getattr(model, "config", None), "model_type", None) != "llava":
        return None
    try:
        from transformers.cache_utils import Cache
    except ImportError:  # pragma: no cover - every declared transformers has it
        return None
    if not hasattr(Cache, "reorder_cache"):
        return None
    params = inspect.signature(model.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def _collect(pending: _Pending, out: list[float]) -> None:
    """A finished pass's P(Yes) into ``out`` (clipped to [0, 1]; NaN stays NaN and fails the caller's check)."""
    if pending.done is not None:
        pending.done.synchronize()
    for row, p in zip(pending.rows, pending.probs.tolist()):
        out[row] = min(max(p, 0.0), 1.0)
