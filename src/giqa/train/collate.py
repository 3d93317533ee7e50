"""Batches for supervised fine-tuning: chat template, image geometry, and the answer-only label mask.

The EOS rule: after every supervised assistant turn exactly one end-of-sequence token (the
tokenizer's ``eos_token``) is supervised, whether or not the chat template writes it, and never
two. For each conversation the model's own chat template renders the full text; for each
assistant turn ``k`` it also renders the prompt up to that turn (``add_generation_prompt=True``)
and the conversation through that turn. Both must be string prefixes of the full text
(checked). The turn's text between the two is the answer as the template writes it:

- if it holds the EOS token (Llama-3 ``...<|eot_id|>``, Qwen ``...<|im_end|>\\n``), the answer is
  supervised up to and including its first EOS; what the template writes after it (Qwen's
  newline) is context, not a target;
- if it does not (LLaVA-1.5's real template writes ``' ' + text + ' '``), one EOS is appended to
  it, so the model learns ``' Yes. </s>'`` and stops, as LLaVA's own training did.

The resulting texts and images go through the processor in one call (image tokens expanded,
pixel values batched, right padding). Each supervised span's two prefixes are then tokenized
alone, with the image placeholder expanded to the row's count of image tokens, and must match
the row's first tokens exactly (checked, so a tokenizer that merges across a turn boundary is an
error, not a silent shift). Labels equal ``input_ids`` on those spans and are ``-100``
elsewhere: system/user text, image tokens, the generation prompt, padding, and special tokens
the tokenizer adds on its own (BOS).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from giqa.errors import ParseError, require
from giqa.train.data import Conversation

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

__all__ = ["IGNORE_INDEX", "SftCollator", "supervised_text", "encode_chat"]

IGNORE_INDEX = -100
log = logging.getLogger(__name__)

Render = Callable[[list[dict[str, Any]], bool], str]  # (messages, add_generation_prompt) -> text


def _answer_with_eos(answer: str, eos: str) -> tuple[str, str]:
    """``(supervised, context_after)``: ``answer`` through its first ``eos``, else ``answer + eos``."""
    cut = answer.find(eos)
    if cut < 0:
        return answer + eos, ""
    end = cut + len(eos)
    return answer[:end], answer[end:]


def supervised_text(render: Render, messages: list[dict[str, Any]], eos: str, rid: str = "?") -> tuple[str, list[tuple[int, int]]]:
    """The training text of ``messages`` and the ``[start, end)`` character spans it supervises.

    ``render(messages, add_generation_prompt)`` is the chat template. Every assistant message
    gives one span: its answer as the template writes it, cut after (or completed with) one
    ``eos`` (module docstring). Raises :class:`ParseError` when the template does not render a
    turn as a prefix of the whole conversation.
    """
    if not eos:
        raise ParseError("the tokenizer has no eos_token; the EOS rule needs one")
    full = render(messages, False)
    out: list[str] = []
    length, pos, spans = 0, 0, []
    for k, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prompt = render(messages[:k], True)
        through = full if k == len(messages) - 1 else render(messages[: k + 1], False)
        if not (full.startswith(through) and through.startswith(prompt) and len(prompt) >= pos):
            raise ParseError(
                f"record {rid!r}: the chat template does not render turn {k} as a prefix of the whole "
                "conversation, so the answer tokens cannot be located"
            )
        supervised, after = _answer_with_eos(through[len(prompt) :], eos)
        before = full[pos : len(prompt)]
        start = length + len(before)
        spans.append((start, start + len(supervised)))
        out += [before, supervised, after]
        length = start + len(supervised) + len(after)
        pos = len(through)
    out.append(full[pos:])
    return "".join(out), spans


def _trailing_specials(tokenizer: Any) -> int:
    """How many tokens the tokenizer itself appends after a text (e.g. an EOS)."""
    probe = "quality"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for lead in range(len(full) - len(plain) + 1):
        if full[lead : lead + len(plain)] == plain:
            return len(full) - len(plain) - lead
    return 0  # pragma: no cover - a tokenizer that rewrites the text itself


def _adds_special(tokenizer: Any, text: str) -> bool:
    # As transformers' own apply_chat_template: a template that writes BOS itself gets no second one.
    bos = tokenizer.bos_token
    return not (bos is not None and text.startswith(bos))


def _span_bounds(tokenizer: Any, text: str, spans: list[tuple[int, int]], row_ids: list[int], start: int,
                 add_special: bool, trail: int, rid: str, expand: Callable[[str], str] = lambda t: t) -> list[tuple[int, int]]:
    """Token ``[b0, b1)`` of each character span, checked to be token prefixes of ``row_ids``."""
    prefixes = [text[:c] for span in spans for c in span]
    toks = tokenizer([expand(p) for p in prefixes], add_special_tokens=add_special)["input_ids"]
    bounds = []
    for prefix, tok in zip(prefixes, toks):
        n = len(tok) - trail
        if row_ids[start : start + n] != tok[:n]:
            raise ParseError(
                f"record {rid!r}: tokenizing the conversation up to {prefix[-40:]!r} does not give a "
                "prefix of its full tokenization (the tokenizer merges across the turn boundary)"
            )
        bounds.append(start + n)
    return list(zip(bounds[0::2], bounds[1::2]))


def encode_chat(tokenizer: Any, messages: list[dict[str, Any]]) -> dict[str, list[int]]:
    """``{"input_ids", "labels"}`` of one text-only conversation under the tokenizer's chat
    template and the EOS rule (the same masking :class:`SftCollator` applies to image chats)."""

    def render(msgs: list[dict[str, Any]], gen: bool) -> str:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    text, spans = supervised_text(render, messages, tokenizer.eos_token)
    add_special = _adds_special(tokenizer, text)
    ids = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    trail = _trailing_specials(tokenizer) if add_special else 0
    labels = [IGNORE_INDEX] * len(ids)
    for b0, b1 in _span_bounds(tokenizer, text, spans, ids, 0, add_special, trail, "chat"):
        labels[b0:b1] = ids[b0:b1]
    return {"input_ids": ids, "labels": labels}


class SftCollator:
    """``collator(items) -> dict`` of tensors for a ``*ForConditionalGeneration`` forward pass.

    ``items``: dicts with ``"conversation"`` (:class:`Conversation`) and ``"image"`` (RGB
    ``PIL.Image``), as :class:`giqa.train.data.SftDataset` yields them. Images go through
    :func:`giqa.models.image_geometry.prepare_images` with ``image_aspect`` (default ``"pad"``:
    padded to a square with the processor's mean colour, as LLaVA-1.5 trained and as the
    backends ask). Returns the processor's outputs (``input_ids`` and ``attention_mask``
    ``(B, L)`` int64, ``pixel_values`` ``(B, 3, H, W)`` float32 for LLaVA-1.5, plus e.g.
    ``image_sizes`` where the processor makes them) and ``labels`` ``(B, L)`` int64.
    ``max_length`` (tokens, image tokens included) cuts the tail of longer rows; a row whose
    first prompt alone reaches it is an error.
    """

    def __init__(self, processor: Any, *, max_length: Optional[int] = None, image_aspect: str = "pad") -> None:
        from giqa.models.image_geometry import IMAGE_ASPECTS

        if getattr(processor, "chat_template", None) is None:
            raise ParseError("the processor has no chat template; training renders conversations through it")
        if image_aspect not in IMAGE_ASPECTS:
            raise ValueError(f"image_aspect must be one of {', '.join(IMAGE_ASPECTS)}, got {image_aspect!r}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        if not self.tokenizer.eos_token:
            raise ParseError("the tokenizer has no eos_token; the EOS rule needs one")
        self.max_length = max_length
        self.image_aspect = image_aspect
        self.image_token: str = getattr(processor, "image_token", "<image>")
        self.image_token_id: int = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self._trail = _trailing_specials(self.tokenizer)
        self._warned_truncation = False

    # -- text ----------------------------------------------------------------------------
    def _render(self, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def render(self, conv: Conversation) -> tuple[str, list[tuple[int, int]]]:
        """``(training_text, [(start, end) character span of each supervised answer])``."""
        text, spans = supervised_text(self._render, conv.messages(), self.tokenizer.eos_token, conv.id)
        n_img = text.count(self.image_token)
        if n_img != 1:
            raise ParseError(
                f"record {conv.id!r}: the chat template rendering holds {n_img} {self.image_token!r} tokens, expected 1 "
                "(does the text contain the image token, or does the template drop the image?)"
            )
        if text.index(self.image_token) >= spans[0][0]:
            raise ParseError(f"record {conv.id!r}: the image must come before the first answer")
        return text, spans

    # -- batch ---------------------------------------------------------------------------
    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        from giqa.models.image_geometry import prepare_images, processor_image_kwargs

        torch = require("torch", "train")
        convs: list[Conversation] = [it["conversation"] for it in items]
        images: list["Image"] = prepare_images([it["image"] for it in items], self.processor.image_processor, self.image_aspect)
        rendered = [self.render(c) for c in convs]
        texts = [r[0] for r in rendered]
        add_special = _adds_special(self.tokenizer, texts[0])
        enc = self.processor(
            text=texts, images=images, padding="longest", padding_side="right",
            add_special_tokens=add_special, return_tensors="pt", **processor_image_kwargs(self.processor.image_processor),
        )
        ids, attn = enc["input_ids"], enc["attention_mask"]
        labels = torch.full_like(ids, IGNORE_INDEX)
        trail = self._trail if add_special else 0
        min_prompt = []
        for row, (conv, (text, spans)) in enumerate(zip(convs, rendered)):
            row_ids = ids[row].tolist()
            n_img = row_ids.count(self.image_token_id)

            def expand(prefix: str, n: int = n_img) -> str:
                return prefix.replace(self.image_token, self.image_token * n, 1)

            bounds = _span_bounds(self.tokenizer, text, spans, row_ids, 0, add_special, trail, conv.id, expand)
            for b0, b1 in bounds:
                labels[row, b0:b1] = ids[row, b0:b1]
            min_prompt.append(bounds[0][0])
        labels[attn == 0] = IGNORE_INDEX
        labels[ids == self.image_token_id] = IGNORE_INDEX
        out = dict(enc)
        out["labels"] = labels
        if self.max_length is not None and ids.shape[1] > self.max_length:
            self._truncate(out, convs, min_prompt, self.max_length)
        return out

    def _truncate(self, out: dict[str, Any], convs: list[Conversation], min_prompt: list[int], max_length: int) -> None:
        for conv, n in zip(convs, min_prompt):
            if n >= max_length:
                raise ParseError(
                    f"record {conv.id!r}: its prompt alone is {n} tokens (image tokens included), at or above "
                    f"max_length {max_length}; raise max_length"
                )
        if not self._warned_truncation:
            log.warning("truncating rows longer than max_length=%d tokens (answers lose their tail)", max_length)
            self._warned_truncation = True
        for key in ("input_ids", "attention_mask", "labels"):
            out[key] = out[key][:, : max_length]
