"""The soak's statistics (bench/serve_soak.py): p99 drift and RSS growth over pooled windows, warm-up left out."""
from __future__ import annotations

import numpy as np
import pytest

from bench import serve_soak


def series(rng: np.random.Generator, scales: list[float], n: int = 170) -> list[list[float]]:
    """One window of n lognormal latencies (ms, median 6000 x scale) per scale."""
    return [list(6000 * s * rng.lognormal(0, 0.1, n)) for s in scales]


def test_a_steady_run_passes_even_with_a_slow_warm_up_and_one_bad_middle_window():
    rng = np.random.default_rng(0)
    windows = series(rng, [3.0, 1.0, 1.0, 1.4, 1.0, 1.0])  # warm-up 3x, window 4 at 1.4x: neither is compared
    first, last, drift = serve_soak.p99_drift(windows)
    assert abs(drift) <= serve_soak.P99_DRIFT, (first, last, drift)
    assert first == pytest.approx(np.percentile(windows[1] + windows[2], 99))
    assert last == pytest.approx(np.percentile(windows[4] + windows[5], 99))


def test_a_server_slowing_down_over_the_run_fails():
    rng = np.random.default_rng(0)
    windows = series(rng, [1.0, 1.0, 1.1, 1.2, 1.3, 1.4])  # 8% slower per window
    _, _, drift = serve_soak.p99_drift(windows)
    assert drift > serve_soak.P99_DRIFT


def test_too_few_windows_is_an_error():
    with pytest.raises(ValueError, match="at least 5 windows"):
        serve_soak.p99_drift([[1.0]] * 4)


def sawtooth(windows: int, slope_mb: float = 0.0, n: int = 30) -> list[list[float]]:
    """n RSS samples (MB) a window: a 510-655 MB saw (heap trims every 7 samples) plus `slope_mb` a window."""
    return [[510 + 145 * (i % 7) / 6 + slope_mb * (w + i / n) for i in range(n)] for w in range(windows)]


def test_rss_growth_reads_high_water_marks_so_a_trimmed_sawtooth_passes_wherever_a_window_ends():
    windows = sawtooth(6)
    windows[0] = windows[0][:3]  # the warm-up ends in a trough: the single-sample rule read +26% here
    first, last, growth = serve_soak.rss_growth(windows)
    assert (first, last) == (655, 655) and growth == 0


def test_rss_growth_fails_a_server_that_keeps_memory():
    _, _, growth = serve_soak.rss_growth(sawtooth(6, slope_mb=20))  # 20 MB a window: +8% from windows 2-3 to 5-6
    assert growth > serve_soak.RSS_GROWTH


def test_rss_growth_needs_samples_in_every_compared_window():
    with pytest.raises(ValueError, match="RSS samples"):
        serve_soak.rss_growth([[500.0]] * 5 + [[]])
