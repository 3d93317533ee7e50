"""The type of the option dicts that the Numba kernel files pass to ``njit`` (no Numba import).

Each kernel file spells out its own options, typed with :class:`NjitOptions`, rather than
importing shared values: Numba keys a cached kernel by its bytecode and signature, not by its
compile flags, and re-validates the cache by the kernel file's own text, so options defined in
another file could change without invalidating stale caches.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class NjitOptions(TypedDict, total=False):
    """The ``numba.njit`` keywords the kernels use, with the types numba's stubs accept."""

    cache: bool
    error_model: Literal["python", "numpy"]
    nogil: bool
    parallel: bool
    inline: Literal["never", "always"]
