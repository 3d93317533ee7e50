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

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

from giqa.errors import require

__all__ = [
    "MARKER_FILE",
    "build_tiny_llava",
    "build_tiny_llama",
    "build_tiny_grounding_dino",
    "build_tiny_sentence_embedder",
    "is_tiny_random",
]

MARKER_FILE = "giqa_tiny.json"
_VERSION = 1
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

_LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# The llava-hf LLaVA-1.5 template ("USER: <image>\n... ASSISTANT:"), also accepting plain
# string contents.
_LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] + ' ' }}{% endif %}{% endfor %}{% endif %}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% if message['content'] is string %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '</s>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + ' ' }}{% endif %}"
    "{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ part['text'] + '</s>' }}{% endgeneration %}"
    "{% else %}{{ part['text'] + ' ' }}{% endif %}"
    "{% endif %}{% endfor %}"
    "{% endif %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


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
    _marker(out).write_text(json.dumps(info, indent=2))


def _materialise(out_dir: PathLike, kind: str, force: bool, write: Callable[[Path], dict[str, Any]]) -> Path:
    """Build with ``write`` into ``out_dir`` unless a finished build of ``kind`` is there.

    A new directory is written under a temporary name and renamed at the end, so a crash or
    a concurrent build never leaves a half-written directory that looks finished; the marker
    file is written last.
    """
    out = Path(out_dir)
    if not force and _cached(out, kind):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))
    target = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent)) if fresh else out
    if not fresh:
        _marker(out).unlink(missing_ok=True)  # rebuilding in place: not finished until the end
    try:
        extra = write(target)
        _write_marker(target, kind, **extra)
        if fresh:
            os.chmod(target, 0o755)
            if out.exists():
                out.rmdir()
            try:
                os.replace(target, out)
            except OSError:
                if not _cached(out, kind):  # not a concurrent build that finished first
                    raise
                shutil.rmtree(target, ignore_errors=True)
    except BaseException:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
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


# -- Llama (chat LLM) --------------------------------------------------------------------
def _copy_special_ids(generation_config: Any, tokenizer: Any) -> None:
    """generate() stops and pads with the tokenizer's own ids."""
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(generation_config, name, getattr(tokenizer, name))


def _tiny_llama_config(transformers: Any, tokenizer: Any) -> Any:
    """The tiny Llama text model shared by the tiny LLM and the tiny LLaVA's language side."""
    return transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def build_tiny_llama(out_dir: PathLike, *, force: bool = False) -> Path:
    """``LlamaForCausalLM`` (2 layers, hidden 32) + a Llama-3-style chat tokenizer -> ``out_dir``.

    The tokenizer is a byte-level BPE (any text tokenizes) with the Llama-3 special tokens
    ``<|begin_of_text|>`` (bos), ``<|eot_id|>`` (eos), ``<|start_header_id|>``,
    ``<|end_header_id|>`` and ``<|pad|>``, and a Llama-3 chat template.
    """
    return _materialise(out_dir, "llama", force, _write_llama)


def _write_llama(out: Path) -> dict[str, Any]:
    transformers = require("transformers", "models")
    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|pad|>"]
    raw = _byte_bpe(specials, bos=None)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|pad|>",
        extra_special_tokens=["<|start_header_id|>", "<|end_header_id|>"],
        padding_side="left",
        model_max_length=512,
    )
    tokenizer.chat_template = _LLAMA3_TEMPLATE
    config = _tiny_llama_config(transformers, tokenizer)
    _seed()
    model = transformers.LlamaForCausalLM(config)
    _copy_special_ids(model.generation_config, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"architecture": "LlamaForCausalLM"}


# -- LLaVA (quality filter, VLM, trainer) ------------------------------------------------
def build_tiny_llava(out_dir: PathLike, *, force: bool = False) -> Path:
    """``LlavaForConditionalGeneration`` (tiny CLIP vision tower + tiny Llama) + ``LlavaProcessor``.

    Vision: CLIP, 32 x 32 input, patch 8 (16 patches + CLS), 2 layers, hidden 32; feature layer
    -2, ``vision_feature_select_strategy="default"`` (CLS dropped), so each image becomes 16
    ``<image>`` tokens. Text: Llama, 2 layers, hidden 32. The processor holds a CLIP image
    processor (PIL backend, resize shortest edge 32 + centre crop 32) and a byte-level BPE
    tokenizer with ``<s>``, ``</s>``, ``<pad>``, ``<image>`` and single-token "Yes"/"No", and
    the LLaVA-1.5 chat template (``USER: <image>\\n... ASSISTANT:``). Supports ``generate()``
    and a forward pass with ``labels``.
    """
    return _materialise(out_dir, "llava", force, _write_llava)


def _write_llava(out: Path) -> dict[str, Any]:
    transformers = require("transformers", "models")
    raw = _byte_bpe(["<s>", "</s>", "<pad>", "<unk>", "<image>"], bos="<s>")
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=["<image>"],
        padding_side="left",
        model_max_length=512,
    )
    image_size, patch = 32, 8
    clip_ip = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor  # v5 / v4
    image_processor = clip_ip(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        chat_template=_LLAVA_TEMPLATE,
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    n_image_tokens = (image_size // patch) ** 2
    vision = transformers.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )
    text = _tiny_llama_config(transformers, tokenizer)
    config = transformers.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=n_image_tokens,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    _seed()
    model = transformers.LlavaForConditionalGeneration(config)
    _copy_special_ids(model.generation_config, tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return {"architecture": "LlavaForConditionalGeneration"}


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


def build_tiny_grounding_dino(out_dir: PathLike, *, force: bool = False) -> Path:
    """``GroundingDinoForObjectDetection`` (tiny Swin + tiny BERT) + ``GroundingDinoProcessor``.

    Backbone: Swin (no timm), embed dim 16, depths (1, 1, 1, 1), window 4, feature maps of
    stages 2-4; text: BERT, 1 layer, hidden 32, with a WordPiece tokenizer whose special ids
    match ``bert-base-uncased`` ([CLS]=101, [SEP]=102, "."=1012). Detector: d_model 32,
    1 encoder / 2 decoder layers, 20 queries, 3 feature levels. The image processor resizes
    the shortest edge to 64 (longest at most 96).
    """
    return _materialise(out_dir, "grounding_dino", force, _write_grounding_dino)


def _write_grounding_dino(out: Path) -> dict[str, Any]:
    transformers = require("transformers", "models")
    tokenizer = transformers.BertTokenizer(vocab=_bert_vocab(), do_lower_case=True, model_max_length=256)
    gd_ip = getattr(transformers, "GroundingDinoImageProcessorPil", None) or transformers.GroundingDinoImageProcessor
    image_processor = gd_ip(size={"shortest_edge": 64, "longest_edge": 96})
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
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # 3.x - 5.x
        from sentence_transformers.models import Normalize, Pooling, Transformer
    tokenizer = transformers.BertTokenizer(vocab=_bert_vocab(), do_lower_case=True, model_max_length=128)
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
        word = Transformer(bert_dir, max_seq_length=128)
        dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
        pool = Pooling(dim(), pooling_mode="mean")
        model = st.SentenceTransformer(modules=[word, pool, Normalize()], device="cpu")
        model.save(str(out))
    return {"architecture": "BertModel+mean pooling"}
