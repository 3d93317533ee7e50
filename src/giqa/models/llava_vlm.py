"""A LLaVA-style vision-language model answering prompts about images (greedy decoding).

Used by the GIQA-Bench runner and to run a model the trainer produced: ``model_id`` is a hub
id (default ``llava-hf/llava-1.5-7b-hf``) or any local directory saved with
``save_pretrained`` (model + processor).
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import Field

from giqa.errors import BackendError, GiqaError
from giqa.models._hf import ImageTextBackend, batches, check_pairs, torch_module
from giqa.models.settings import ImageTextSettings

__all__ = ["LlavaVLMSettings", "LlavaVLM"]


class LlavaVLMSettings(ImageTextSettings):
    """Settings of :class:`LlavaVLM` (``batch_size``: image-prompt pairs per ``generate``)."""

    model_id: str = "llava-hf/llava-1.5-7b-hf"
    batch_size: int = Field(4, ge=1, le=1024)


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
        out: list[str] = []
        try:
            for sl in batches(len(images), self.settings.batch_size):
                out.extend(self._answer(images[sl], prompts[sl], max_new_tokens))
        except GiqaError:
            raise
        except Exception as exc:
            raise BackendError(f"VLM {self.model_id!r} failed to answer: {exc}") from exc
        return out

    def _answer(self, images: list[Any], prompts: list[str], max_new_tokens: int) -> list[str]:
        torch = torch_module()
        inputs = self.encode(images, prompts)
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
