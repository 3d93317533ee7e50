"""A LLaVA-style vision-language model answering prompts about images (greedy decoding).

Used by the GIQA-Bench runner and to run a model the trainer produced: ``model_id`` is a hub
id (default ``llava-hf/llava-1.5-7b-hf``) or any local directory saved with
``save_pretrained`` (model + processor).

Throughput: the pairs are sorted by prompt length (longest first) before they are cut into
``batch_size`` batches, so a batch pads little, and the next ``prefetch`` batches are padded
to a square, preprocessed and tokenised in background threads while ``generate`` runs. Greedy
answers equal the pairs in their given order (tests/test_models_llava_equivalence.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Optional, Sequence

from pydantic import Field

from giqa.errors import BackendError, GiqaError
from giqa.models._hf import ImageTextBackend, check_pairs, torch_module
from giqa.models._llava_batches import length_order
from giqa.models._prefetch import Prefetcher
from giqa.models.settings import ImageTextSettings

__all__ = ["LlavaVLMSettings", "LlavaVLM"]


class LlavaVLMSettings(ImageTextSettings):
    """Settings of :class:`LlavaVLM`.

    ``batch_size``: image-prompt pairs per ``generate``; ``prefetch``: batches preprocessed
    ahead in background threads (0: none; same results); None: 2 on CUDA, 0 elsewhere.
    """

    model_id: str = "llava-hf/llava-1.5-7b-hf"
    batch_size: int = Field(4, ge=1, le=1024)
    prefetch: Optional[int] = Field(None, ge=0, le=32)


class LlavaVLM(ImageTextBackend):
    """:class:`giqa.models.VisionLanguageModel`: ``answer(images, prompts)`` -> texts."""

    settings_cls = LlavaVLMSettings
    settings: LlavaVLMSettings

    def answer(self, images: Sequence[Any], prompts: Sequence[str], *, max_new_tokens: int = 512) -> list[str]:
        """Greedy answer to ``prompts[i]`` about ``images[i]`` (special tokens removed, stripped)."""
        images, prompts = check_pairs(images, prompts, "prompts")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not images:
            return []
        self.load()
        try:
            return self._answer_all(images, prompts, max_new_tokens)
        except GiqaError:
            raise
        except Exception as exc:
            raise BackendError(f"VLM {self.model_id!r} failed to answer: {exc}") from exc

    def _answer_all(self, images: list[Any], prompts: list[str], max_new_tokens: int) -> list[str]:
        """Pairs sorted by prompt length into batches; the next batches prepared while one generates."""
        ids = self.prompt_ids(prompts)
        order = length_order([len(x) for x in ids] if ids is not None else [len(p) for p in prompts])
        plan = [order[k:k + self.settings.batch_size] for k in range(0, len(order), self.settings.batch_size)]
        out = [""] * len(images)
        prepare = partial(self._prepare, images, prompts, ids)
        with Prefetcher(prepare, plan, depth=self.prefetch_depth(), name="giqa-vlm") as prepared:
            for rows, host in prepared:
                for r, text in zip(rows, self._generate(self.to_device(host), max_new_tokens)):
                    out[r] = text
        return out

    def _prepare(self, images: list[Any], prompts: list[str], ids: Optional[list[list[int]]], rows: list[int]) -> dict[str, Any]:
        """CPU inputs of one batch (runs in a prefetch thread): giqa's own, else the processor's."""
        host = self.host_inputs([images[r] for r in rows], [ids[r] for r in rows]) if ids is not None else None
        if host is None:
            host = self.encode_host([images[r] for r in rows], [prompts[r] for r in rows])
        return self.pinned(host)

    def _generate(self, inputs: dict[str, Any], max_new_tokens: int) -> list[str]:
        torch = torch_module()
        tok = self.processor.tokenizer
        with torch.inference_mode():
            ids = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
            )
        new = ids[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
