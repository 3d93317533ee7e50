"""The slow reference of the LLaVA backends: giqa's implementation before issue 13, straight transformers.

One plain pass per ``batch_size`` pairs in the given order, everything through the processor:
the image padded to a square by hand (LLaVA-1.5's expand2square with the processor's mean
colour), the prompt from the processor's chat template, left padding, position ids from the
attention mask, the full logits of the last position. The planned, prefix-sharing, prefetched
backends must give the same P(Yes) and the same greedy answers.
"""

from __future__ import annotations

from typing import Any, Sequence


def expand2square(image: Any, image_processor: Any) -> Any:
    from PIL import Image

    side = max(image.size)
    if image.width == image.height:
        return image
    fill = tuple(int(m * 255) for m in image_processor.image_mean)
    square = Image.new("RGB", (side, side), fill)
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square


def load(model_dir: Any) -> tuple[Any, Any]:
    """``(processor, model)`` of a saved tiny LLaVA, left padding, evaluation mode."""
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    model = transformers.AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    return processor, model


def inputs(processor: Any, images: Sequence[Any], texts: Sequence[str], aspect: str = "pad") -> dict[str, Any]:
    """The processor's batch for ``images[i]`` with ``texts[i]`` as one user turn (left padding)."""
    from giqa.models.image_geometry import processor_image_kwargs

    ip = processor.image_processor
    prompts = [
        processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
                                      add_generation_prompt=True, tokenize=False)
        for t in texts
    ]
    images = [expand2square(im.convert("RGB"), ip) if aspect == "pad" else im.convert("RGB") for im in images]
    enc = processor(images=images, text=prompts, return_tensors="pt", padding=True, **processor_image_kwargs(ip))
    return {k: v for k, v in enc.items() if k != "token_type_ids"}


def p_yes(processor: Any, model: Any, crops: Sequence[Any], questions: Sequence[str], *, suffix: str,
          batch_size: int, aspect: str = "pad", yes: str = "Yes", no: str = "No") -> list[float]:
    """P(Yes) = softmax(logit[Yes], logit[No])[0] after each question, ``batch_size`` pairs per pass."""
    import torch

    tok = processor.tokenizer
    yes_id, no_id = tok.convert_tokens_to_ids(yes), tok.convert_tokens_to_ids(no)
    out: list[float] = []
    for start in range(0, len(crops), batch_size):
        enc = inputs(processor, crops[start:start + batch_size],
                     [q + suffix for q in questions[start:start + batch_size]], aspect)
        enc["position_ids"] = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = model(**enc).logits[:, -1, :]
        out.extend(torch.softmax(logits[:, [yes_id, no_id]].float(), dim=-1)[:, 0].tolist())
    return out


def answers(processor: Any, model: Any, images: Sequence[Any], prompts: Sequence[str], *, batch_size: int,
            max_new_tokens: int) -> list[str]:
    """Greedy answers, ``batch_size`` pairs per ``generate`` in the given order."""
    import torch

    tok = processor.tokenizer
    out: list[str] = []
    for start in range(0, len(images), batch_size):
        enc = inputs(processor, images[start:start + batch_size], prompts[start:start + batch_size])
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
        out.extend(t.strip() for t in tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return out
