"""Validity scan shared by the Numba kernels (private)."""

from __future__ import annotations

from numba import njit

_OPTS = dict(cache=True, error_model="numpy", nogil=True)
# Helpers state parallel=False so a parallel caller does not recompile them with its flags
# (Numba inherits unset flags), which can cost their vectorisation.
_SERIAL = dict(_OPTS, parallel=False)


@njit(**_SERIAL)
def first_bad(boxes):
    """First row that is not finite or has x1 > x2 or y1 > y2; -1 when all rows are valid."""
    for i in range(boxes.shape[0]):
        x1 = boxes[i, 0]
        y1 = boxes[i, 1]
        x2 = boxes[i, 2]
        y2 = boxes[i, 3]
        # NaN fails every comparison and inf * 0 is NaN, so this one test covers both.
        if not (x1 <= x2 and y1 <= y2 and x1 * 0 == 0 and y1 * 0 == 0 and x2 * 0 == 0 and y2 * 0 == 0):
            return i
    return -1
