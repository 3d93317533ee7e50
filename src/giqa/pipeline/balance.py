"""Seeded balancing of VQA samples (paper section 3.3: equal Yes and No, equal Yes/No and open).

The draw depends only on the samples' ids and the seed, never on their order: candidates
are sorted by id before a ``random.Random(seed)`` picks, and the result keeps input order.
"""

from __future__ import annotations

import random
from typing import Any, Literal, Optional, Sequence

__all__ = ["balance_vqa", "balance_indices", "vqa_label", "vqa_counts"]

Label = Literal["yes", "no", "open"]


def vqa_label(sample: Any) -> Optional[Label]:
    """``"yes"``, ``"no"`` (Yes/No questions, read from the answer's first word), ``"open"``
    (What/Which/Why/How) or ``None`` (not a VQA sample, or a Yes/No answer that is neither).

    Accepts :class:`giqa.types.Sample` objects or their dicts.
    """
    get = sample.get if isinstance(sample, dict) else lambda k, d=None: getattr(sample, k, d)
    kind = get("vqa_kind")
    kind = getattr(kind, "value", kind)
    if kind is None:
        return None
    if kind != "yes_no":
        return "open"
    words = str(get("answer", "")).strip().split(None, 1)
    first = words[0].strip(",.!:;").casefold() if words else ""
    return "yes" if first == "yes" else "no" if first == "no" else None


def balance_indices(
    labels: Sequence[Optional[str]],
    ids: Sequence[str],
    *,
    seed: int = 0,
    balance_yes_no: bool = True,
    balance_kinds: bool = True,
) -> list[int]:
    """Indices (ascending) of the items to keep.

    ``labels[i]`` is ``"yes"``, ``"no"``, ``"open"`` or ``None`` (dropped). With
    ``balance_yes_no`` the larger of Yes/No is subsampled to the smaller; with
    ``balance_kinds`` the larger of Yes/No (after that) and open is subsampled to the
    smaller, keeping Yes = No (so the kept Yes/No count is even when both are balanced).
    """
    if len(labels) != len(ids):
        raise ValueError(f"{len(labels)} labels but {len(ids)} ids")
    pools: dict[str, list[int]] = {"yes": [], "no": [], "open": []}
    for i, lab in enumerate(labels):
        if lab in pools:
            pools[lab].append(i)
    n_yes, n_no, n_open = (len(pools[k]) for k in ("yes", "no", "open"))
    want = {"yes": n_yes, "no": n_no, "open": n_open}
    if balance_yes_no:
        want["yes"] = want["no"] = min(n_yes, n_no)
    if balance_kinds:
        n_binary = want["yes"] + want["no"]
        target = min(n_binary, n_open)
        if balance_yes_no:
            target -= target % 2
            want["yes"] = want["no"] = target // 2
        elif n_binary > target:  # scale Yes and No down proportionally
            want["yes"] = round(target * n_yes / n_binary)
            want["no"] = target - want["yes"]
        want["open"] = target
    rng = random.Random(seed)
    keep: list[int] = []
    for lab in ("yes", "no", "open"):
        pool = sorted(pools[lab], key=lambda i: (str(ids[i]), i))
        keep.extend(pool if want[lab] >= len(pool) else rng.sample(pool, want[lab]))
    return sorted(keep)


def balance_vqa(
    samples: Sequence[Any],
    *,
    seed: int = 0,
    balance_yes_no: bool = True,
    balance_kinds: bool = True,
) -> list[Any]:
    """The balanced subset of ``samples`` (Sample objects or dicts), in input order.

    Samples that are not VQA, or Yes/No samples whose answer is neither Yes nor No, are dropped.
    The result has equal Yes and No answers and as many Yes/No as open questions (as far as
    the smaller pool allows); e.g. 10 Yes, 4 No, 9 open -> 4 Yes, 4 No, 8 open.
    """
    labels = [vqa_label(s) for s in samples]
    ids = [s["id"] if isinstance(s, dict) else s.id for s in samples]
    idx = balance_indices(labels, ids, seed=seed, balance_yes_no=balance_yes_no, balance_kinds=balance_kinds)
    return [samples[i] for i in idx]


def vqa_counts(samples: Sequence[Any]) -> dict[str, int]:
    """``{"yes", "no", "open", "other"}`` counts."""
    out = {"yes": 0, "no": 0, "open": 0, "other": 0}
    for s in samples:
        out[vqa_label(s) or "other"] += 1
    return out
