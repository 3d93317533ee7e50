"""giqa.train.collate: the label mask is exact (only answer tokens count), checked token by token."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from giqa.errors import ParseError  # noqa: E402
from giqa.train.collate import IGNORE_INDEX, SftCollator  # noqa: E402
from giqa.train.data import Conversation  # noqa: E402
from giqa.types import Task  # noqa: E402


@pytest.fixture(scope="module")
def processor(tiny_llava_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_llava_dir)


@pytest.fixture(scope="module")
def collator(processor):
    return SftCollator(processor)


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
        (("user", "Rate it."), ("assistant", "Poor."), ("user", "Why?"), ("assistant", "Lighting is dim.")),
    ),
]


def _hf(processor, messages, image, **kw):
    """The reference: transformers' own tokenization of a rendered conversation."""
    out = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, processor_kwargs={"images": [image]}, **kw
    )
    return list(out["input_ids"][0])


def test_prompt_and_image_tokens_are_ignored_answer_tokens_kept(processor, collator):
    images = [_img(i) for i in range(len(CONVS))]
    batch = collator([{"conversation": c, "image": im} for c, im in zip(CONVS, images)])
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == attn.shape and ids.dtype == labels.dtype
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    for row, (conv, image) in enumerate(zip(CONVS, images)):
        msgs = conv.messages()
        full = _hf(processor, msgs, image)
        n = len(full)
        assert ids[row, :n].tolist() == full  # same tokens as transformers' own chat-template path
        assert attn[row, :n].all() and not attn[row, n:].any()  # right padding
        assert (labels[row, n:] == IGNORE_INDEX).all()  # padding ignored
        assert (ids[row, :n] == image_id).sum() == 16
        expected = [IGNORE_INDEX] * n
        for k, (role, _) in enumerate(conv.turns):
            if role != "assistant":
                continue
            start = len(_hf(processor, msgs[:k], image, add_generation_prompt=True))
            end = len(_hf(processor, msgs[: k + 1], image))
            expected[start:end] = full[start:end]
            # the labelled tokens are exactly what the model must write after the generation prompt
            prompt_text = processor.apply_chat_template(msgs[:k], add_generation_prompt=True)
            through_text = processor.apply_chat_template(msgs[: k + 1])
            assert processor.tokenizer.decode(full[start:end]) == through_text[len(prompt_text) :]
            assert through_text[len(prompt_text) :] == " " + conv.turns[k][1] + "</s>"
        got = labels[row, :n].tolist()
        for pos, (g, e, tok) in enumerate(zip(got, expected, full)):  # token by token
            assert g == e, f"row {row} position {pos} token {tok}: label {g}, expected {e}"
        assert all(labels[row, p] == IGNORE_INDEX for p in range(n) if full[p] == image_id)


def test_agrees_with_the_templates_generation_markers(processor, collator):
    """The tiny template marks assistant content with {% generation %}: our labels cover that mask,
    plus only the whitespace between the generation prompt and the content (which the model must
    also produce at inference, since the prompt ends at "ASSISTANT:")."""
    image = _img(0)
    batch = collator([{"conversation": c, "image": image} for c in CONVS])
    for row, conv in enumerate(CONVS):
        ref = processor.apply_chat_template(
            conv.messages(),
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            processor_kwargs={"images": [image]},
        )
        mask = list(ref["assistant_masks"][0])
        ours = (batch["labels"][row, : len(mask)] != IGNORE_INDEX).tolist()
        assert all(o for o, m in zip(ours, mask) if m)
        extra = [ref["input_ids"][0][p] for p, (o, m) in enumerate(zip(ours, mask)) if o and not m]
        assert processor.tokenizer.decode(extra).strip() == ""


def test_max_length_cuts_the_tail_and_refuses_a_too_long_prompt(processor):
    conv = CONVS[1]
    full = len(_hf(processor, conv.messages(), _img(0)))
    cut = SftCollator(processor, max_length=full - 3)
    out = cut([{"conversation": conv, "image": _img(0)}])
    assert out["input_ids"].shape[1] == full - 3 == out["labels"].shape[1]
    assert (out["labels"] != IGNORE_INDEX).sum() > 0
    with pytest.raises(ParseError, match="prompt alone"):
        SftCollator(processor, max_length=20)([{"conversation": conv, "image": _img(0)}])


def test_text_holding_the_image_token_is_refused(collator):
    # bypass the reader's check to exercise the collator's own guard
    bad = Conversation("x", "a.png", Task.des, (("user", "q"), ("assistant", "look: <image>")))
    with pytest.raises(ParseError, match="holds 2"):
        collator([{"conversation": bad, "image": _img(0)}])


def test_a_processor_without_chat_template_is_refused(processor):
    class NoTemplate:
        chat_template = None
        tokenizer = processor.tokenizer

    with pytest.raises(ParseError, match="chat template"):
        SftCollator(NoTemplate())


def test_other_image_sizes_batch_together(collator):
    items = [
        {"conversation": CONVS[0], "image": _img(0, (64, 17))},
        {"conversation": CONVS[1], "image": _img(1, (9, 90))},
    ]
    out = collator(items)
    assert out["pixel_values"].shape == (2, 3, 32, 32)
    assert out["labels"].shape == out["input_ids"].shape
