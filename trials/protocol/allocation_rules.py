"""Rules of an allocation design shared by the trial-file loader and the allocation service, so a
trial file that loads is a trial whose allocation list can be generated (issue 15: the loader
used to want multiples of the number of arms, the service multiples of the ratio's sum)."""

from __future__ import annotations

import math
from functools import reduce


def allocation_ratio(sizes: list[int]) -> list[int]:
    """The smallest whole-number ratio of planned group sizes (20, 3 -> 20:3; 16, 16 -> 1:1).
    A group without a planned size counts as one share."""
    sizes = [size or 1 for size in sizes]
    divisor = reduce(math.gcd, sizes)
    return [size // divisor for size in sizes]


def uneven_block_sizes(ratio: list[int], block_sizes: list[int]) -> list[int]:
    """The block sizes that cannot hold the groups in `ratio`: a permuted block must contain every
    group in the ratio, so its size must be a multiple of the ratio's sum (2:1 -> 3, 6, 9 …)."""
    unit = sum(ratio)
    return [size for size in block_sizes if size % unit]


def block_size_message(ratio: list[int], block_sizes: list[int]) -> str | None:
    """Why these block sizes do not suit the ratio (None: they do); one wording for file and service."""
    uneven = uneven_block_sizes(ratio, block_sizes)
    if not uneven:
        return None
    unit = sum(ratio)
    return (
        f"block size(s) {uneven} cannot hold the allocation ratio {':'.join(map(str, ratio))}: "
        f"use multiples of {unit} (the sum of the ratio)"
    )
