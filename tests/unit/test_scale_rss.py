"""bench.scale's memory figures: GNU time's maximum RSS of a real process is read back, and the table shows it."""
import shutil
import subprocess
import sys

import pytest

from bench import scale


@pytest.mark.skipif(shutil.which(scale.GNU_TIME) is None, reason="GNU time is not installed (apt install time)")
def test_gnu_time_rss_of_a_process_that_touches_200_mb(tmp_path):
    report = tmp_path / "time.txt"
    subprocess.run([scale.GNU_TIME, "-v", "-o", str(report), sys.executable, "-c", "x = b'x' * (200 << 20)"],
                   check=True)
    assert 200 <= scale.gnu_time_rss_mb(report.read_text()) < 300


def test_a_report_without_the_rss_line_is_an_error():
    with pytest.raises(ValueError, match="Maximum resident set size"):
        scale.gnu_time_rss_mb("\tElapsed (wall clock) time (h:mm:ss or m:ss): 0:01.00\n")


def test_the_table_shows_gnu_time_and_what_each_stage_processed():
    rows = [{"pairs": 1000, "stage": s, "wall": 2.0, "cpu": 1.0, "rss": 100.0 + i, "gnu_rss": 90.0 + i,
             "done": 500, "what": "pairs evaluated"} for i, s in enumerate(scale.STAGES)]
    rows[3]["what"] = "pairs: 48 trained on + 452 scored for the train metrics"
    store = {"pairs": 900, "tokens": 90_000}
    text = scale.report(rows, {1000: store}, "python -m bench.scale", (1.0, 1.0, 1.0), "settings")
    assert "| GNU time max RSS MB |" in text
    assert "| 1,000 | evaluate | 2.0 | 1.0 | 104 | 94 | 500 pairs evaluated | 250 |" in text
    assert "1,000 train: pairs: 48 trained on + 452 scored for the train metrics" in text
