"""Tiny random-weight models built from configs, offline, for tests, demos and benchmarks.

Each ``build_tiny_*`` function builds a model with a few thousand parameters and its
tokenizer/processor in code (tokenizers built with the ``tokenizers`` library, no download),
saves both with ``save_pretrained`` into ``out_dir`` and returns that directory. The real
backends then load it through exactly the same ``from_pretrained`` code paths as a real
checkpoint. The weights are random: outputs are meaningless but have the right shapes and types.

A ``giqa_tiny.json`` marker file in the directory records what was built (and lets a second
call with the same ``out_dir`` reuse it instead of rebuilding). Building is deterministic
(fixed seed), so two builds give identical weights.
"""

from __future__ import annotations

import importlib
import json
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Union

from giqa.data.io import atomic_directory, write_text_atomic
from giqa.errors import require

__all__ = [
    "MARKER_FILE",
    "build_tiny_llava",
    "build_tiny_llava_interleave",
    "build_tiny_llama",
    "build_tiny_qwen2",
    "build_tiny_grounding_dino",
    "build_tiny_sentence_embedder",
    "is_tiny_random",
]

MARKER_FILE = "giqa_tiny.json"
_VERSION = 2  # 2: real checkpoints' templates, special tokens and processor settings
_SEED = 0

PathLike = Union[str, Path]

# A small English corpus of the words a quality description uses; the byte-level BPE trained on
# it gives real subword merges (so generated text decodes to plausible fragments) while any
# input text still tokenizes (byte fallback).
_CORPUS = """
Yes No Yes No yes no Yes. No. Yes, No,
The image quality is good. The image quality is poor. Is the image quality blurry?
The man wearing a white t-shirt is in focus. The sky is overexposed and the trees are dark.
The photo is blurry, noisy, underexposed, overexposed, sharp, clear, grainy, pixelated.
The background is out of focus while the foreground subject is sharp and well lit.
There is motion blur on the car. The colors are vivid. The lighting is dim. The face is clear.
What is the quality of the region? Why is the image blurry? How is the lighting? Which object?
Answer with a single word. Please describe the quality of this image in detail.
a an the of in on at with and or but is are was were has have this that these those
dog cat person woman man child tree sky building road car flower grass water cloud wall
"""

# -- helpers -----------------------------------------------------------------------------
def _marker(out: Path) -> Path:
    return out / MARKER_FILE


def _cached(out: Path, kind: str) -> bool:
    try:
        info = json.loads(_marker(out).read_text())
    except (OSError, ValueError):
        return False
    return info.get("kind") == kind and info.get("version") == _VERSION


def _write_marker(out: Path, kind: str, **extra: Any) -> None:
    info = {"kind": kind, "version": _VERSION, "random_weights": True, **extra}
    write_text_atomic(_marker(out), json.dumps(info, indent=2))


def _materialise(out_dir: PathLike, kind: str, force: bool, write: Callable[[Path], dict[str, Any]]) -> Path:
    """Build with ``write`` into ``out_dir`` unless a finished build of ``kind`` is there.

    A new directory is built under a name of its own and renamed at the end
    (:func:`giqa.data.io.atomic_directory`), so a crash or a concurrent build never leaves a
    half-written directory that looks finished; of concurrent builds the first to finish is
    kept. An existing directory is rebuilt in place with its marker removed until the end. The
    marker file is written last.
    """
    out = Path(out_dir)
    if not force and _cached(out, kind):
        return out
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        _marker(out).unlink(missing_ok=True)  # rebuilding in place: not finished until the end
        _write_marker(out, kind, **write(out))
        return out
    try:
        with atomic_directory(out) as target:
            _write_marker(target, kind, **write(target))
    except FileExistsError:
        if not _cached(out, kind):  # not a concurrent build that finished first
            raise
    return out


def is_tiny_random(path: PathLike) -> bool:
    """True when ``path`` is a directory made by one of the ``build_tiny_*`` functions."""
    return _marker(Path(path)).is_file()


