"""metrics/report.html: self-contained (no request leaves the page), the top confidently wrong held-out pairs with
their texts, and, in a real headless Chromium when one is installed, a page whose script filters the table."""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from rewardkit.evaluation.report import TOP_WRONG
from tests.conftest import easy_rows, read_jsonl, train_in_process

TRAIN = {"max_length": 64, "batch_size": 8, "epochs": 1, "lr": 1e-2, "warmup_ratio": 0.0, "checkpoint_every": 0}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """The report's table rows (cell texts) and every attribute that could load something."""

    def __init__(self):
        super().__init__()
        self.rows, self.links, self._cells, self._in_body, self._cell = [], [], None, False, None

    def handle_starttag(self, tag, attrs):
        self.links += [(tag, k, v) for k, v in attrs if k in ("src", "href") or (v or "").startswith("http")]
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._cells = []
        elif tag == "td" and self._cells is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._cells.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._cells is not None:
            self.rows.append(self._cells)
            self._cells = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_base):
    # held-out pairs with every other one's answers swapped: the model gets about half of them wrong
    rows = easy_rows(120, seed=2)
    eval_rows = [{**r, "source": ["forum", "docs", "docs"][k % 3]} | (
        {"chosen": r["rejected"], "rejected": r["chosen"]} if k % 2 else {}) for k, r in enumerate(rows)]
    return train_in_process(tmp_path_factory.mktemp("report"), tiny_base, easy_rows(32, seed=1), eval_rows,
                            train=TRAIN)


def test_the_report_is_self_contained_and_lists_the_most_confidently_wrong_pairs(work):
    html = (work / "metrics/report.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    assert [link for link in page.links if link[1:] != ("xmlns", "http://www.w3.org/2000/svg")] == []
    assert "<svg" in html and "Spearman(reward, length)" in html and "<script>" in html
    scores = read_jsonl(work / "data/eval_scores.jsonl")
    wrong = sorted((s["reward_chosen"] - s["reward_rejected"], s["index"]) for s in scores
                   if s["reward_chosen"] < s["reward_rejected"])
    assert len(page.rows) == min(TOP_WRONG, len(wrong)) and len(wrong) > TOP_WRONG
    assert [int(r[0]) for r in page.rows] == [index for _, index in wrong[:TOP_WRONG]]
    margins = [float(r[2]) for r in page.rows]
    assert margins == sorted(margins) and margins[-1] < 0
    eval_rows = read_jsonl(work / "data/eval.jsonl")
    first = eval_rows[int(page.rows[0][0])]  # the store keeps the split's row order here (no pair dropped)
    assert page.rows[0][1] == first["source"] and page.rows[0][6] == first["chosen"]
    assert page.rows[0][5] == first["prompt"] and page.rows[0][7] == first["rejected"]
    assert json.loads(html.split('id="metrics">')[1].split("</script>")[0])["pairs"] == 120


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs Debian's chromium)")
def test_the_report_renders_and_filters_in_headless_chromium(work, tmp_path):
    report = (work / "metrics/report.html").resolve()
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri()], check=True,
                   capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    dom = subprocess.run([*base, "--dump-dom", report.as_uri() + "#group=docs"], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    page = Page()
    page.feed((work / "metrics/report.html").read_text(encoding="utf-8"))
    docs = sum(row[1] == "docs" for row in page.rows)
    assert f"{docs} of {len(page.rows)} shown" in dom and 0 < docs < len(page.rows)  # the script ran and filtered
