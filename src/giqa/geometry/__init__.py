"""Box geometry on normalised ``xyxy`` boxes: overlap measures, Box-Merge and the grid codec.

Public functions are typed wrappers (shape, dtype, finiteness and corner-order checks, empty
inputs answered at once) around private Numba kernels (``cache=True``; serial kernels for small
inputs, ``parallel=True`` ones for large). Importing this package does not import Numba: the
kernels load on first use, and the scalar grid helpers never need them.

* :func:`pairwise_iou`, :func:`pairwise_coverage`, :func:`pairwise_touch`: ``(N, 4) x (M, 4) -> (N, M)``
* :func:`iou`, :func:`coverage`, :func:`touch`: element-wise on two ``(N, 4)`` arrays
* :func:`box_merge`, :func:`box_merge_batched`: the paper's Box-Merge (Alg. 1 in canonical order, to a fixpoint)
* :class:`GridCodec`: boxes <-> ``(idx_l, idx_r)`` cells of an ``n x m`` grid
* :data:`COORD_LIMIT`: the largest accepted ``|coordinate|`` (1e18); beyond it areas overflow
"""

from giqa.geometry._limits import COORD_LIMIT
from giqa.geometry.grid import GridCodec
from giqa.geometry.iou import coverage, iou, pairwise_coverage, pairwise_iou, pairwise_touch, touch
from giqa.geometry.merge import AREA_THR, COVER_THR, box_merge, box_merge_batched

__all__ = [
    "AREA_THR",
    "COORD_LIMIT",
    "COVER_THR",
    "GridCodec",
    "box_merge",
    "box_merge_batched",
    "coverage",
    "iou",
    "pairwise_coverage",
    "pairwise_iou",
    "pairwise_touch",
    "touch",
]