def _seed() -> None:
    torch = require("torch", "models")
    torch.manual_seed(_SEED)


def _byte_bpe(special_tokens: list[str], *, vocab_size: int = 512, bos: str | None = None):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on the built-in corpus.

    "Yes", "No", " Yes" and " No" are single tokens (the quality filter reads their logits).
    ``bos`` (if given) is prepended to every encoding, as Llama tokenizers do.
    """
    tk = require("tokenizers", "models")
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = tk.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    if bos is not None:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    for word in ("Yes", "No", " Yes", " No"):
        ids = tok.encode(word, add_special_tokens=False).ids
        if len(ids) != 1:  # pragma: no cover - guards a change in the corpus above
            raise RuntimeError(f"tiny tokenizer splits {word!r} into {ids}")
    return tok


# -- tokenizers with a real checkpoint's special tokens ------------------------------------
def _special_tokens(tok_cfg: dict[str, Any], extra: tuple[str, ...] = ()) -> list[str]:
    """Every special token a reference ``tokenizer_config.json`` names, in id order, plus ``extra``."""
    decoder = tok_cfg.get("added_tokens_decoder", {})
    ordered = [decoder[k]["content"] for k in sorted(decoder, key=int)]
    named = [tok_cfg.get(k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")]
    out: list[str] = []
    for token in [*ordered, *named, *tok_cfg.get("additional_special_tokens", []), *extra]:
        if isinstance(token, str) and token not in out:
            out.append(token)
    return out


def _reference_tokenizer(name: str, *, extra: tuple[str, ...] = (), image_token: str | None = None):
    """A ``PreTrainedTokenizerFast`` (byte-level BPE trained on the built-in corpus) carrying the
    special tokens, BOS behaviour and chat template of reference checkpoint ``name``."""
    from giqa.models import reference

    transformers = require("transformers", "models")
    cfg = reference.load(name, "tokenizer_config.json")
    bos = cfg.get("bos_token")
    # Llama's tokenizers prepend BOS themselves (add_bos_token); Qwen's have none.
    adds_bos = bool(cfg.get("add_bos_token", bos is not None and name == reference.LLAMA_3_INSTRUCT)) and bos is not None
    raw = _byte_bpe(_special_tokens(cfg, extra), bos=bos if adds_bos else None)
    named = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if isinstance(cfg.get(k), str)}
    kwargs: dict[str, Any] = {
        "tokenizer_object": raw,
        "model_max_length": 512,
        "model_input_names": ["input_ids", "attention_mask"],  # as Llama/Qwen tokenizers: no token_type_ids
        **named,
    }
    if image_token is not None:
        kwargs["extra_special_tokens"] = {"image_token": image_token}
    tokenizer = transformers.PreTrainedTokenizerFast(**kwargs)
    tokenizer.padding_side = cfg.get("padding_side", "right")
    tokenizer.chat_template = cfg.get("chat_template")
    return tokenizer


def _image_processor(transformers: Any, name: str, **scaled: Any) -> Any:
    """The reference checkpoint's image processor with its own settings, sizes replaced by ``scaled``."""
    from giqa.models import reference

    cfg = {k: v for k, v in reference.load(name, "preprocessor_config.json").items() if k not in ("image_processor_type", "processor_class")}
    kind = reference.load(name, "preprocessor_config.json")["image_processor_type"]
    cls = getattr(transformers, kind + "Pil", None) or getattr(transformers, kind)  # v5 PIL backend / v4
    cfg.update(scaled)
    return cls(**cfg)


# -- chat LLMs (Llama-3-Instruct, Qwen2.5-Instruct) -------------------------------------------
def _copy_special_ids(generation_config: Any, tokenizer: Any) -> None:
    """generate() stops and pads with the tokenizer's own ids."""
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(generation_config, name, getattr(tokenizer, name))


