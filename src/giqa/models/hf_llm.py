"""An in-process chat LLM on transformers (default Llama-3-8B-Instruct).

Conversations are rendered with the tokenizer's chat template, batched with left padding and
decoded greedily when ``temperature == 0`` (deterministic). ``json_schema`` adds an instruction
with the schema to the system prompt (no constrained decoding); callers validate the text.

For throughput, serve the model with vLLM or SGLang and use the ``openai`` backend (the
``paper`` preset does with ``llm_base_url``); this backend is the in-process fallback. Its
options: ``cache_implementation="static"`` (a preallocated KV cache; prompts are padded to a
multiple of 64 tokens so batches share shapes) and ``compile`` (``torch.compile`` of the decoding
step, which transformers applies by itself to a static cache on CUDA). Measured on a CPU with a
4-layer Llama of width 512 (benchmarks/results/llm.md): the static cache 1.04-1.37x, compiling
costs tens of seconds and gains nothing there; greedy answers are identical in every mode
(tests). They are off by default; on a GPU they are not measured.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Mapping, Optional, Sequence

from pydantic import Field, model_validator

from giqa.errors import BackendError, GiqaError
from giqa.models._hf import HFBackend, batches, from_pretrained, torch_module, transformers_module
from giqa.models.protocols import ChatMessage
from giqa.models.settings import HFSettings

__all__ = ["TransformersLLMSettings", "TransformersLLM", "schema_instruction", "with_schema", "check_conversations"]

_ROLES = {"system", "user", "assistant"}


class TransformersLLMSettings(HFSettings):
    """Settings of :class:`TransformersLLM`.

    ``batch_size`` counts conversations per ``generate`` call; ``max_input_tokens`` truncates
    longer prompts from the left (None: no limit); ``seed`` makes sampling
    (``temperature > 0``) reproducible. ``cache_implementation``: ``"dynamic"`` (transformers'
    default) or ``"static"`` (preallocated; prompts padded to a multiple of 64 tokens).
    ``compile``: None lets transformers decide (it compiles the decoding step of a static cache
    on CUDA), True compiles it on any device, False never.
    """

    model_id: str = "meta-llama/Meta-Llama-3-8B-Instruct"
    batch_size: int = Field(8, ge=1, le=1024)
    max_input_tokens: Optional[int] = Field(None, ge=1)
    seed: Optional[int] = None
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    cache_implementation: Literal["dynamic", "static"] = "dynamic"
    compile: Optional[bool] = None

    @model_validator(mode="after")
    def _compile_needs_static(self) -> "TransformersLLMSettings":
        if self.compile and self.cache_implementation != "static":
            raise ValueError("compile=True needs cache_implementation='static' (transformers compiles static caches only)")
        return self


def schema_instruction(json_schema: Mapping[str, Any]) -> str:
    """The system-prompt text asking for JSON output that follows ``json_schema``."""
    return (
        "Reply with one JSON value and nothing else (no prose, no code fences). "
        "It must validate against this JSON schema:\n" + json.dumps(json_schema, separators=(",", ":"))
    )


def check_conversations(conversations: Any) -> list[list[ChatMessage]]:
    """Validate ``conversations`` (a list of lists of ``{"role", "content"}``); TypeError/ValueError otherwise."""
    if isinstance(conversations, (str, bytes, Mapping)) or not hasattr(conversations, "__len__"):
        raise TypeError("conversations must be a list of conversations (each a list of messages)")
    out: list[list[ChatMessage]] = []
    for i, conv in enumerate(conversations):
        if isinstance(conv, (str, bytes, Mapping)) or not hasattr(conv, "__len__") or len(conv) == 0:
            raise ValueError(f"conversation {i} must be a non-empty list of messages")
        msgs: list[ChatMessage] = []
        for k, msg in enumerate(conv):
            if not isinstance(msg, Mapping) or not isinstance(msg.get("content"), str):
                raise ValueError(f"conversation {i}, message {k}: expected {{'role': str, 'content': str}}, got {msg!r}")
            if msg.get("role") not in _ROLES:
                raise ValueError(f"conversation {i}, message {k}: role must be one of {sorted(_ROLES)}, got {msg.get('role')!r}")
            msgs.append(ChatMessage(role=msg["role"], content=msg["content"]))
        out.append(msgs)
    return out


def with_schema(messages: list[ChatMessage], json_schema: Optional[Mapping[str, Any]]) -> list[ChatMessage]:
    """``messages`` with the schema instruction appended to (or added as) the system message."""
    if json_schema is None:
        return messages
    note = schema_instruction(json_schema)
    if messages and messages[0]["role"] == "system":
        first = ChatMessage(role="system", content=messages[0]["content"].rstrip() + "\n\n" + note)
        return [first, *messages[1:]]
    return [ChatMessage(role="system", content=note), *messages]


class TransformersLLM(HFBackend):
    """:class:`giqa.models.LLM` on ``AutoModelForCausalLM`` with the tokenizer's chat template."""

    settings_cls = TransformersLLMSettings
    settings: TransformersLLMSettings

    def _load(self) -> None:
        transformers = transformers_module()
        tok = from_pretrained(transformers.AutoTokenizer, self.settings)
        if not getattr(tok, "chat_template", None):
            raise BackendError(f"{self.model_id!r} has no chat template; use an instruction-tuned checkpoint")
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.tokenizer = tok
        self.model = from_pretrained(transformers.AutoModelForCausalLM, self.settings, **self.model_kwargs())
        self.model.to(self.device).eval()

    def _release(self) -> None:
        del self.model, self.tokenizer

    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        *,
        json_schema: Optional[Mapping[str, Any]] = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
    ) -> list[str]:
        """One completion per conversation (special tokens removed, whitespace stripped)."""
        convs = [with_schema(c, json_schema) for c in check_conversations(conversations)]
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not convs:
            return []
        self.load()
        out: list[str] = []
        try:
            for sl in batches(len(convs), self.settings.batch_size):
                out.extend(self._generate(convs[sl], max_new_tokens, temperature))
        except GiqaError:
            raise
        except Exception as exc:
            raise BackendError(f"LLM {self.model_id!r} failed to generate: {exc}") from exc
        return out

    def _generate(self, convs: list[list[ChatMessage]], max_new_tokens: int, temperature: float) -> list[str]:
        torch = torch_module()
        tok = self.tokenizer
        texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs]
        # The template already writes the BOS token; don't let the tokenizer add a second one.
        enc_kwargs: dict[str, Any] = {"padding": True, "return_tensors": "pt", "add_special_tokens": False}
        if self.settings.max_input_tokens is not None:
            tok.truncation_side = "left"
            enc_kwargs.update(truncation=True, max_length=self.settings.max_input_tokens)
        if self.settings.cache_implementation == "static":
            enc_kwargs["pad_to_multiple_of"] = _STATIC_BUCKET  # a few cache shapes, not one per batch
        enc = tok(texts, **enc_kwargs).to(self.device)
        gen: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tok.pad_token_id, **self._cache_kwargs()}
        if temperature > 0:
            gen.update(do_sample=True, temperature=temperature, top_p=self.settings.top_p)
            if self.settings.seed is not None:
                torch.manual_seed(self.settings.seed)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            ids = self.model.generate(**enc, **gen)
        new = ids[:, enc["input_ids"].shape[1]:]
        return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]

    def _cache_kwargs(self) -> dict[str, Any]:
        """``generate`` keywords of the cache and compile settings (the same names in transformers
        4.56 and 5.x: ``cache_implementation``, ``compile_config``, ``disable_compile``)."""
        s = self.settings
        out: dict[str, Any] = {}
        if s.cache_implementation == "static":
            out["cache_implementation"] = "static"
        if s.compile is False:
            out["disable_compile"] = True
        elif s.compile:
            config = transformers_module().CompileConfig()
            config._compile_all_devices = True  # transformers compiles on CUDA only unless told so
            out["compile_config"] = config
        return out


_STATIC_BUCKET = 64
