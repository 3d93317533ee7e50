"""Batches for supervised fine-tuning: chat template, processor, and the answer-only label mask.

For each conversation the model's own chat template renders the full text; for each assistant
turn ``k`` it also renders the prompt up to that turn (``add_generation_prompt=True``) and the
conversation up to the end of that turn. Both must be string prefixes of the full text (checked).
The full texts and images go through the processor in one call (image tokens expanded, pixel
values batched, right padding). Each prefix is then tokenized alone, with its image placeholder
expanded to the row's count of image tokens, and must match the row's first tokens exactly
(checked, so a tokenizer that merges across a turn boundary is an error, not a silent shift).
Labels equal ``input_ids`` on ``[prompt_k, end_k)`` for every assistant turn ``k`` (the answer
text and whatever the template writes to close the turn, e.g. ``</s>``) and are ``-100``
elsewhere: system/user text, image tokens, the generation prompt, padding, and special tokens
the tokenizer adds on its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional, Sequence

from giqa.errors import ParseError, require
from giqa.train.data import Conversation

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

__all__ = ["IGNORE_INDEX", "SftCollator"]

IGNORE_INDEX = -100
log = logging.getLogger(__name__)


class SftCollator:
    """``collator(items) -> dict`` of tensors for a ``*ForConditionalGeneration`` forward pass.

    ``items``: dicts with ``"conversation"`` (:class:`Conversation`) and ``"image"`` (RGB
    ``PIL.Image``), as :class:`giqa.train.data.SftDataset` yields them. Returns the processor's
    outputs (``input_ids`` and ``attention_mask`` ``(B, L)`` int64, ``pixel_values``
    ``(B, 3, H, W)`` float32 for LLaVA-1.5, plus e.g. ``image_sizes`` where the processor makes
    them) and ``labels`` ``(B, L)`` int64. ``max_length`` (tokens, image tokens included) cuts
    the tail of longer rows; a row whose first prompt alone reaches it is an error.
    """

    def __init__(self, processor: Any, *, max_length: Optional[int] = None) -> None:
        if getattr(processor, "chat_template", None) is None:
            raise ParseError("the processor has no chat template; training renders conversations through it")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_length = max_length
        self.image_token: str = getattr(processor, "image_token", "<image>")
        self.image_token_id: int = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self._trail = self._trailing_specials()
        self._warned_truncation = False

    def _trailing_specials(self) -> int:
        """How many tokens the tokenizer itself appends after a text (e.g. an EOS)."""
        probe = "quality"
        plain = self.tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = self.tokenizer(probe, add_special_tokens=True)["input_ids"]
        for lead in range(len(full) - len(plain) + 1):
            if full[lead : lead + len(plain)] == plain:
                return len(full) - len(plain) - lead
        return 0  # pragma: no cover - a tokenizer that rewrites the text itself

    # -- text ----------------------------------------------------------------------------
    def _render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def render(self, conv: Conversation) -> tuple[str, list[tuple[str, str]]]:
        """``(full_text, [(prompt_k, through_k) for each assistant turn k])`` (all strings)."""
        messages = conv.messages()
        full = self._render(messages, add_generation_prompt=False)
        n_img = full.count(self.image_token)
        if n_img != 1:
            raise ParseError(
                f"record {conv.id!r}: the chat template rendering holds {n_img} {self.image_token!r} tokens, expected 1 "
                "(does the text contain the image token, or does the template drop the image?)"
            )
        spans = []
        for k, (role, _) in enumerate(conv.turns):
            if role != "assistant":
                continue
            prompt = self._render(messages[:k], add_generation_prompt=True)
            through = full if k == len(messages) - 1 else self._render(messages[: k + 1], add_generation_prompt=False)
            if not (full.startswith(through) and through.startswith(prompt)):
                raise ParseError(
                    f"record {conv.id!r}: the chat template does not render turn {k} as a prefix of the whole "
                    "conversation, so the answer tokens cannot be located"
                )
            if self.image_token not in prompt:
                raise ParseError(f"record {conv.id!r}: the image must come before the first answer")
            spans.append((prompt, through))
        return full, spans

    # -- batch ---------------------------------------------------------------------------
    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        torch = require("torch", "train")
        convs: list[Conversation] = [it["conversation"] for it in items]
        images: list["Image"] = [it["image"] for it in items]
        rendered = [self.render(c) for c in convs]
        texts = [r[0] for r in rendered]
        bos = self.tokenizer.bos_token
        # As transformers' own apply_chat_template: a template that writes BOS itself gets no second one.
        add_special = not (bos is not None and texts[0].startswith(bos))
        enc = self.processor(
            text=texts,
            images=images,
            padding="longest",
            padding_side="right",
            add_special_tokens=add_special,
            return_tensors="pt",
        )
        ids = enc["input_ids"]
        attn = enc["attention_mask"]
        labels = torch.full_like(ids, IGNORE_INDEX)
        trail = self._trail if add_special else 0
        min_prompt = []
        for row, (conv, (_, spans)) in enumerate(zip(convs, rendered)):
            valid = torch.nonzero(attn[row]).flatten()
            start = int(valid[0]) if len(valid) else 0  # right padding: 0
            row_ids = ids[row].tolist()
            n_img = row_ids.count(self.image_token_id)
            bounds = []
            prefixes = [s for span in spans for s in span]
            expanded = [p.replace(self.image_token, self.image_token * n_img, 1) for p in prefixes]
            toks = self.tokenizer(expanded, add_special_tokens=add_special)["input_ids"]
            for text, tok in zip(prefixes, toks):
                n = len(tok) - trail
                if row_ids[start : start + n] != tok[:n]:
                    raise ParseError(
                        f"record {conv.id!r}: tokenizing the conversation up to {text[-40:]!r} does not give a "
                        "prefix of its full tokenization (the tokenizer merges across the turn boundary)"
                    )
                bounds.append(start + n)
            for b0, b1 in zip(bounds[0::2], bounds[1::2]):
                labels[row, b0:b1] = ids[row, b0:b1]
            min_prompt.append(bounds[0] - start)
        labels[attn == 0] = IGNORE_INDEX
        labels[ids == self.image_token_id] = IGNORE_INDEX
        out = dict(enc)
        out["labels"] = labels
        if self.max_length is not None and ids.shape[1] > self.max_length:
            for conv, n in zip(convs, min_prompt):
                if n >= self.max_length:
                    raise ParseError(
                        f"record {conv.id!r}: its prompt alone is {n} tokens (image tokens included), at or above "
                        f"max_length {self.max_length}; raise max_length"
                    )
            if not self._warned_truncation:
                log.warning("truncating rows longer than max_length=%d tokens (answers lose their tail)", self.max_length)
                self._warned_truncation = True
            for key in ("input_ids", "attention_mask", "labels"):
                out[key] = out[key][:, : self.max_length]
        return out
