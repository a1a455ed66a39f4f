"""Checks of values given on the command line or to the library, each failing with one line."""
from __future__ import annotations

from .errors import UserError

#: no accelerator of the family compiles or runs a larger batch; a typo like 640 is caught
MAX_BATCH = 1024


def batch_sizes(text: str, option: str = "--batch") -> list[int]:
    """``"1,4,8"`` -> ``[1, 4, 8]``: sorted, unique, each 1..MAX_BATCH."""
    try:
        sizes = sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        raise UserError(f"{option} expects comma-separated whole numbers such as 1,4,8, got {text!r}") from None
    if not sizes:
        raise UserError(f"{option} is empty", "give batch sizes such as 1,4,8")
    bad = [b for b in sizes if not 1 <= b <= MAX_BATCH]
    if bad:
        raise UserError(f"{option}: batch size {bad[0]} is out of range", f"each must be 1 to {MAX_BATCH}")
    return sizes
