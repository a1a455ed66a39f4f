"""Synthetic but natural-looking images: for the demo, for bench's end-to-end loop and for
reference inputs when the user gives no images. Deterministic for a given seed."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def make_image(height: int, width: int, seed: int) -> np.ndarray:
    """A BGR uint8 image with smooth gradients, a few filled shapes and mild noise, so that
    resizing, JPEG coding and normalisation behave as they do on photographs."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        img[..., c] = 128 + 60 * np.sin(a * xx / 40 + b * yy / 55 + p * 6)
    for _ in range(int(rng.integers(3, 7))):
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(min(height, width) // 12 + 1, min(height, width) // 4 + 2))
        if rng.random() < 0.5:
            cv2.circle(img, (cx, cy), r, color, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r // 2), color, -1, cv2.LINE_AA)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int, size: tuple[int, int] = (375, 500), seed: int = 0,
                 prefix: str = "sample") -> list[Path]:
    """Write ``count`` JPEG images (height, width = ``size``, alternating portrait and
    landscape) and return their paths."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        h, w = size if i % 2 == 0 else (size[1], size[0])
        path = folder / f"{prefix}_{i:04d}.jpg"
        cv2.imwrite(str(path), make_image(h, w, seed + i), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths
