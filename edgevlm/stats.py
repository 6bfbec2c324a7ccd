"""The one median and spread every benchmark reports (host, decoder, GEMV, AI Hub).

- median: `statistics.median`, the mean of the two middle samples when their count is even. The
  central figure: one stall (GC, another process, a thermal step) moves the mean, not the median.
- spread: the interval [min, p90]. min is the least disturbed call (what the hardware can do on a
  shared host); p90 is the tail a user feels. p90 is nearest-rank (numpy `method="nearest"`,
  index round(0.9 * (n - 1))), so it is a time that was measured, never an interpolation.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

import numpy as np


def median(samples: Iterable[float]) -> float:
    return statistics.median(samples)


def percentile(samples: Iterable[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 <= q <= 100): one of the samples."""
    return float(np.percentile(list(samples), q, method="nearest"))


def timing_summary(samples_ms: list[float], warmup: int) -> dict:
    """Timed calls (ms) -> the bench schema's metrics: runs, warmup, median, spread [min, p90], max,
    mean and the sample standard deviation (0 for a single call: nothing spread)."""
    return {"runs": len(samples_ms), "warmup": warmup, "median_ms": median(samples_ms),
            "p90_ms": percentile(samples_ms, 90), "min_ms": min(samples_ms), "max_ms": max(samples_ms),
            "mean_ms": statistics.fmean(samples_ms),
            "std_ms": statistics.stdev(samples_ms) if len(samples_ms) > 1 else 0.0}
