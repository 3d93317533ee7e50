"""Argument checks shared by the geometry wrappers (NumPy only, no Numba).

The common case (a C-contiguous float32/float64 ``(N, 4)`` ndarray) passes through without a
copy after a handful of attribute checks; everything else is converted once. Finiteness and
corner order are checked inside the kernels (``giqa.geometry._checks.first_bad`` or fused into
the kernel's own pass); :func:`box_error` turns the bad row found there into a clear error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from giqa.errors import InvalidBoxError
from giqa.geometry._limits import COORD_LIMIT

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)


def float_dtype(dtype: np.dtype) -> np.dtype:
    """The float dtype a box array of ``dtype`` is computed in (TypeError for non-numbers).

    float32 and float64 are kept, float16 goes to float32, integers (and unsigned) to float64.
    """
    kind = dtype.kind
    if kind == "f":
        return _F32 if dtype.itemsize <= 4 else _F64
    if kind in "iu":
        return _F64
    raise TypeError(f"expected a real (float or integer) box array, got dtype {dtype}")


def as_boxes(x: Any, name: str = "boxes", dtype: np.dtype | None = None) -> np.ndarray:
    """``x`` as a C-contiguous native-endian ``(N, 4)`` float32/float64 array.

    ``dtype`` forces the result type (used to bring two operands to a common type). An empty
    1-D input (``[]``) is read as ``(0, 4)``. Raises ``ValueError`` for a wrong shape and
    ``TypeError`` for a non-numeric dtype. Does not check finiteness or corner order.
    """
    if type(x) is np.ndarray:
        arr = x
    else:
        arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != 4:
        if arr.ndim == 1 and arr.shape[0] == 0:
            arr = arr.reshape(0, 4)
        else:
            raise ValueError(f"{name}: expected (N, 4) boxes as xyxy, got {arr.shape}")
    target = float_dtype(arr.dtype) if dtype is None else dtype
    if arr.dtype != target or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=target)
    return arr


def common_dtype(a: np.ndarray, b: np.ndarray) -> np.dtype:
    """float32 when both operands compute in float32, else float64."""
    da = float_dtype(a.dtype)
    db = float_dtype(b.dtype)
    return _F32 if (da == _F32 and db == _F32) else _F64


def pair_args(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both operands as boxes of one common float dtype."""
    a0 = a if type(a) is np.ndarray else np.asarray(a)
    b0 = b if type(b) is np.ndarray else np.asarray(b)
    dt = common_dtype(a0, b0)
    return as_boxes(a0, "a", dt), as_boxes(b0, "b", dt)


def box_error(arr: np.ndarray, row: int, name: str = "boxes") -> InvalidBoxError:
    """The error describing why ``arr[row]`` is not a valid xyxy box."""
    x1, y1, x2, y2 = (float(v) for v in arr[row])
    vals = f"({x1}, {y1}, {x2}, {y2})"
    if not all(np.isfinite(v) for v in (x1, y1, x2, y2)):
        return InvalidBoxError(f"{name}[{row}] = {vals} is not finite (NaN or inf)")
    if x1 > x2:
        return InvalidBoxError(f"{name}[{row}] = {vals} is inverted: x1={x1} > x2={x2}")
    if y1 > y2:
        return InvalidBoxError(f"{name}[{row}] = {vals} is inverted: y1={y1} > y2={y2}")
    if max(abs(x1), abs(y1), abs(x2), abs(y2)) > COORD_LIMIT:
        return InvalidBoxError(
            f"{name}[{row}] = {vals} lies outside the supported range |v| <= {COORD_LIMIT:g} "
            "(beyond it areas overflow)"
        )
    return InvalidBoxError(f"{name}[{row}] = {vals} is not a valid box")


def as_offsets(x: Any, total: int) -> np.ndarray:
    """Ragged-batch offsets ``(B+1,)`` int64: start at 0, end at ``total``, never decrease."""
    arr = x if type(x) is np.ndarray else np.asarray(x)
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"offsets: expected (B+1,) with B >= 0, got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"offsets: expected an integer array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=_I64)
    if arr[0] != 0 or arr[-1] != total:
        raise ValueError(
            f"offsets must start at 0 and end at the number of boxes ({total}), "
            f"got {int(arr[0])} .. {int(arr[-1])}"
        )
    if arr.shape[0] > 1 and (np.diff(arr) < 0).any():
        row = int(np.flatnonzero(np.diff(arr) < 0)[0])
        raise ValueError(f"offsets must not decrease: offsets[{row}]={int(arr[row])} > offsets[{row + 1}]={int(arr[row + 1])}")
    return arr
