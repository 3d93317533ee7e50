"""Validity scan shared by the Numba kernels (private).

Kernels in other files compile :func:`first_bad` into their own on-disk caches, and Numba
re-validates a cache by the text of the caller's file alone. So every kernel file that imports
from here states ``CHECKS_VERSION`` in its text; bump it here and there together when this file
changes (``tests/test_geometry_import.py`` checks that they agree).
"""

from __future__ import annotations

from numba import njit

from giqa.geometry._jit_options import NjitOptions
from giqa.geometry._limits import COORD_LIMIT

_OPTS: NjitOptions = {"cache": True, "error_model": "numpy", "nogil": True}
# Helpers state parallel=False so a parallel caller does not recompile them with its flags
# (Numba inherits unset flags), which can cost their vectorisation.
_SERIAL: NjitOptions = {**_OPTS, "parallel": False}

CHECKS_VERSION = 2


@njit(**_SERIAL)
def first_bad(boxes):
    """First row with x1 > x2, y1 > y2 or a coordinate outside ``[-COORD_LIMIT, COORD_LIMIT]``
    (NaN and inf included); -1 when all rows are valid."""
    lim = COORD_LIMIT
    for i in range(boxes.shape[0]):
        x1 = boxes[i, 0]
        y1 = boxes[i, 1]
        x2 = boxes[i, 2]
        y2 = boxes[i, 3]
        # NaN fails every comparison; with x1 <= x2 the two outer bounds cover all four values.
        if not (x1 <= x2 and y1 <= y2 and -lim <= x1 and x2 <= lim and -lim <= y1 and y2 <= lim):
            return i
    return -1
