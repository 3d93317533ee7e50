"""giqa.images: root confinement, bad files, every pixel format to RGB, huge images, EXIF."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from giqa.errors import ImageError
from giqa.images import load_image, read_image_bytes, resolve_image_path, to_rgb


def _save(path, im, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


@pytest.fixture()
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    _save(r / "ok.png", Image.new("RGB", (40, 30), (10, 20, 30)))
    return r


@pytest.mark.parametrize("bad", ["../secret.png", "a/../../secret.png", "", "   ", "x\x00.png"])
def test_paths_outside_the_root_or_empty_are_rejected(root, bad):
    _save(root.parent / "secret.png", Image.new("RGB", (4, 4)))
    with pytest.raises(ImageError):
        load_image(root, bad)


def test_absolute_paths_are_confined(root):
    with pytest.raises(ImageError, match="escapes"):
        resolve_image_path(root, str(root.parent / "secret.png"))
    assert resolve_image_path(root, str(root / "ok.png")) == (root / "ok.png").resolve()
    assert resolve_image_path(root, "sub/../ok.png") == (root / "ok.png").resolve()


def test_symlink_escape_is_rejected(root):
    outside = _save(root.parent / "outside.png", Image.new("RGB", (4, 4)))
    os.symlink(outside, root / "link.png")
    with pytest.raises(ImageError, match="escapes"):
        load_image(root, "link.png")
    with pytest.raises(ImageError, match="escapes"):
        read_image_bytes(root, "link.png")
    os.symlink(root / "ok.png", root / "inside.png")  # a symlink inside the root is fine
    assert load_image(root, "inside.png").size == (40, 30)


def test_missing_directory_corrupt_truncated(root):
    with pytest.raises(ImageError, match="not found"):
        load_image(root, "nope.png")
    (root / "dir").mkdir()
    with pytest.raises(ImageError, match="directory"):
        load_image(root, "dir")
    (root / "text.jpg").write_text("hello, not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(root, "text.jpg")
    rng = np.random.default_rng(0)
    _save(root / "big.jpg", Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)), quality=95)
    data = (root / "big.jpg").read_bytes()
    (root / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(root, "trunc.jpg")


@pytest.mark.parametrize(
    "mode,make",
    [
        ("L", lambda: Image.new("L", (20, 10), 128)),
        ("1", lambda: Image.new("1", (20, 10), 1)),
        ("P", lambda: Image.new("RGB", (20, 10), (200, 10, 10)).convert("P")),
        ("CMYK", lambda: Image.new("CMYK", (20, 10), (0, 255, 255, 0))),
        ("I;16", lambda: Image.fromarray(np.full((10, 20), 65535, dtype=np.uint16))),
        ("I", lambda: Image.fromarray(np.arange(200, dtype=np.int32).reshape(10, 20))),
        ("F", lambda: Image.fromarray(np.linspace(0, 1, 200, dtype=np.float32).reshape(10, 20))),
    ],
)
def test_modes_become_rgb(root, mode, make):
    im = make()
    ext = "tif" if mode in ("CMYK", "I", "F") else "png"
    _save(root / f"m.{ext}", im)
    out = load_image(root, f"m.{ext}")
    assert out.mode == "RGB" and out.size == (20, 10)
    arr = np.asarray(out)
    if mode == "I;16":
        assert arr.max() == 255  # 65535 / 257
    if mode == "CMYK":
        assert tuple(arr[0, 0]) == (255, 0, 0)
    if mode in ("I", "F"):
        assert arr.min() == 0 and arr.max() == 255


def test_transparency_is_composited_on_white(root):
    _save(root / "a.png", Image.new("RGBA", (8, 8), (0, 0, 0, 0)))
    assert tuple(np.asarray(load_image(root, "a.png"))[0, 0]) == (255, 255, 255)
    _save(root / "la.png", Image.new("LA", (8, 8), (0, 255)))
    assert tuple(np.asarray(load_image(root, "la.png"))[0, 0]) == (0, 0, 0)
    p = Image.new("P", (8, 8), 0)
    p.putpalette([0, 0, 0] * 256)
    p.info["transparency"] = 0
    _save(root / "p.png", p, transparency=0)
    assert tuple(np.asarray(load_image(root, "p.png"))[0, 0]) == (255, 255, 255)


def test_huge_images_rejected_from_header_and_large_ones_downscaled(root):
    _save(root / "wide.png", Image.new("RGB", (300, 100)))
    with pytest.raises(ImageError, match="decompression-bomb"):
        load_image(root, "wide.png", max_pixels=10_000)
    out = load_image(root, "wide.png", max_side=150)
    assert out.size == (150, 50)
    _save(root / "wide.jpg", Image.new("RGB", (800, 200), (50, 60, 70)))
    out = load_image(root, "wide.jpg", max_side=100)  # JPEG draft decoding, then thumbnail
    assert out.size == (100, 25)


def test_pil_decompression_bomb_is_an_image_error(root, monkeypatch):
    _save(root / "bomb.png", Image.new("L", (100, 100)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL raises above 2x this
    with pytest.raises(ImageError, match="too large"):
        load_image(root, "bomb.png", max_pixels=10**9)


def test_exif_orientation_is_applied(root):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 10, 20))  # white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    _save(root / "rot.jpg", im, exif=exif.tobytes(), quality=95)
    out = load_image(root, "rot.jpg")
    assert out.size == (20, 40)
    arr = np.asarray(out).mean(axis=2)
    assert arr[:5].mean() > 200 and arr[-5:].mean() < 50  # the left stripe is now on top


def test_to_rgb_keeps_rgb():
    im = Image.new("RGB", (3, 3))
    assert to_rgb(im) is im


def test_only_regular_files_are_opened(root):
    """A FIFO named like an image must not block (opened non-blocking, checked with fstat)."""
    os.mkfifo(root / "pipe.jpg")
    for fn in (load_image, read_image_bytes):
        with pytest.raises(ImageError, match="'pipe.jpg' is not a regular file"):
            fn(root, "pipe.jpg")
    (root / "dir.png").mkdir()
    with pytest.raises(ImageError, match="directory"):
        read_image_bytes(root, "dir.png")


@pytest.mark.parametrize("size", [(5000, 1), (1, 300), (420, 20)])
def test_extreme_aspect_ratios_are_refused_clearly(root, size):
    _save(root / "strip.png", Image.new("RGB", size))
    with pytest.raises(ImageError, match=r"'strip.png' is \d+x\d+, an aspect ratio of \d+:1, above the limit of 20:1"):
        load_image(root, "strip.png")
    assert load_image(root, "strip.png", max_aspect_ratio=None).size[0] >= 1


def test_error_messages_name_paths_not_objects(root):
    (root / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ImageError) as info:
        load_image(root, "junk.png")
    assert "junk.png" in str(info.value) and " object at 0x" not in str(info.value)