def _tiny_text_config(transformers: Any, tokenizer: Any, kind: str = "llama") -> Any:
    """A 2-layer, hidden-32 Llama (or Qwen2) text model sized to ``tokenizer``."""
    config_cls = transformers.LlamaConfig if kind == "llama" else transformers.Qwen2Config
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return config_cls(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=pad,
        tie_word_embeddings=False,
    )


def build_tiny_llama(out_dir: PathLike, *, force: bool = False) -> Path:
    """``LlamaForCausalLM`` (2 layers, hidden 32) with Meta-Llama-3-8B-Instruct's tokenizer settings.

    The tokenizer is a byte-level BPE (any text tokenizes) with that checkpoint's special tokens
    (``<|begin_of_text|>`` prepended as BOS, ``<|eot_id|>`` as EOS, the header tokens) and its
    real chat template (:mod:`giqa.models.reference`).
    """
    return _materialise(out_dir, "llama", force, lambda out: _write_chat_llm(out, "llama"))


def build_tiny_qwen2(out_dir: PathLike, *, force: bool = False) -> Path:
    """``Qwen2ForCausalLM`` (2 layers, hidden 32) with Qwen2.5-0.5B-Instruct's tokenizer settings
    (``<|im_end|>`` EOS, ``<|endoftext|>`` padding, no BOS) and its real chat template."""
    return _materialise(out_dir, "qwen2", force, lambda out: _write_chat_llm(out, "qwen2"))


def _write_chat_llm(out: Path, kind: str) -> dict[str, Any]:
    from giqa.models import reference

    transformers = require("transformers", "models")
    name = reference.LLAMA_3_INSTRUCT if kind == "llama" else reference.QWEN_25_INSTRUCT
    tokenizer = _reference_tokenizer(name)
    config = _tiny_text_config(transformers, tokenizer, kind)
    _seed()
    model_cls = transformers.LlamaForCausalLM if kind == "llama" else transformers.Qwen2ForCausalLM
    model = model_cls(config)
    _copy_special_ids(model.generation_config, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"architecture": model_cls.__name__, "reference": name}


# -- LLaVA (quality filter, VLM, trainer) ------------------------------------------------
# Image sizes are scaled down from the real 336 / 384 so that an image is 16 tokens (patch 14
# kept); every other image-processor setting is the reference checkpoint's.
_TINY_IMAGE = 56
_PATCH = 14


def build_tiny_llava(out_dir: PathLike, *, force: bool = False) -> Path:
    """``LlavaForConditionalGeneration`` (tiny CLIP vision tower + tiny Llama) + ``LlavaProcessor``
    with llava-hf/llava-1.5-7b-hf's chat template, special tokens and processor settings.

    Vision: CLIP, 56 x 56 input, patch 14 (16 patches + CLS), 2 layers, hidden 32; feature layer
    -2, ``vision_feature_select_strategy="default"`` (CLS dropped): 16 ``<image>`` tokens per
    image. Image processor: the checkpoint's CLIP settings (bicubic resize of the shortest edge,
    centre crop, CLIP mean/std) at 56 px instead of 336. Tokenizer: byte-level BPE with ``<s>``
    (prepended), ``</s>``, ``<unk>``, ``<pad>``, ``<image>`` and single-token "Yes"/"No". Chat
    template: the real one (``USER: <image>\\n... ASSISTANT:``).
    """
    return _materialise(out_dir, "llava", force, lambda out: _write_llava(out, "llava-1.5"))


def build_tiny_llava_interleave(out_dir: PathLike, *, force: bool = False) -> Path:
    """``LlavaForConditionalGeneration`` (tiny SigLIP + tiny Qwen2) with
    llava-hf/llava-interleave-qwen-0.5b-hf's template, special tokens and SigLIP processor
    settings (plain resize to a square, mean = std = 0.5) at 56 px; ``full`` feature selection
    (no CLS): 16 ``<image>`` tokens per image."""
    return _materialise(out_dir, "llava_interleave", force, lambda out: _write_llava(out, "interleave"))


