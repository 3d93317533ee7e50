"""Safe image loading: paths confined to a dataset root, every pixel format to 8-bit RGB.

Policy (documented in docs/pipeline.md):

- Paths are relative to a dataset root. A path that resolves outside the root (``..``, an
  absolute path elsewhere, a symlink pointing out) raises :class:`giqa.errors.ImageError`.
- Only regular files are opened: a directory, FIFO, socket or device named ``x.jpg`` raises
  ``ImageError`` at once (opened non-blocking and checked with ``fstat``, so a FIFO never
  blocks the run). Missing, unreadable, truncated or non-image files raise ``ImageError``.
- An image with more than ``max_pixels`` pixels (read from the header, before decoding) is
  rejected with ``ImageError`` (decompression-bomb guard), and so is one whose aspect ratio
  (longer side / shorter side) exceeds ``max_aspect_ratio`` (default 20: strips such as 5000x1
  break every detector's and VLM's resizing). A decoded image whose longer side exceeds
  ``max_side`` is downscaled (aspect kept; JPEGs are decoded at reduced scale). Boxes are
  normalised, so downscaling does not change them.
- Error messages name the image path, never a Python object.
- EXIF orientation is applied. Modes become RGB: L/1/P/CMYK/YCbCr/LAB/HSV via PIL; RGBA, LA,
  PA and palette transparency are composited on white; 16-bit (I;16*) is scaled by 1/257;
  32-bit integer (I) and float (F) images are min-max scaled to 0..255.
"""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator, Optional

from giqa.errors import ImageError

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

__all__ = [
    "resolve_image_path", "read_image_bytes", "load_image", "to_rgb", "check_image_header", "regular_file_stat",
    "open_image_file",
]

DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MAX_SIDE = 2048
DEFAULT_MAX_ASPECT_RATIO = 20.0


def resolve_image_path(root: str | os.PathLike[str] | None, path: str | os.PathLike[str]) -> Path:
    """``root / path`` resolved (symlinks followed) and checked to lie inside ``root``.

    ``root=None`` means the current directory. Raises :class:`ImageError` on an empty path, a
    NUL byte, or a path whose resolved form is outside the resolved root.
    """
    spath = os.fspath(path)
    if not isinstance(spath, str) or not spath.strip():
        raise ImageError("empty image path")
    if "\x00" in spath:
        raise ImageError(f"image path {spath!r} contains a NUL byte")
    base = _real_root(os.fspath(root) if root is not None else ".")
    try:
        full = os.path.realpath(os.path.join(base, spath))
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loops
        raise ImageError(f"image path {spath!r} cannot be resolved: {exc}") from exc
    if full != base and not full.startswith(base.rstrip(os.sep) + os.sep):
        raise ImageError(f"image path {spath!r} escapes the dataset root {base!r}")
    return Path(full)


@lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    # cached: a root that is swapped for a symlink mid-run is not followed again (documented)
    return os.path.realpath(root)


def _not_regular(mode: int, name: str) -> ImageError:
    if stat.S_ISDIR(mode):
        return ImageError(f"image path is a directory: {name!r}")
    return ImageError(f"image path {name!r} is not a regular file (a FIFO, socket or device); only files are read")


def regular_file_stat(full: Path, name: str) -> os.stat_result:
    """``os.stat`` of ``full``, which must be a regular file (ImageError naming ``name`` otherwise)."""
    try:
        st = os.stat(full)
    except FileNotFoundError as exc:
        raise ImageError(f"image not found: {name!r}") from exc
    except OSError as exc:
        raise ImageError(f"cannot read image {name!r}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(st.st_mode, name)
    return st


@contextlib.contextmanager
def open_image_file(
    root: str | os.PathLike[str] | None, path: str | os.PathLike[str], *, resolved: Optional[Path] = None
) -> Iterator[IO[bytes]]:
    """The image file at ``path`` under ``root``, opened for reading: confined to the root and
    a regular file (opened non-blocking and checked with ``fstat``, so a FIFO never blocks).
    ``resolved``: ``resolve_image_path(root, path)`` when the caller has it already."""
    name = os.fspath(path)
    full = resolved if resolved is not None else resolve_image_path(root, path)
    try:
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise ImageError(f"image not found: {name!r}") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"image path is a directory: {name!r}") from exc
    except OSError as exc:
        raise ImageError(f"cannot read image {name!r}: {exc.strerror or exc}") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(mode, name)
    with os.fdopen(fd, "rb") as fh:
        yield fh


