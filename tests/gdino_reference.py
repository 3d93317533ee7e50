"""The slow reference of GroundingDinoDetector.detect: giqa's implementation before issue 13.

Kept only for the equivalence tests: per-phrase tokenisation, the image processor called once
per image up front, the processor's ``post_process_grounded_object_detection`` with a
threshold that keeps every query, and a Python loop over phrases and queries. The fast
implementation must give the same boxes and scores (to float tolerance) for the same model.
"""

from __future__ import annotations

import math

import torch

from giqa.models.grounding_dino import _clean_phrase, _phrase_spans, post_process_kwargs


def reference_jobs(tokenizer, phrases, max_text_len=256):
    """(image index, phrase indices, cleaned phrases) per forward-pass row, within the token budget."""
    budget = max_text_len - 2
    jobs = []
    for i, image_phrases in enumerate(phrases):
        idx, texts, used = [], [], 0
        for j, phrase in enumerate(image_phrases):
            text = _clean_phrase(phrase)
            if not text:
                continue
            n = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
            if n > budget:
                raise ValueError(f"phrases[{i}][{j}] has {n} tokens")
            if idx and used + n > budget:
                jobs.append((i, idx, texts))
                idx, texts, used = [], [], 0
            idx.append(j)
            texts.append(text)
            used += n
        if idx:
            jobs.append((i, idx, texts))
    return jobs


def reference_boxes(processor, outputs, input_ids):
    """All queries' boxes as normalised xyxy (B, Q, 4), through the processor's post-processor."""
    fn = processor.post_process_grounded_object_detection
    kwargs = post_process_kwargs(fn, box_threshold=-1.0, text_threshold=1.0, input_ids=input_ids)
    results = fn(outputs, **kwargs)
    return torch.stack([r["boxes"].float().cpu() for r in results])


def reference_select(probs, boxes, ids, mask, n_phrases, threshold, max_detections):
    """Per phrase of one row: [(box xyxy tuple, score)], best first (the old per-query loop)."""
    spans = _phrase_spans(ids, mask)
    assert len(spans) == n_phrases, (spans, n_phrases)
    found = []
    for start, end in spans:
        scores = probs[:, start:end].max(dim=-1).values
        kept = torch.nonzero(scores > threshold).flatten()
        kept = kept[torch.argsort(scores[kept], descending=True, stable=True)]
        if max_detections is not None:
            kept = kept[:max_detections]
        found.append([(_to_box(boxes[q].tolist()), float(scores[q])) for q in kept.tolist()])
    return found


def _to_box(xyxy):
    x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) if math.isfinite(float(v)) else 0.0 for v in xyxy)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def reference_detect(processor, model, images, phrases, *, box_threshold=0.35, text_threshold=0.25,
                     max_detections=None, batch_size=4):
    """``out[i][j]`` = [(box, score, phrase)] as the old ``detect()`` (images grouped by shape)."""
    out = [[[] for _ in ps] for ps in phrases]
    jobs = reference_jobs(processor.tokenizer, phrases)
    ip = processor.image_processor
    pixels = {i: ip(images=[images[i]], return_tensors="pt")["pixel_values"][0] for i in sorted({j[0] for j in jobs})}
    by_shape = {}
    for job in jobs:
        by_shape.setdefault(tuple(pixels[job[0]].shape), []).append(job)
    threshold = max(box_threshold, text_threshold)
    for group in by_shape.values():
        for k in range(0, len(group), batch_size):
            batch = group[k:k + batch_size]
            prompts = [". ".join(texts) + "." for _, _, texts in batch]
            text = processor.tokenizer(prompts, padding=True, return_tensors="pt", return_token_type_ids=True)
            pixel_values = torch.stack([pixels[i] for i, _, _ in batch])
            with torch.inference_mode():
                outputs = model(**text, pixel_values=pixel_values,
                                pixel_mask=torch.ones(pixel_values.shape[0], *pixel_values.shape[2:], dtype=torch.long))
            boxes = reference_boxes(processor, outputs, text["input_ids"])
            probs = outputs.logits.float().sigmoid()
            for row, (i, idx, _) in enumerate(batch):
                found = reference_select(probs[row], boxes[row], text["input_ids"][row].tolist(),
                                         text["attention_mask"][row].tolist(), len(idx), threshold, max_detections)
                for j, dets in zip(idx, found):
                    out[i][j] = [(box, score, phrases[i][j]) for box, score in dets]
    return out