def _llava_parts(transformers: Any, variant: str) -> tuple[Any, Any, Any, Any]:
    """``(name, tokenizer, image_processor, vision_config)`` of a tiny LLaVA variant."""
    from giqa.models import reference

    if variant == "llava-1.5":
        name = reference.LLAVA_15
        size = {"size": {"shortest_edge": _TINY_IMAGE}, "crop_size": {"height": _TINY_IMAGE, "width": _TINY_IMAGE}}
        vision = transformers.CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=_TINY_IMAGE, patch_size=_PATCH, projection_dim=32,
        )
    else:
        name = reference.LLAVA_INTERLEAVE
        size = {"size": {"height": _TINY_IMAGE, "width": _TINY_IMAGE}}
        vision = transformers.SiglipVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=_TINY_IMAGE, patch_size=_PATCH, vision_use_head=False,
        )
    image_token = reference.load(name, "processor_config.json")["image_token"]
    tokenizer = _reference_tokenizer(name, extra=(image_token,), image_token=image_token)
    return name, tokenizer, _image_processor(transformers, name, **size), vision


def _write_llava(out: Path, variant: str) -> dict[str, Any]:
    from giqa.models import reference

    transformers = require("transformers", "models")
    name, tokenizer, image_processor, vision = _llava_parts(transformers, variant)
    proc_cfg = reference.load(name, "processor_config.json")
    processor = transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=proc_cfg["patch_size"],
        vision_feature_select_strategy=proc_cfg["vision_feature_select_strategy"],
        chat_template=reference.chat_template(name),
        image_token=proc_cfg["image_token"],
        num_additional_image_tokens=proc_cfg["num_additional_image_tokens"],
    )
    text = _tiny_text_config(transformers, tokenizer, "llama" if variant == "llava-1.5" else "qwen2")
    strategy = proc_cfg["vision_feature_select_strategy"]
    config = transformers.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(proc_cfg["image_token"]),
        image_seq_length=(_TINY_IMAGE // _PATCH) ** 2,
        vision_feature_select_strategy=strategy,
        vision_feature_layer=-2 if strategy == "default" else -1,
    )
    _seed()
    model = transformers.LlavaForConditionalGeneration(config)
    _copy_special_ids(model.generation_config, tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return {"architecture": "LlavaForConditionalGeneration", "reference": name}


# -- Grounding DINO (detector) ------------------------------------------------------------
def _bert_vocab() -> dict[str, int]:
    """A WordPiece vocabulary with BERT's ids for the tokens Grounding DINO relies on.

    Grounding DINO hard-codes ``[CLS]`` = 101, ``[SEP]`` = 102, ``.`` = 1012 (and ``?`` = 1029)
    to find phrase boundaries, so those ids match ``bert-base-uncased``. Other ids hold the
    usual specials, lowercase words of the corpus, single characters and ``##`` suffix pieces.
    """
    fixed = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}
    words = sorted({w.strip(".,?").lower() for w in _CORPUS.split()} - {""})
    chars = [chr(c) for c in range(33, 127) if chr(c) not in fixed]
    pieces = chars + ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)] + ["##" + d for d in "0123456789"]
    pieces += [w for w in words if w not in pieces]
    vocab = dict(fixed)
    taken = set(fixed.values())
    next_id = 1
    for piece in pieces:
        while next_id in taken:
            next_id += 1
        vocab[piece] = next_id
        taken.add(next_id)
    size = max(taken) + 1
    for i in range(size):  # fill the holes so the vocabulary is contiguous
        if i not in taken:
            vocab[f"[unused{i}]"] = i
    return vocab


def _bert_tokenizer(transformers: Any, scratch: Path, **kwargs: Any) -> Any:
    """``BertTokenizer`` over :func:`_bert_vocab`: v5 takes the vocabulary itself, v4 a vocab file."""
    import inspect

    if "vocab" in inspect.signature(transformers.BertTokenizer.__init__).parameters:
        return transformers.BertTokenizer(vocab=_bert_vocab(), **kwargs)
    vocab = _bert_vocab()
    path = scratch / "vocab.txt"
    path.write_text("".join(tok + "\n" for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])), encoding="utf-8")
    return transformers.BertTokenizer(vocab_file=str(path), **kwargs)


