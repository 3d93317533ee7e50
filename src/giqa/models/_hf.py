"""Shared loading helpers for the transformers-based backends (torch imported lazily).

- :func:`pick_device` / :func:`pick_dtype`: the ``"auto"`` choices of :class:`HFSettings`.
- :func:`from_pretrained`: ``cls.from_pretrained`` with revision/cache/offline settings,
  ``trust_remote_code=False`` unless the settings say otherwise, errors wrapped as
  :class:`giqa.errors.BackendError` naming the checkpoint and what to do.
- :class:`HFBackend`: the lazy-loading base (``load()``, ``close()``, context manager).
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any, Optional, Sequence, TypeVar

from pydantic import BaseModel

from giqa.errors import BackendError, GiqaError, require
from giqa.models._llava_batches import expand_image_tokens, left_pad
from giqa.models.image_geometry import prepare_images, processor_image_kwargs
from giqa.models.settings import BackendSettings, HFSettings, ImageTextSettings

__all__ = [
    "torch_module",
    "transformers_module",
    "pick_device",
    "pick_dtype",
    "from_pretrained",
    "detect_random_weights",
    "resolve_settings",
    "HFBackend",
    "as_rgb_images",
    "batches",
    "dtype_kwarg",
    "transformers_version",
]

S = TypeVar("S", bound=BaseModel)


def torch_module():
    return require("torch", "models")


def transformers_module():
    return require("transformers", "models")


def transformers_version() -> tuple[int, int]:
    """``(major, minor)`` of the installed transformers."""
    version = transformers_module().__version__
    major, minor = (int("".join(ch for ch in part if ch.isdigit()) or 0) for part in version.split(".")[:2])
    return major, minor


def dtype_kwarg() -> str:
    """The ``from_pretrained`` keyword for the weights' dtype: ``dtype`` from transformers 4.56
    on (``torch_dtype`` is deprecated there), ``torch_dtype`` before."""
    return "dtype" if transformers_version() >= (4, 56) else "torch_dtype"


def resolve_settings(cls: type[S], settings: Optional[Any], overrides: dict[str, Any]) -> S:
    """``settings`` (a ``cls`` instance, a mapping or None) updated with keyword ``overrides``."""
    if settings is None:
        data: dict[str, Any] = {}
    elif isinstance(settings, BaseModel):
        data = settings.model_dump(exclude_unset=True)
    elif isinstance(settings, dict):
        data = dict(settings)
    else:
        raise TypeError(f"settings must be {cls.__name__}, a dict or None, got {type(settings).__name__}")
    data.update(overrides)
    return cls.model_validate(data)


def detect_random_weights(settings: BackendSettings) -> bool:
    """The explicit ``random_weights`` flag, else whether ``model_id`` is a giqa tiny build."""
    if settings.random_weights is not None:
        return settings.random_weights
    from giqa.models.tiny import is_tiny_random

    path = Path(settings.model_id).expanduser()
    return path.is_dir() and is_tiny_random(path)


def pick_device(name: str = "auto"):
    """``torch.device`` for ``"auto"`` (CUDA, then MPS, then CPU) or an explicit name."""
    torch = torch_module()
    if name != "auto":
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device {name!r} requested but CUDA is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(name: str, device) -> Any:
    """``torch.dtype`` for ``name``; ``"auto"``: bf16 on capable CUDA, fp16 on other CUDA, else fp32."""
    torch = torch_module()
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def from_pretrained(cls: Any, settings: HFSettings, **kwargs: Any) -> Any:
    """``cls.from_pretrained(settings.model_id, ...)`` with giqa's safety and offline defaults.

    ``dtype=`` is passed under the name the installed transformers knows (:func:`dtype_kwarg`).
    A local directory is loaded as is; a hub id is looked up in the local cache only when
    offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``). Failures raise
    :class:`BackendError` (chained) naming the checkpoint.
    """
    model_id = settings.model_id
    path = Path(model_id).expanduser()
    source = str(path) if path.is_dir() else model_id
    opts: dict[str, Any] = {"trust_remote_code": settings.trust_remote_code}
    if settings.revision is not None and not path.is_dir():
        opts["revision"] = settings.revision
    if settings.cache_dir is not None:
        opts["cache_dir"] = settings.cache_dir
    if settings.offline():
        opts["local_files_only"] = True
    opts.update(kwargs)
    if "dtype" in opts and dtype_kwarg() != "dtype":  # transformers < 4.56 calls it torch_dtype
        opts["torch_dtype"] = opts.pop("dtype")
    try:
        return cls.from_pretrained(source, **opts)
    except GiqaError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        hint = ""
        if not path.is_dir() and settings.offline():
            hint = (
                " (offline: the checkpoint is not in the local Hugging Face cache; download it "
                "with network access first, or pass a local directory as model_id)"
            )
        raise BackendError(
            f"could not load {getattr(cls, '__name__', cls)} from {model_id!r}: {exc}{hint}"
        ) from exc


class HFBackend:
    """Base of the transformers backends: settings, lazy load, ``close()``, context manager.

    Subclasses set ``settings_cls`` and implement ``_load()`` (which fills their model
    attributes) and ``_release()`` (which drops them). ``model_id`` and ``random_weights`` are
    known before anything is loaded.
    """

    settings_cls: type[HFSettings] = HFSettings

    def __init__(self, settings: Optional[Any] = None, **overrides: Any) -> None:
        self.settings = resolve_settings(self.settings_cls, settings, overrides)
        self.model_id = self.settings.model_id
        self.random_weights = detect_random_weights(self.settings)
        self._loaded = False
        self._lock = threading.Lock()
        self.device: Any = None  # a torch.device once loaded
        self.dtype: Any = None  # a torch.dtype once loaded

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> "HFBackend":
        """Load the model now (otherwise the first call loads it). Idempotent."""
        with self._lock:
            if not self._loaded:
                self.device = pick_device(self.settings.device)
                self.dtype = pick_dtype(self.settings.dtype, self.device)
                self._load()
                self._loaded = True
        return self

    @property
    def loaded(self) -> bool:
        return self._loaded

    def close(self) -> None:
        """Release the model (and GPU memory). A later call loads it again."""
        with self._lock:
            if self._loaded:
                self._release()
                self._loaded = False
                if self.device is not None and self.device.type == "cuda":
                    gc.collect()  # drop reference cycles so the CUDA memory is really free
                    torch_module().cuda.empty_cache()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def model_kwargs(self) -> dict[str, Any]:
        """``from_pretrained`` keywords placing the weights: dtype, and on CUDA the device map
        (weights go straight to the GPU instead of through CPU memory)."""
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        attn = getattr(self.settings, "attn_implementation", None)
        if attn is not None:
            kwargs["attn_implementation"] = attn
        if self.device is not None and self.device.type == "cuda":
            kwargs["device_map"] = str(self.device)
        return kwargs

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "not loaded"
        return f"{type(self).__name__}(model_id={self.model_id!r}, random_weights={self.random_weights}, {state})"

    # -- subclass hooks ----------------------------------------------------------------------
    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _release(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def as_rgb_images(images: Any, what: str = "images") -> list[Any]:
    """Check ``images`` is a sequence of ``PIL.Image.Image`` and return them in RGB mode."""
    from PIL import Image

    from giqa.errors import ImageError

    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise TypeError(f"{what} must be a sequence of PIL images, got {type(images).__name__}")
    out = []
    for i, im in enumerate(images):
        if not isinstance(im, Image.Image):
            raise TypeError(f"{what}[{i}] must be a PIL.Image.Image, got {type(im).__name__}")
        if im.width < 1 or im.height < 1:
            raise ImageError(f"{what}[{i}] is empty ({im.width}x{im.height})")
        out.append(im if im.mode == "RGB" else im.convert("RGB"))
    return out


def batches(n: int, size: int):
    """``range`` slices ``[0, size), [size, 2*size), ...`` covering ``n`` items."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# -- LLaVA-style image-text models ------------------------------------------------------------
