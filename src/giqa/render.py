"""Draw a sample's boxes and phrases on its image (PIL only), to look at what a pipeline made."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

__all__ = ["draw_regions", "render_sample", "PALETTE"]

# Colour-blind-friendly palette (Okabe-Ito), one colour per phrase, cycled.
PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167)]


def draw_regions(image: "Image", regions: Iterable[Any], *, line_width: Optional[int] = None) -> "Image":
    """A copy of ``image`` (RGB) with each region's boxes outlined and labelled with its phrase.

    ``regions``: :class:`giqa.types.GroundedPhrase` objects or dicts ``{"phrase", "boxes"}``
    with boxes as :class:`giqa.types.Box` or normalised ``[x1, y1, x2, y2]``.
    """
    from PIL import ImageDraw, ImageFont

    out = image.convert("RGB").copy()
    w, h = out.size
    lw = line_width or max(2, round(min(w, h) / 200))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    for k, region in enumerate(regions):
        phrase = region["phrase"] if isinstance(region, dict) else region.phrase
        boxes = region["boxes"] if isinstance(region, dict) else region.boxes
        color = PALETTE[k % len(PALETTE)]
        for b in boxes:
            x1, y1, x2, y2 = b.as_tuple() if hasattr(b, "as_tuple") else b
            px = (x1 * w, y1 * h, max(x1 * w, x2 * w - 1), max(y1 * h, y2 * h - 1))
            draw.rectangle(px, outline=color, width=lw)
            label = str(phrase)[:60]
            tx, ty = px[0] + lw, px[1] + lw
            l, t, r, btm = draw.textbbox((0, 0), label, font=font)
            tx, ty = max(0, min(tx, w - (r - l) - 2)), max(0, min(ty, h - (btm - t) - 2))  # keep it inside
            l, t, r, btm = draw.textbbox((tx, ty), label, font=font)
            draw.rectangle((l - 2, t - 1, r + 2, btm + 1), fill=color)
            draw.text((tx, ty), label, fill=(0, 0, 0), font=font)
    return out


def render_sample(sample: Any, root: Optional[str | os.PathLike[str]], **load_kwargs: Any) -> "Image":
    """Load ``sample``'s image (confined to ``root``, see :func:`giqa.images.load_image`) and
    draw its regions. ``sample`` is a :class:`giqa.types.Sample` or its dict."""
    from giqa.images import load_image
    from giqa.types import Sample

    s = sample if isinstance(sample, Sample) else Sample.model_validate(sample)
    image = load_image(root, s.image, **load_kwargs)
    return draw_regions(image, s.regions)
