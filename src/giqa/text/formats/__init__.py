"""Other grounding models' text box formats, by name, read and write.

>>> from giqa.text.formats import convert, get_format
>>> get_format("qwen-vl").format_phrase("dog", [(0.1, 0.2, 0.5, 0.9)])
'<ref>dog</ref><box>(100,200),(500,900)</box>'
>>> convert("the [tower](<35, 319>) is tall", "giqa", "kosmos2")
'the <phrase>tower</phrase><object><patch_index_0088><patch_index_0799></object> is tall'

Each format documents its exact rounding rule (``fmt.rounding``) and the reference code it
follows (``fmt.source``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from giqa.errors import RegistryError
from giqa.text.formats._base import BoxFormat, render
from giqa.text.formats.giqa import GiqaGrid, GiqaNorm
from giqa.text.formats.kosmos2 import Kosmos2
from giqa.text.formats.paligemma import PaliGemma
from giqa.text.formats.qwen_vl import QwenVL
from giqa.text.formats.suffix import Ferret, Florence2, Shikra
from giqa.text.scanner import scan_giqa

__all__ = ["BoxFormat", "available_formats", "convert", "get_format", "render", "strip_coordinates"]

_FORMATS: dict[str, Callable[..., BoxFormat]] = {
    "giqa": GiqaGrid,
    "giqa-norm": GiqaNorm,
    "kosmos2": Kosmos2,
    "qwen-vl": QwenVL,
    "shikra": Shikra,
    "ferret": Ferret,
    "florence2": Florence2,
    "paligemma": PaliGemma,
}
_GRID_OPTIONS = {"giqa", "giqa-norm"}


def available_formats() -> list[str]:
    """The names :func:`get_format` knows."""
    return list(_FORMATS)


def get_format(name: str, **options: Any) -> BoxFormat:
    """The format called ``name``; ``options`` (``n``, ``m``: the grid) apply to ``giqa`` and
    ``giqa-norm`` (which reads grid groups too) only.

    Raises :class:`giqa.errors.RegistryError` (a KeyError) listing the names for an unknown
    one, and ``TypeError`` for options a format does not take.
    """
    try:
        factory = _FORMATS[name]
    except (KeyError, TypeError):
        raise RegistryError(
            f"unknown text format {name!r}; available: {', '.join(available_formats())}"
        ) from None
    if options and name not in _GRID_OPTIONS:
        raise TypeError(f"format {name!r} takes no options, got {sorted(options)}")
    return factory(**options)


def convert(text: str, src: str, dst: str, *, strict: bool = False, n: int = 20, m: int = 20) -> str:
    """Rewrite grounded ``text`` from format ``src`` into format ``dst``.

    The text is parsed with ``src`` (lenient unless ``strict``) and each grounded span is
    written back with ``dst`` at the same place in the clean text. Boxes pass through
    normalised xyxy, so each conversion quantises once with ``dst``'s rule. ``n``/``m`` set
    the grid of ``giqa`` on either side.
    """
    src_fmt = get_format(src, n=n, m=m) if src in _GRID_OPTIONS else get_format(src)
    dst_fmt = get_format(dst, n=n, m=m) if dst in _GRID_OPTIONS else get_format(dst)
    return dst_fmt.render(src_fmt.parse(text, strict=strict))


def strip_coordinates(text: str, fmt: Optional[str] = None, **options: Any) -> str:
    """The clean text (coordinates and grounding brackets removed), for BLEU and LLM-Score.

    ``fmt`` names another model's format (see :func:`available_formats`), e.g.
    ``strip_coordinates(out, fmt="kosmos2")``; default giqa (grid and norm style; ``n``, ``m``
    set the grid). Never raises on malformed text. Also :func:`giqa.text.strip_coordinates`.
    """
    if fmt is None or fmt in _GRID_OPTIONS:
        return scan_giqa(text, n=options.get("n", 20), m=options.get("m", 20)).text
    return get_format(fmt, **options).parse(text).text
