"""The soak's p99 drift statistic (bench/serve_soak.py): pooled windows at each end, warm-up left out."""
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
