"""The tiny random-weight builders: each directory loads back with from_pretrained and runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from giqa.models import tiny  # noqa: E402

pytestmark = pytest.mark.slow


def _image(w: int = 40, h: int = 30, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB")


def test_marker_and_cache(tiny_llama_dir, tmp_path):
    info = json.loads((tiny_llama_dir / tiny.MARKER_FILE).read_text())
    assert info["kind"] == "llama" and info["random_weights"] is True
    assert tiny.is_tiny_random(tiny_llama_dir)
    assert not tiny.is_tiny_random(tmp_path)
    before = (tiny_llama_dir / "model.safetensors").stat().st_mtime_ns
    assert tiny.build_tiny_llama(tiny_llama_dir) == tiny_llama_dir  # reused, not rebuilt
    assert (tiny_llama_dir / "model.safetensors").stat().st_mtime_ns == before


def test_builds_are_deterministic(tiny_llama_dir, tmp_path):
    again = tiny.build_tiny_llama(tmp_path / "again")
    a = transformers.LlamaForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
    b = transformers.LlamaForCausalLM.from_pretrained(again).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_llama_chat_generate(tiny_llama_dir):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert tok.pad_token is None  # as Meta-Llama-3-8B-Instruct: no pad token; backends pad with EOS
    tok.pad_token = tok.eos_token
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert isinstance(model, transformers.LlamaForCausalLM)
    convs = [[{"role": "user", "content": "Is the sky blue?"}], [{"role": "user", "content": "hi"}]]
    text = tok.apply_chat_template(convs[0], add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|begin_of_text|><|start_header_id|>user")
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    tok.padding_side = "left"
    texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs]
    enc = tok(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    assert enc["attention_mask"][1, 0] == 0
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and enc["input_ids"].shape[1] < out.shape[1] <= enc["input_ids"].shape[1] + 4
    # Any text round-trips through the byte-level BPE.
    s = "Ünïcode blur, 16-bit!"
    assert tok.decode(tok.encode(s, add_special_tokens=False)) == s


def test_tiny_llava_generate_and_train(tiny_llava_dir):
    proc = transformers.AutoProcessor.from_pretrained(tiny_llava_dir)
    model = transformers.LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir)
    assert isinstance(proc, transformers.LlavaProcessor)
    yes = proc.tokenizer.encode("Yes", add_special_tokens=False)
    no = proc.tokenizer.encode("No", add_special_tokens=False)
    assert len(yes) == 1 and len(no) == 1 and yes != no
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it blurry?"}]}]
    prompt = proc.apply_chat_template(conv, add_generation_prompt=True)
    assert prompt == "USER: <image>\nIs it blurry? ASSISTANT:"
    inputs = proc(images=[_image(), _image(50, 20, 1)], text=[prompt, prompt], return_tensors="pt", padding=True)
    assert inputs["pixel_values"].shape == (2, 3, 56, 56)
    n_image = int((inputs["input_ids"][0] == model.config.image_token_id).sum())
    assert n_image == model.config.image_seq_length == 16
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] > inputs["input_ids"].shape[1]
    labels = inputs["input_ids"].clone()
    labels[inputs["attention_mask"] == 0] = -100
    loss = model(**inputs, labels=labels).loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "multi_modal_projector" in n or "embed_tokens" in n}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())


def test_tiny_grounding_dino_forward(tiny_grounding_dino_dir):
    proc = transformers.AutoProcessor.from_pretrained(tiny_grounding_dino_dir)
    model = transformers.GroundingDinoForObjectDetection.from_pretrained(tiny_grounding_dino_dir)
    tok = proc.tokenizer
    assert (tok.cls_token_id, tok.sep_token_id, tok.convert_tokens_to_ids(".")) == (101, 102, 1012)
    assert model.config.decoder_layers >= 2
    inputs = proc(images=[_image()], text=["a dog. the blurry sky."], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    assert ids[0] == 101 and ids[-1] == 102 and ids.count(1012) == 2
    with torch.no_grad():
        out = model(**inputs)
    assert out.pred_boxes.shape == (1, model.config.num_queries, 4)
    assert float(out.pred_boxes.min()) >= 0 and float(out.pred_boxes.max()) <= 1


def test_tiny_sentence_embedder(tiny_embedder_dir):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(tiny_embedder_dir), device="cpu", local_files_only=True)
    emb = model.encode(["a blurry dog", "the sky is overexposed"])
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_failed_build_leaves_nothing(tmp_path):
    def broken(out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        tiny._materialise(tmp_path / "m", "llama", False, broken)
    assert list(tmp_path.iterdir()) == []  # no half-written directory, no temp leftovers


def test_yes_no_are_single_tokens_everywhere(tiny_llava_dir, tiny_llama_dir):
    for path in (tiny_llava_dir, tiny_llama_dir):
        tok = transformers.AutoTokenizer.from_pretrained(path)
        for word in ("Yes", "No", " Yes", " No"):
            assert len(tok.encode(word, add_special_tokens=False)) == 1


def test_tiny_models_carry_the_real_checkpoints_settings(tiny_llava_dir, tiny_llava_interleave_dir, tiny_llama_dir, tiny_qwen2_dir):
    from giqa.models import reference

    llava = transformers.AutoProcessor.from_pretrained(tiny_llava_dir)
    assert llava.chat_template == reference.chat_template(reference.LLAVA_15)
    assert (llava.tokenizer.bos_token, llava.tokenizer.eos_token, llava.tokenizer.pad_token) == ("<s>", "</s>", "<pad>")
    real = reference.load(reference.LLAVA_15, "preprocessor_config.json")
    ip = llava.image_processor
    assert list(ip.image_mean) == real["image_mean"] and list(ip.image_std) == real["image_std"]
    assert ip.do_center_crop is True and int(ip.resample) == real["resample"]
    assert llava.tokenizer("Hi")["input_ids"][0] == llava.tokenizer.bos_token_id  # LlamaTokenizer adds BOS
    inter = transformers.AutoProcessor.from_pretrained(tiny_llava_interleave_dir)
    assert inter.chat_template == reference.chat_template(reference.LLAVA_INTERLEAVE)
    assert (inter.tokenizer.bos_token, inter.tokenizer.eos_token) == (None, "<|im_end|>")
    assert list(inter.image_processor.image_mean) == [0.5, 0.5, 0.5]
    for path, name in ((tiny_llama_dir, reference.LLAMA_3_INSTRUCT), (tiny_qwen2_dir, reference.QWEN_25_INSTRUCT)):
        tok = transformers.AutoTokenizer.from_pretrained(path)
        cfg = reference.load(name, "tokenizer_config.json")
        assert tok.chat_template == cfg["chat_template"]
        assert (tok.eos_token, tok.bos_token) == (cfg["eos_token"], cfg.get("bos_token"))


def test_tiny_llava_real_template_renders_as_the_checkpoint(tiny_llava_dir):
    proc = transformers.AutoProcessor.from_pretrained(tiny_llava_dir)
    conv = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "The sky is blurry."}]},
    ]
    # llava-hf's template writes no </s>: the trainer's EOS rule adds it (tests/test_train_collate.py)
    assert proc.apply_chat_template(conv) == "USER: <image>\nDescribe. ASSISTANT: The sky is blurry. "
