"""Planning the LLaVA backends' forward passes: token ids, shared prefixes, length-sorted batches.

Pure Python (torch only inside :func:`left_pad`), so the plan is made before any pixel is
touched and the CPU work of each batch can run ahead in a prefetch thread.

- :func:`expand_image_tokens`: a prompt's ids with its one image placeholder repeated as
  many times as the model has image features, which is what ``LlavaProcessor`` does to the
  text before tokenising it (checked against the processor when a backend loads).
- :func:`split_prefix`: ids up to and including the last image token (the part shared by
  every question about the same crop) and the rest.
- :func:`crop_keys`: one key per distinct crop (same size, mode and pixels), so a crop asked
  several questions is preprocessed and encoded once.
- :func:`plan_rows`: rows sorted by length and cut into batches, a crop's rows kept together.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

__all__ = ["expand_image_tokens", "split_prefix", "crop_keys", "plan_rows", "left_pad", "length_order"]


def expand_image_tokens(ids: Sequence[int], image_id: int, count: int) -> list[int]:
    """``ids`` with every ``image_id`` replaced by ``count`` copies of it."""
    out: list[int] = []
    for t in ids:
        if t == image_id:
            out.extend([image_id] * count)
        else:
            out.append(t)
    return out


def split_prefix(ids: Sequence[int], image_id: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(prefix, suffix)``: ``prefix`` ends with the last ``image_id`` (empty when there is none)."""
    last = max((k for k, t in enumerate(ids) if t == image_id), default=-1)
    return tuple(ids[: last + 1]), tuple(ids[last + 1:])


def crop_keys(images: Sequence[Any]) -> list[int]:
    """For each image, the index of the first image with the same size, mode and pixels.

    The same object is recognised without reading it; otherwise a 128-bit BLAKE2 digest of the
    pixel bytes decides (a collision is as likely as a random 128-bit match).
    """
    first: dict[Any, int] = {}
    by_id: dict[int, int] = {}
    out = []
    for k, im in enumerate(images):
        known = by_id.get(id(im))
        if known is None:
            key = (im.size, im.mode, hashlib.blake2b(im.tobytes(), digest_size=16).digest())
            known = first.setdefault(key, k)
            by_id[id(im)] = known
        out.append(known)
    return out


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by length, longest first (ties in input order): each batch pads little, and
    the first batch is the largest, so an out-of-memory error shows at once."""
    return sorted(range(len(lengths)), key=lambda k: -lengths[k])


def plan_rows(crop_of_row: Sequence[int], lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Rows (crop, question pairs) in batches of at most ``batch_size``, sorted by length.

    A crop's rows are kept in one batch where they fit (so the crop is encoded once): crops are
    ordered by their longest row, and a crop whose rows would overflow the current batch starts
    the next one. A crop with more than ``batch_size`` rows fills batches of its own.
    """
    groups: dict[int, list[int]] = {}
    for row, crop in enumerate(crop_of_row):
        groups.setdefault(crop, []).append(row)
    ordered = sorted(groups.values(), key=lambda rows: -max(lengths[r] for r in rows))
    plan: list[list[int]] = []
    current: list[int] = []
    for rows in ordered:
        rows = sorted(rows, key=lambda r: -lengths[r])
        if current and len(current) + len(rows) > batch_size:
            plan.append(current)
            current = []
        while len(rows) > batch_size:
            plan.append(rows[:batch_size])
            rows = rows[batch_size:]
        current.extend(rows)
    if current:
        plan.append(current)
    return plan


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)``: ``(N, L)`` long tensors, ``rows`` right-aligned (left padding)."""
    import torch

    length = max((len(r) for r in rows), default=0)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for b, r in enumerate(rows):
        if r:
            input_ids[b, length - len(r):] = torch.tensor(list(r), dtype=torch.long)
            attention_mask[b, length - len(r):] = 1
    return input_ids, attention_mask
