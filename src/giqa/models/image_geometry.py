"""How an image of any aspect ratio reaches a LLaVA-style vision tower: one policy for every path.

The trainer (:mod:`giqa.train.collate`), :class:`~giqa.models.llava_filter.LlavaQualityFilter`
and :class:`~giqa.models.llava_vlm.LlavaVLM` (and so ``giqa bench run``) all call
:func:`prepare_images` before the processor, so a model is trained and asked on the same pixels.

``image_aspect``:

- ``"pad"`` (default): pad to a square with the processor's mean colour, centred, then let the
  processor resize. This is LLaVA-1.5's own ``expand2square`` (``image_aspect_ratio="pad"`` in
  its training), and the only choice under which GIQA's normalised full-image box coordinates
  stay valid for a square-input tower: every pixel of the image is seen, and a box maps to the
  same region of the padded square up to a known offset. A CLIP processor's centre crop then
  has nothing to remove.
- ``"crop"``: the processor's own preprocessing as the checkpoint ships it (llava-hf's CLIP
  processor resizes the shortest side and crops the centre square, so a 2:1 image loses its
  left and right quarters, and boxes near those edges point at pixels the model never sees).
- ``"native"``: also the processor's own preprocessing, for processors that keep the whole image
  themselves by tiling (LLaVA-NeXT's ``anyres``); giqa leaves the geometry to them.

Importing this module is light (PIL only when called).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence, get_args

__all__ = [
    "ImageAspect",
    "IMAGE_ASPECTS",
    "DEFAULT_IMAGE_ASPECT",
    "mean_colour",
    "expand_to_square",
    "prepare_images",
    "processor_image_kwargs",
]

ImageAspect = Literal["pad", "crop", "native"]
IMAGE_ASPECTS: tuple[str, ...] = get_args(ImageAspect)
DEFAULT_IMAGE_ASPECT: ImageAspect = "pad"


def mean_colour(image_processor: Any) -> tuple[int, int, int]:
    """The processor's ``image_mean`` as an 8-bit RGB colour (LLaVA: ``int(m * 255)`` each).

    A processor without ``image_mean`` pads with mid-grey (127, 127, 127).
    """
    mean = getattr(image_processor, "image_mean", None)
    if mean is None:
        return (127, 127, 127)
    if isinstance(mean, (int, float)):
        mean = [mean] * 3
    values = [int(float(m) * 255) for m in mean]
    if len(values) != 3:
        raise ValueError(f"image_mean must have 3 values (RGB), got {mean!r}")
    return (values[0], values[1], values[2])


def expand_to_square(image: Any, fill: tuple[int, int, int]) -> Any:
    """``image`` (RGB ``PIL.Image``) centred on a ``fill``-coloured square of side max(w, h).

    A square image is returned as is. The image's pixel ``(x, y)`` lands at
    ``(x + (s - w) // 2, y + (s - h) // 2)`` in the square of side ``s``.
    """
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), fill)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def prepare_images(images: Sequence[Any], image_processor: Any, image_aspect: str) -> list[Any]:
    """The images to hand to the processor under ``image_aspect`` (see the module docstring)."""
    if image_aspect not in IMAGE_ASPECTS:
        raise ValueError(f"image_aspect must be one of {', '.join(IMAGE_ASPECTS)}, got {image_aspect!r}")
    if image_aspect != "pad":
        return list(images)
    fill = mean_colour(image_processor)
    return [expand_to_square(im, fill) for im in images]


def processor_image_kwargs(image_processor: Any) -> dict[str, Any]:
    """Keywords telling the image processor our PIL images are channels-last.

    transformers 4.x image processors guess the channel axis from the array shape, and guess
    wrong for images 1 or 3 pixels tall (a (3, w, 3) array looks channels-first), failing on small
    crops; their ``preprocess`` takes ``input_data_format``. v5's PIL processors do not take it
    (and need no hint): the keyword is passed only where ``preprocess`` accepts it.
    """
    import inspect

    preprocess = getattr(image_processor, "preprocess", None)
    if preprocess is None:
        return {}
    try:
        accepted = inspect.signature(preprocess).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return {}
    return {"input_data_format": "channels_last"} if "input_data_format" in accepted else {}