def build_tiny_grounding_dino(out_dir: PathLike, *, force: bool = False) -> Path:
    """``GroundingDinoForObjectDetection`` (tiny Swin + tiny BERT) + ``GroundingDinoProcessor``.

    Backbone: Swin (no timm), embed dim 16, depths (1, 1, 1, 1), window 4, feature maps of
    stages 2-4; text: BERT, 1 layer, hidden 32, with a WordPiece tokenizer whose special ids
    match ``bert-base-uncased`` ([CLS]=101, [SEP]=102, "."=1012). Detector: d_model 32,
    1 encoder / 2 decoder layers, 20 queries, 3 feature levels. The image processor has
    the checkpoint's settings (:mod:`giqa.models.reference`) with the shortest edge at 64 (longest at
    most 96) instead of 800/1333.
    """
    return _materialise(out_dir, "grounding_dino", force, _write_grounding_dino)


def _write_grounding_dino(out: Path) -> dict[str, Any]:
    transformers = require("transformers", "models")
    from giqa.models import reference

    tok_cfg = reference.load(reference.GROUNDING_DINO, "tokenizer_config.json")
    tokenizer = _bert_tokenizer(transformers, out, do_lower_case=tok_cfg["do_lower_case"], model_max_length=256)
    # The checkpoint's DETR-style settings (ImageNet mean/std, padding), sizes scaled from 800/1333.
    image_processor = _image_processor(
        transformers, reference.GROUNDING_DINO, size={"shortest_edge": 64, "longest_edge": 96}
    )
    processor = transformers.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    backbone = transformers.SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_indices=[2, 3, 4],
    )
    text = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    config = transformers.GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=20,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=256,
    )
    _seed()
    model = transformers.GroundingDinoForObjectDetection(config)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return {"architecture": "GroundingDinoForObjectDetection"}


# -- sentence embedder ---------------------------------------------------------------------
def build_tiny_sentence_embedder(out_dir: PathLike, *, force: bool = False) -> Path:
    """A tiny random BERT + mean pooling saved as a sentence-transformers model directory.

    Uses the same WordPiece vocabulary as the tiny Grounding DINO. Random weights: embeddings
    are unit-norm and deterministic, and similar strings (sharing tokens) tend to be closer,
    but they carry no meaning.
    """
    return _materialise(out_dir, "sentence_embedder", force, _write_sentence_embedder)


def _write_sentence_embedder(out: Path) -> dict[str, Any]:
    transformers = require("transformers", "models")
    st = require("sentence_transformers", "models")
    st_modules = _sentence_transformer_modules()
    scratch = Path(tempfile.mkdtemp(prefix="giqa-tiny-vocab-"))
    try:
        tokenizer = _bert_tokenizer(transformers, scratch, do_lower_case=True, model_max_length=128)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    _seed()
    with tempfile.TemporaryDirectory(prefix="giqa-tiny-bert-") as bert_dir:
        transformers.BertModel(config).save_pretrained(bert_dir)
        tokenizer.save_pretrained(bert_dir)
        word = st_modules.Transformer(bert_dir, max_seq_length=128)
        dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
        pool = st_modules.Pooling(dim(), pooling_mode="mean")
        model = st.SentenceTransformer(modules=[word, pool, st_modules.Normalize()], device="cpu")
        model.save(str(out))
    return {"architecture": "BertModel+mean pooling"}


def _sentence_transformer_modules() -> ModuleType:
    """The module holding sentence-transformers' ``Transformer``, ``Pooling`` and ``Normalize``
    (moved in 6.0; the import path is picked at run time so both layouts type-check)."""
    try:  # sentence-transformers >= 6
        return importlib.import_module("sentence_transformers.sentence_transformer.modules")
    except ImportError:  # 3.x - 5.x
        return importlib.import_module("sentence_transformers.models")
