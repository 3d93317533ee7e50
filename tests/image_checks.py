"""Helpers of the image-geometry tests: a 2:1 image with a red left quarter, and how much red survives."""

from __future__ import annotations

from PIL import Image


def red_left_quarter(width: int = 480, height: int = 240) -> Image.Image:
    """A 2:1 image whose left quarter is pure red and the rest pure blue."""
    im = Image.new("RGB", (width, height), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, width // 4, height))
    return im


def red_fraction(pixel_values, image_processor) -> float:
    """Share of pixels of one ``(3, H, W)`` normalised image that are red after undoing the norm."""
    import torch

    mean = torch.tensor(image_processor.image_mean).view(3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(3, 1, 1)
    rgb = pixel_values.float() * std + mean
    red = (rgb[0] > 0.8) & (rgb[1] < 0.2) & (rgb[2] < 0.2)
    return float(red.float().mean())
