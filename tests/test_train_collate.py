"""giqa.train.collate against the real checkpoints' chat templates: the EOS rule and the exact label mask."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from giqa.errors import ParseError  # noqa: E402
from giqa.train.collate import IGNORE_INDEX, SftCollator, encode_chat, supervised_text  # noqa: E402
from giqa.train.data import Conversation  # noqa: E402
from giqa.types import Task  # noqa: E402
from image_checks import red_fraction, red_left_quarter  # noqa: E402


def _img(seed: int, size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, (40 * seed % 256, 200, 90))


CONVS = [
    Conversation("v", "a.png", Task.vqa, (("user", "Is the [dog](<142, 309>) clear?"), ("assistant", "No."))),
    Conversation(
        "d",
        "b.png",
        Task.des,
        (("user", "Describe the quality."), ("assistant", "The [sky](<0, 399>) is overexposed and the trees are dark.")),
    ),
    Conversation(
        "m",
        "c.png",
        Task.des,
        (("user", "Rate it."), ("assistant", "Yes."), ("user", "Why?"), ("assistant", "Lighting is dim.")),
    ),
]

# What each real template makes the model write after its generation prompt, for answer text A:
# exactly one EOS, appended when the template does not write one (LLaVA-1.5), and nothing after it.
EXPECTED = {
    "llava-1.5": lambda a: f" {a} </s>",
    "llava-interleave": lambda a: f"\n{a}<|im_end|>",
}


def _spans(ids, labels):
    """Contiguous runs of supervised token ids."""
    runs, cur = [], []
    for tok, lab in zip(ids, labels):
        if lab != IGNORE_INDEX:
            cur.append(tok)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


@pytest.fixture(scope="module", params=["llava-1.5", "llava-interleave"])
def variant(request, tiny_llava_dir, tiny_llava_interleave_dir):
    path = tiny_llava_dir if request.param == "llava-1.5" else tiny_llava_interleave_dir
    return request.param, transformers.AutoProcessor.from_pretrained(path)


def test_supervised_tokens_decode_to_answer_plus_one_eos(variant):
    name, processor = variant
    collator = SftCollator(processor)
    batch = collator([{"conversation": c, "image": _img(i)} for i, c in enumerate(CONVS)])
    tok = processor.tokenizer
    for row, conv in enumerate(CONVS):
        answers = [text for role, text in conv.turns if role == "assistant"]
        runs = _spans(batch["input_ids"][row].tolist(), batch["labels"][row].tolist())
        assert [tok.decode(r) for r in runs] == [EXPECTED[name](a) for a in answers]
        eos_id = tok.eos_token_id
        assert all(r.count(eos_id) == 1 and r[-1] == eos_id for r in runs)  # one EOS each, last


def test_llava15_real_template_gets_its_eos_appended(tiny_llava_dir):
    processor = transformers.AutoProcessor.from_pretrained(tiny_llava_dir)
    msgs = CONVS[0].messages()
    rendered = processor.apply_chat_template(msgs)
    assert rendered == "USER: <image>\nIs the [dog](<142, 309>) clear? ASSISTANT: No. "  # the real template: no </s>
    text, spans = SftCollator(processor).render(CONVS[0])
    assert text == rendered + "</s>"
    assert [text[a:b] for a, b in spans] == [" No. </s>"]


def test_label_mask_is_exact_token_by_token(variant):
    name, processor = variant
    collator = SftCollator(processor)
    images = [_img(i) for i in range(len(CONVS))]
    batch = collator([{"conversation": c, "image": im} for c, im in zip(CONVS, images)])
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == attn.shape and ids.dtype == labels.dtype
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    for row, (conv, image) in enumerate(zip(CONVS, images)):
        text, spans = collator.render(conv)
        ref = processor(text=[text], images=[image], return_tensors="pt", add_special_tokens=True)["input_ids"][0].tolist()
        n = len(ref)
        assert ids[row, :n].tolist() == ref  # the processor's own tokenization of the training text
        assert attn[row, :n].all() and not attn[row, n:].any()  # right padding
        assert (labels[row, n:] == IGNORE_INDEX).all()
        assert (ids[row, :n] == image_id).sum() == 16
        expected = [IGNORE_INDEX] * n
        for a, b in spans:  # the reference: tokenize the text up to each span boundary on its own
            lo = len(processor(text=[text[:a]], images=[image], add_special_tokens=True)["input_ids"][0])
            hi = len(processor(text=[text[:b]], images=[image], add_special_tokens=True)["input_ids"][0])
            expected[lo:hi] = ref[lo:hi]
        assert labels[row, :n].tolist() == expected


@pytest.mark.parametrize("eos", ["<|eot_id|>", "<|end_of_text|>"])
def test_llama3_template(tiny_llama_dir, eos):
    """Llama-3 writes <|eot_id|> itself: with the hub's current eos_token it is the one EOS; with
    the release revision's eos_token (<|end_of_text|>) that token is appended once."""
    tok = transformers.AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.eos_token = eos
    msgs = [{"role": "user", "content": "Rate it."}, {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Lighting is dim."}]
    enc = encode_chat(tok, msgs)
    runs = [tok.decode(r) for r in _spans(enc["input_ids"], enc["labels"])]
    tail = "<|eot_id|>" if eos == "<|eot_id|>" else "<|eot_id|><|end_of_text|>"
    assert runs == ["Yes." + tail, "Lighting is dim." + tail]
    assert enc["input_ids"].count(tok.convert_tokens_to_ids("<|begin_of_text|>")) == 1  # template's BOS, no second


def test_qwen25_template_stops_supervising_at_im_end(tiny_qwen2_dir):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    msgs = [{"role": "user", "content": "Rate it."}, {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Lighting is dim."}]
    enc = encode_chat(tok, msgs)
    runs = [tok.decode(r) for r in _spans(enc["input_ids"], enc["labels"])]
    assert runs == ["Yes.<|im_end|>", "Lighting is dim.<|im_end|>"]  # not the newline the template writes after
    assert "You are Qwen" in tok.decode(enc["input_ids"])  # the real template's default system turn


def test_eos_written_twice_is_supervised_once():
    def render(msgs, gen):
        out = "".join(f"<{m['role']}>{m['content']}" + ("</s></s>" if m["role"] == "assistant" else "") for m in msgs)
        return out + ("<assistant>" if gen else "")

    text, spans = supervised_text(render, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "</s>")
    assert [text[a:b] for a, b in spans] == ["a</s>"] and text.endswith("a</s></s>")


def test_max_length_cuts_the_tail_and_refuses_a_too_long_prompt(tiny_llava_dir):
    processor = transformers.AutoProcessor.from_pretrained(tiny_llava_dir)
    conv = CONVS[1]
    full = SftCollator(processor)([{"conversation": conv, "image": _img(0)}])["input_ids"].shape[1]
    out = SftCollator(processor, max_length=full - 3)([{"conversation": conv, "image": _img(0)}])
    assert out["input_ids"].shape[1] == full - 3 == out["labels"].shape[1]
    assert (out["labels"] != IGNORE_INDEX).sum() > 0
    with pytest.raises(ParseError, match="prompt alone"):
        SftCollator(processor, max_length=20)([{"conversation": conv, "image": _img(0)}])


def test_text_holding_the_image_token_is_refused(tiny_llava_dir):
    processor = transformers.AutoProcessor.from_pretrained(tiny_llava_dir)
    bad = Conversation("x", "a.png", Task.des, (("user", "q"), ("assistant", "look: <image>")))
    with pytest.raises(ParseError, match="holds 2"):
        SftCollator(processor)([{"conversation": bad, "image": _img(0)}])


def test_a_processor_without_chat_template_is_refused(tiny_llava_dir):
    processor = transformers.AutoProcessor.from_pretrained(tiny_llava_dir)

    class NoTemplate:
        chat_template = None
        tokenizer = processor.tokenizer

    with pytest.raises(ParseError, match="chat template"):
        SftCollator(NoTemplate())
    with pytest.raises(ValueError, match="image_aspect"):
        SftCollator(processor, image_aspect="stretch")


def test_other_image_sizes_batch_together(variant):
    _, processor = variant
    out = SftCollator(processor)(
        [{"conversation": CONVS[0], "image": _img(0, (64, 17))}, {"conversation": CONVS[1], "image": _img(1, (9, 90))}]
    )
    assert out["pixel_values"].shape == (2, 3, 56, 56)
    assert out["labels"].shape == out["input_ids"].shape


# -- one image geometry for training and asking -------------------------------------------------
@pytest.mark.parametrize("aspect, keeps_red", [("pad", True), ("crop", False)])
def test_trainer_sees_the_red_left_quarter_only_when_padded(tiny_llava_dir, aspect, keeps_red):
    processor = transformers.AutoProcessor.from_pretrained(tiny_llava_dir)
    out = SftCollator(processor, image_aspect=aspect)([{"conversation": CONVS[0], "image": red_left_quarter()}])
    share = red_fraction(out["pixel_values"][0], processor.image_processor)
    if keeps_red:
        assert 0.1 < share < 0.15  # a quarter of the width, half of the padded square's height: 1/8
    else:
        assert share == 0.0  # the CLIP centre crop threw the left quarter away
