"""ISO 8601 text for many timestamps at once, from a table of the 86,400 times of day.

Formatting millions of timestamps one by one (``strftime``) is slow; the prep stage and the sample-data
generator both index this table with each timestamp's second of the day instead.
"""

from __future__ import annotations

import numpy as np

DAY_SECONDS = 86_400


def time_of_day_chars() -> np.ndarray:
    """``THH:MM:SS`` for each second of a day: a (86400, 9) table of ASCII bytes."""
    sod = np.arange(DAY_SECONDS)
    digits = np.stack(
        [sod // 36000, sod // 3600 % 10, sod // 600 % 6, sod // 60 % 10, sod // 10 % 6, sod % 10], axis=1
    ).astype(np.uint8) + ord("0")
    chars = np.empty((DAY_SECONDS, 9), dtype=np.uint8)
    chars[:, 0] = ord("T")
    chars[:, [1, 2, 4, 5, 7, 8]] = digits
    chars[:, [3, 6]] = ord(":")
    return chars