def read_image_bytes(
    root: str | os.PathLike[str] | None, path: str | os.PathLike[str], *, resolved: Optional[Path] = None
) -> bytes:
    """The raw bytes of the image at ``path`` under ``root`` (confined, regular files only;
    ImageError if missing)."""
    with open_image_file(root, path, resolved=resolved) as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise ImageError(f"cannot read image {os.fspath(path)!r}: {exc.strerror or exc}") from exc


def _open(source: Any, name: str) -> "Image":
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image {name!r} is too large to open safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"image {name!r} is not a readable image file (corrupt or unsupported)") from exc
    except FileNotFoundError as exc:
        raise ImageError(f"image not found: {name!r}") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"image path is a directory: {name!r}") from exc
    except OSError as exc:
        raise ImageError(f"cannot open image {name!r}: {exc}") from exc


def check_image_header(
    im: "Image", name: str, max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect_ratio: Optional[float] = DEFAULT_MAX_ASPECT_RATIO
) -> None:
    """Raise :class:`ImageError` for a zero-sized image, one above ``max_pixels``, or one whose
    longer side is more than ``max_aspect_ratio`` times its shorter side."""
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError(f"image {name!r} has an empty size {w}x{h}")
    if w * h > max_pixels:
        raise ImageError(
            f"image {name!r} is {w}x{h} = {w * h} pixels, above the limit of {max_pixels} "
            "(decompression-bomb guard; raise max_pixels to allow it)"
        )
    if max_aspect_ratio is not None and max(w, h) > max_aspect_ratio * min(w, h):
        raise ImageError(
            f"image {name!r} is {w}x{h}, an aspect ratio of {max(w, h) / min(w, h):.0f}:1, above the limit of "
            f"{max_aspect_ratio:g}:1 (strips this thin cannot be resized for the models; raise max_aspect_ratio "
            "to allow it)"
        )


def to_rgb(im: "Image") -> "Image":
    """Any PIL mode -> ``RGB`` (8 bits per channel); transparency composited on white."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16"):
        import numpy as np

        arr = np.asarray(im, dtype=np.uint32)
        return Image.fromarray((arr // 257).astype(np.uint8), mode="L").convert("RGB")
    if mode in ("I", "F"):
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"cannot convert image mode {mode!r} to RGB: {exc}") from exc


def load_image(
    root: str | os.PathLike[str] | None,
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: Optional[int] = DEFAULT_MAX_SIDE,
    max_aspect_ratio: Optional[float] = DEFAULT_MAX_ASPECT_RATIO,
) -> "Image":
    """Load ``root / path`` as an RGB ``PIL.Image`` (fully decoded, EXIF orientation applied).

    Raises :class:`ImageError` for every bad input (see the module docstring for the policy).
    """
    with open_image_file(root, path) as fh:
        return _decode(fh, os.fspath(path), max_pixels, max_side, max_aspect_ratio)


def _decode(fh: IO[bytes], name: str, max_pixels: int, max_side: Optional[int], max_aspect_ratio: Optional[float]) -> "Image":
    from PIL import Image, ImageOps

    im = _open(fh, name)
    try:
        check_image_header(im, name, max_pixels, max_aspect_ratio)
        if max_side is not None and im.format == "JPEG" and max(im.size) > 2 * max_side:
            im.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
            im = ImageOps.exif_transpose(im) or im
        im = to_rgb(im)
        if max_side is not None and max(im.size) > max_side:
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return im
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"image {name!r} is corrupt or truncated: {exc}") from exc
