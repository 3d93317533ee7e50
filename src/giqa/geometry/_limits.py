"""Numeric limits of the geometry functions (no Numba: importable by the wrappers)."""

COORD_LIMIT = 1e18
"""Largest accepted ``|coordinate|``. Up to it every area and area sum fits float32 (``8 * (2e18)**2
< 3.4e38``), so IoU, coverage and the merge rule are finite, never NaN; normalised and pixel
boxes are far inside. Beyond it the functions raise :class:`giqa.errors.InvalidBoxError`."""
# The kernels read it when compiled; Numba's cache does not see edits here (touch the kernel
# files, or clear __pycache__, after changing it).