_FALLBACK_LLAVA_PROMPT = "USER: <image>\n{prompt} ASSISTANT:"


class ImageTextBackend(HFBackend):
    """Shared loading and prompting of LLaVA-style models (``AutoModelForImageTextToText``).

    Loads any local directory or hub id whose processor has an image processor and a
    tokenizer. Prompts go through the processor's chat template as one user turn
    ``[image, text]`` with the generation prompt; a processor without a template gets the
    LLaVA-1.5 format ``USER: <image>\\n{prompt} ASSISTANT:``. Images reach the processor
    through :func:`giqa.models.image_geometry.prepare_images` with ``settings.image_aspect``
    (default: padded to a square with the processor's mean colour, as LLaVA-1.5 was trained).
    """

    settings_cls = ImageTextSettings
    settings: ImageTextSettings

    @property
    def image_aspect(self) -> str:
        return self.settings.image_aspect

    def model_info(self) -> dict[str, Any]:
        """What provenance should record about this backend: model id, image policy, random weights."""
        return {"model_id": self.model_id, "image_aspect": self.image_aspect, "random_weights": self.random_weights}

    def _load(self) -> None:
        transformers = transformers_module()
        self.processor = from_pretrained(transformers.AutoProcessor, self.settings)
        tok = getattr(self.processor, "tokenizer", None)
        if tok is None or getattr(self.processor, "image_processor", None) is None:
            raise BackendError(f"{self.model_id!r} has no image+text processor (is it a LLaVA-style checkpoint?)")
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.model = from_pretrained(transformers.AutoModelForImageTextToText, self.settings, **self.model_kwargs())
        self.model.to(self.device).eval()
        self._image_tokens = self._probe_image_tokens()

    def _release(self) -> None:
        del self.model, self.processor, self._image_tokens

    def prompt(self, text: str) -> str:
        """The full model prompt (with image placeholder and generation prompt) for ``text``."""
        if getattr(self.processor, "chat_template", None):
            conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        return _FALLBACK_LLAVA_PROMPT.format(prompt=text)

    def encode(self, images: list[Any], texts: list[str]) -> dict[str, Any]:
        """Processor inputs on the model's device (left padding), through the processor itself."""
        return self.to_device(self.encode_host(images, texts))

    def encode_host(self, images: list[Any], texts: list[str]) -> dict[str, Any]:
        """The processor's inputs for ``images[i]`` with ``texts[i]``, on the CPU (left padding)."""
        prompts = [self.prompt(t) for t in texts]
        image_processor = self.processor.image_processor
        images = prepare_images(images, image_processor, self.settings.image_aspect)
        enc = self.processor(
            images=images, text=prompts, return_tensors="pt", padding=True, **processor_image_kwargs(image_processor)
        )
        # some tokenizers (transformers 4.x fast tokenizers by default) add token_type_ids, which
        # LLaVA-style models refuse in generate()
        return {k: v for k, v in enc.items() if k != "token_type_ids"}

    # -- giqa's own preparation (the processor's tensors; checked when the model loads) ------
    _image_tokens: Optional[tuple[int, int, tuple[int, ...]]] = None  # see _probe_image_tokens

    def prompt_ids(self, texts: Sequence[str]) -> Optional[list[list[int]]]:
        """Token ids of each text's full prompt, image placeholder expanded as the processor does;
        None when only the processor can tokenise for this model (see :meth:`_probe_image_tokens`)."""
        if self._image_tokens is None:
            return None
        return self._expanded_ids(texts, *self._image_tokens[:2])

    def _expanded_ids(self, texts: Sequence[str], image_id: int, count: int) -> list[list[int]]:
        prompts = [self.prompt(t) for t in texts]
        return [expand_image_tokens(ids, image_id, count) for ids in self.processor.tokenizer(prompts)["input_ids"]]

    def pixel_values(self, images: Sequence[Any]) -> Any:
        """``(N, 3, H, W)`` float32 pixels of ``images`` under the image-geometry policy (CPU)."""
        ip = self.processor.image_processor
        prepared = prepare_images(images, ip, self.settings.image_aspect)
        return ip(images=prepared, return_tensors="pt", **processor_image_kwargs(ip))["pixel_values"]

    def host_inputs(self, images: Sequence[Any], ids: Sequence[Sequence[int]]) -> Optional[dict[str, Any]]:
        """Model inputs (CPU, left padding) of ``images[i]`` with prompt ids ``ids[i]``; None when
        the pixels are not the size the ids were made for (the caller then uses the processor)."""
        pixels = self.pixel_values(images) if self._image_tokens is not None else None
        if not self.fits(pixels):
            return None
        input_ids, attention_mask = left_pad(ids, self.processor.tokenizer.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixels}

    def fits(self, pixels: Any) -> bool:
        """Whether ``pixels`` (from :meth:`pixel_values`) have the size :meth:`prompt_ids` assumes."""
        return self._image_tokens is not None and pixels is not None and tuple(pixels.shape[1:]) == self._image_tokens[2]

    def pinned(self, host: dict[str, Any]) -> dict[str, Any]:
        """``host`` in page-locked memory when bound for CUDA (so the copy can overlap compute)."""
        if self.device is None or self.device.type != "cuda":
            return host
        return {k: (v.pin_memory() if hasattr(v, "pin_memory") else v) for k, v in host.items()}

    def to_device(self, host: dict[str, Any]) -> dict[str, Any]:
        """CPU inputs on the model's device (non-blocking from pinned memory), pixels in the model's dtype."""
        inputs = {k: (v.to(self.device, non_blocking=True) if hasattr(v, "to") else v) for k, v in host.items()}
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def prefetch_depth(self) -> int:
        """Batches prepared ahead in threads: ``settings.prefetch``, else 2 on CUDA and 0 elsewhere."""
        depth = getattr(self.settings, "prefetch", None)
        if depth is not None:
            return int(depth)
        return 2 if self.device is not None and self.device.type == "cuda" else 0

    def _probe_image_tokens(self) -> Optional[tuple[int, int, tuple[int, ...]]]:
        """``(image token id, image tokens per image, pixel shape (3, H, W))`` when giqa's own
        token ids and pixels equal the processor's for a probe image and prompt, else None (then
        every batch goes through the processor). Only ``LlavaProcessor`` is tried: its images
        all come out one size, hence one number of image tokens.
        """
        torch = torch_module()
        from PIL import Image

        proc = self.processor
        image_id = getattr(proc, "image_token_id", None)
        if type(proc).__name__ != "LlavaProcessor" or not isinstance(image_id, int):
            return None
        probe, text = Image.new("RGB", (24, 16), (200, 30, 60)), "Is the image quality blurry?"
        try:
            ref = self.encode_host([probe], [text])
            ids = ref["input_ids"][0].tolist()
            count = ids.count(image_id)
            same = self._expanded_ids([text], image_id, count)[0] == ids and torch.equal(
                self.pixel_values([probe]), ref["pixel_values"])
        except Exception:  # noqa: BLE001 - whatever fails here, the processor path still works
            return None
        return (image_id, count, tuple(ref["pixel_values"].shape[1:])) if same and count else None


def check_pairs(images: Any, texts: Any, what: str) -> tuple[list[Any], list[str]]:
    """RGB images and their texts, checked to be the same length."""
    images = as_rgb_images(images)
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__len__"):
        raise TypeError(f"{what} must be a list of strings")
    texts = list(texts)
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images but {len(texts)} {what}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] must be a string, got {type(t).__name__}")
    return images, texts
