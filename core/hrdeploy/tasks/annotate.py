"""Text labels on drawn results: white text on a dark, opaque banner, legible on any image.

An outline drawn as a thicker black copy of the text under the white one smears at small
scales (the two strokes round to the same width and their anti-aliased edges do not line
up); a filled banner sized with ``cv2.getTextSize`` has neither problem.
"""
from __future__ import annotations

import numpy as np

FONT_SCALE_PER_PIXEL = 1 / 900  # font scale per pixel of the image's shorter side
BANNER = (32, 32, 32)           # BGR
TEXT = (255, 255, 255)


def text_scale(image: np.ndarray) -> float:
    """A font scale that reads the same on a thumbnail and on a 4K image."""
    return max(0.4, min(image.shape[:2]) * FONT_SCALE_PER_PIXEL)


def draw_label(image: np.ndarray, text: str, left: int, top: int, scale: float,
               color: tuple[int, int, int] = TEXT, banner: tuple[int, int, int] = BANNER,
               above: bool = False) -> int:
    """Draw ``text`` with its banner's top-left corner at (left, top) — or its bottom-left
    corner there with ``above`` (a box's caption, leaving the box's edge visible) — in place,
    clipped to the image. Returns the y just below the banner, for stacking labels."""
    import cv2

    thick = max(1, int(round(scale * 1.5)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, int(round(4 * scale)))
    height, width = image.shape[:2]
    if above:
        top -= h + base + 2 * pad
    left = int(min(max(0, left), max(0, width - w - 2 * pad)))
    top = int(min(max(0, top), max(0, height - h - base - 2 * pad)))
    bottom = top + h + base + 2 * pad
    cv2.rectangle(image, (left, top), (left + w + 2 * pad, bottom), banner, -1, cv2.LINE_8)
    cv2.putText(image, text, (left + pad, top + pad + h), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick,
                cv2.LINE_AA)
    return bottom
