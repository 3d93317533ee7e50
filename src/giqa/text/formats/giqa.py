"""giqa's own formats as :class:`BoxFormat` objects: ``giqa`` (grid) and ``giqa-norm``."""

from __future__ import annotations

from typing import Any, Sequence

from giqa.text.formats._base import BoxFormat
from giqa.text.grounded import format_boxes, format_phrase
from giqa.text.parsed import ParsedText
from giqa.text.scanner import grid_codec, scan_giqa


class GiqaGrid(BoxFormat):
    """``[phrase](<idx_l, idx_r>, ...)`` on an ``n`` x ``m`` grid (default 20 x 20)."""

    name = "giqa"
    rounding = (
        "cell of a coordinate v on an axis of k cells = floor(v * k) computed without float error, "
        "v = 1.0 in cell k - 1; idx = row * n + col; decoded to cell centres (col + 0.5) / n, (row + 0.5) / m"
    )
    source = "the Grounding-IQA paper, Eq. (1)-(2), with floors (see giqa.geometry.GridCodec)"

    def __init__(self, n: int = 20, m: int = 20) -> None:
        grid_codec(n, m)  # validates the grid size
        self.n, self.m = n, m

    def format_boxes(self, boxes: Sequence[Any]) -> str:
        return format_boxes(boxes, style="grid", n=self.n, m=self.m)

    def format_phrase(self, phrase: str, boxes: Sequence[Any]) -> str:
        return format_phrase(phrase, boxes, style="grid", n=self.n, m=self.m)

    def parse(self, text: str, *, strict: bool = False) -> ParsedText:
        return scan_giqa(text, n=self.n, m=self.m, strict=strict)

    def __repr__(self) -> str:
        return f"GiqaGrid(n={self.n}, m={self.m})"


class GiqaNorm(GiqaGrid):
    """``[phrase](x1, y1, x2, y2; x1, y1, x2, y2)`` with two decimals (the Norm-Coord ablation)."""

    name = "giqa-norm"
    rounding = "format(v, '.2f'): the exact binary value rounded to 2 decimals, ties to even; read back as float"
    source = "the Grounding-IQA paper, Sec. 3.2 (two decimals) and Tab. 2b (Norm-Coord)"

    def format_boxes(self, boxes: Sequence[Any]) -> str:
        return format_boxes(boxes, style="norm")

    def format_phrase(self, phrase: str, boxes: Sequence[Any]) -> str:
        return format_phrase(phrase, boxes, style="norm")

    def __repr__(self) -> str:
        return f"GiqaNorm(n={self.n}, m={self.m})"
