"""Yes/No extraction for Acc(Y): word-bounded, case-insensitive, no model needed.

Rule (the paper says only "matching with the word Yes or No"):

1. **first word**: if the answer's first word is "yes" or "no", that is the answer, whatever
   follows ("Yes, there is no visible noise." is Yes; "No, it is not blurry, yes." is No);
2. otherwise an answer containing the word "yes" and not the word "no" is Yes, one containing
   "no" and not "yes" is No ("The answer is yes.");
3. anything else (both, neither) is unknown and counts as wrong unless a judge resolves it.

Words are runs of letters (case ignored), so "Yes." "YES!" "**No**," match, and "nothing",
"not", "nope" and "yesterday" do not; anything before the first letter (markdown, quotes,
bullets) is skipped.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np

__all__ = ["extract_yes_no", "yes_no_accuracy"]

_WORDS = re.compile(r"[a-z]+")


def extract_yes_no(text: str) -> Optional[bool]:
    """``True`` for Yes, ``False`` for No, ``None`` when unknown (see the module doc).

    >>> extract_yes_no("Yes, there is no visible noise."), extract_yes_no("No."), extract_yes_no("Not sure")
    (True, False, None)
    """
    low = text.lower()
    first = _WORDS.search(low)
    if first is not None and first.group() in ("yes", "no"):
        return first.group() == "yes"
    words = set(_WORDS.findall(low))
    yes, no = "yes" in words, "no" in words
    if yes and not no:
        return True
    if no and not yes:
        return False
    return None


def yes_no_accuracy(predictions: Sequence[str], answers: Sequence[str]) -> tuple[float, np.ndarray]:
    """Acc(Y) and the per-item correctness ``(N,)`` float64 (1.0 right, 0.0 wrong or unknown).

    ``answers`` are the reference answers ("Yes." / "No."); a reference with no clear Yes/No
    raises ``ValueError`` naming its index. An empty input gives ``nan``.
    """
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    correct = np.zeros(len(answers), dtype=np.float64)
    for i, (p, a) in enumerate(zip(predictions, answers)):
        ref = extract_yes_no(a)
        if ref is None:
            raise ValueError(f"reference answer {i} ({a!r}) is neither a clear Yes nor a clear No")
        correct[i] = float(extract_yes_no(p) is ref)
    return (float(correct.mean()) if len(correct) else float("nan")), correct
