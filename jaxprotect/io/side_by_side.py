"""Side-by-side images for people to look at: panels next to each other, each with a label, and a caption."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["side_by_side"]


def _font(height: int):
    return ImageFont.load_default(size=max(10, height))


def _text_block(lines, width: int, font, pad: int) -> np.ndarray:
    line_h = font.size + pad
    img = Image.new("RGB", (width, pad + line_h * len(lines)), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_h), line, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def side_by_side(images, labels=None, caption=None, gap: int = 8) -> np.ndarray:
    """Panels next to each other on a white canvas: uint8 [H', W', 3].

    ``images``: uint8 [H_i, W_i, 3] panels (shorter ones are top-aligned); ``labels``: one line
    of text per panel, drawn above it (e.g. "original", "protected (tipim, eps 12)"); ``caption``:
    lines of text under the panels (e.g. the verdict). Text size follows the image size.
    """
    images = [np.asarray(i, np.uint8) for i in images]
    h = max(i.shape[0] for i in images)
    parts = []
    for k, img in enumerate(images):
        pad = np.full((h, img.shape[1], 3), 255, np.uint8)
        pad[: img.shape[0]] = img
        parts.append(pad)
        if k < len(images) - 1:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    row = np.concatenate(parts, axis=1)
    width = row.shape[1]
    font = _font(int(np.clip(h / 28, 10, 40)))
    pad = max(4, font.size // 3)
    blocks = []
    if labels is not None:
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        heads = []
        for k, (img, label) in enumerate(zip(images, labels)):
            heads.append(_text_block([str(label)], img.shape[1], font, pad))
            if k < len(images) - 1:
                heads.append(np.full((heads[-1].shape[0], gap, 3), 255, np.uint8))
        blocks.append(np.concatenate(heads, axis=1))
    blocks.append(row)
    if caption:
        lines = [caption] if isinstance(caption, str) else list(caption)
        blocks.append(_text_block(lines, width, font, pad))
    return np.concatenate(blocks, axis=0)
