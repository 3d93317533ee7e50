"""The IQA-Filter (Q-Instruct's role in Alg. 1): P("Yes") of a LLaVA-style model for each crop.

For each crop the model is asked ``question + prompt_suffix`` (e.g. "Is the image quality
blurry?") and P(Yes) is read from the **next-token logits** after the generation prompt:
``p_yes = softmax([logit[yes_id], logit[no_id]])[0]``, not from parsed text. One forward pass
per batch of crops (left padding, ``position_ids`` from the attention mask so padding does not
change the result).

Default checkpoint: ``llava-hf/llava-1.5-7b-hf``. Q-Instruct (the paper's filter) is a
LLaVA-1.5-7B fine-tune whose public weights are in the original LLaVA repository format, which
transformers does not load; a Q-Instruct checkpoint converted to the ``llava-hf`` layout (with
transformers' ``convert_llava_weights_to_hf.py``) drops in through ``model_id``.
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import Field

from giqa.errors import BackendError, GiqaError
from giqa.models._hf import ImageTextBackend, batches, check_pairs, torch_module
from giqa.models.settings import ImageTextSettings

__all__ = ["LlavaFilterSettings", "LlavaQualityFilter"]


class LlavaFilterSettings(ImageTextSettings):
    """Settings of :class:`LlavaQualityFilter`.

    ``yes_token`` / ``no_token`` must each be a single token of the model's tokenizer (for
    byte-level BPE tokenizers whose template ends with ``":"``, the model answers ``" Yes"``:
    set the tokens with their leading space). ``prompt_suffix`` is appended to each question;
    the default is LLaVA-1.5's short-answer instruction.
    """

    model_id: str = "llava-hf/llava-1.5-7b-hf"
    batch_size: int = Field(8, ge=1, le=1024)
    yes_token: str = "Yes"
    no_token: str = "No"
    prompt_suffix: str = "\nAnswer the question using a single word or phrase."


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

    def p_yes(self, crops: Sequence[Any], questions: Sequence[str]) -> list[float]:
        """P(Yes) in [0, 1] for each (crop, question), from the Yes/No next-token logits."""
        crops, questions = check_pairs(crops, questions, "questions")
        if not crops:
            return []
        self.load()
        out: list[float] = []
        try:
            for sl in batches(len(crops), self.settings.batch_size):
                out.extend(self._p_yes(crops[sl], questions[sl]))
        except GiqaError:
            raise
        except Exception as exc:
            raise BackendError(f"quality filter {self.model_id!r} failed: {exc}") from exc
        return out

    def yes_no_logits(self, crops: Sequence[Any], questions: Sequence[str]):
        """``(N, 2)`` float32 tensor of the next-token logits of (Yes, No); for inspection/tests."""
        crops, questions = check_pairs(crops, questions, "questions")
        self.load()
        torch = torch_module()
        texts = [q + self.settings.prompt_suffix for q in questions]
        inputs = self.encode(crops, texts)
        mask = inputs["attention_mask"]
        inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.model(**inputs, logits_to_keep=1).logits[:, -1, :]
        return logits[:, [self.yes_id, self.no_id]].float().cpu()

    def _p_yes(self, crops: list[Any], questions: list[str]) -> list[float]:
        pair = self.yes_no_logits(crops, questions)
        probs = pair.softmax(dim=-1)[:, 0]
        return [min(max(float(p), 0.0), 1.0) for p in probs]
