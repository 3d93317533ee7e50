"""VQA breakdowns of one model: by question kind, by Yes vs No ground truth, yes-ratio, baselines.

Acc(Y) on a balanced-looking number can hide a model that answers "No" to everything; these
numbers show it: accuracy on the items whose ground truth is Yes and on those whose ground
truth is No, the share of readable Yes/No answers that are Yes, and what always answering
"No" (or "Yes") would score on the same items.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from giqa.bench.items import ScoredItem

__all__ = ["vqa_breakdown", "KINDS"]

KINDS = ("yes_no", "what", "which", "why", "how")


def _mean(xs: Sequence[float]) -> Optional[float]:
    return sum(xs) / len(xs) if xs else None


def vqa_breakdown(items: Sequence[ScoredItem]) -> dict[str, Any]:
    """Breakdowns over the VQA items of ``items`` (DES items are ignored).

    ``by_kind``: per question kind ``{"n", "acc"}`` (Yes/No: the word rule's accuracy;
    open-ended: judge score / 4, None without a judge); ``by_gt``: Yes/No accuracy on items
    whose ground truth is Yes and on those whose ground truth is No; ``yes_ratio``: share of
    readable Yes/No answers that are Yes (None when none is readable); ``unreadable``: Yes/No
    answers that are neither; ``gt_yes_ratio``; ``always_no`` / ``always_yes``: Acc(Y) of the
    constant answers.
    """
    vqa = [it for it in items if it.sample.vqa_kind is not None]
    groups: dict[str, list[ScoredItem]] = {}
    for it in vqa:
        vk = it.sample.vqa_kind
        if vk is not None:
            groups.setdefault(vk.value, []).append(it)
    by_kind = {}
    for kind in KINDS:
        group = groups.get(kind)
        if not group:
            continue
        if kind == "yes_no":
            acc = _mean([float(bool(it.correct)) for it in group])
        else:
            acc = _mean([it.judge_score / 4.0 for it in group if it.judge_score is not None])
        by_kind[kind] = {"n": len(group), "acc": acc}
    yn = groups.get("yes_no", [])
    gt_yes = [it for it in yn if it.gt_yes]
    gt_no = [it for it in yn if not it.gt_yes]
    answered = [it for it in yn if it.yes_no is not None]
    n = len(yn)
    return {
        "by_kind": by_kind,
        "by_gt": {
            "yes": {"n": len(gt_yes), "acc": _mean([float(bool(it.correct)) for it in gt_yes])},
            "no": {"n": len(gt_no), "acc": _mean([float(bool(it.correct)) for it in gt_no])},
        },
        "yes_ratio": _mean([float(it.yes_no == "yes") for it in answered]),
        "unreadable": n - len(answered),
        "gt_yes_ratio": len(gt_yes) / n if n else None,
        "always_no": len(gt_no) / n if n else None,
        "always_yes": len(gt_yes) / n if n else None,
    }
