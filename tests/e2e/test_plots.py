"""`dvc plots show` draws every top-level plot of dvc.yaml with its title and axis labels, and plots/template.html
makes the HTML page render with no network (checked in headless Chromium when it is installed)."""
import html
import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO_ROOT as REPO
from tests.conftest import git, run_dvc

TEMPLATE = REPO / "plots" / "template.html"
STEPS = np.arange(1, 41)
# the files the train and evaluate stages write through dvclive, with plausible values
TSV = {name: [f"step\t{name}"] + [f"{s}\t{value}" for s, value in zip(STEPS, values)] for name, values in {
    "loss": [f"{0.69 * np.exp(-s / 15) + 0.05:.6f}" for s in STEPS],
    "accuracy": [f"{min(1.0, 0.5 + s / 60):.6f}" for s in STEPS],
    "lr": [f"{1e-3 * (1 - s / 41):.8f}" for s in STEPS],
    "epoch": [str(1 + s // 21) for s in STEPS]}.items()}
CUSTOM = {
    "metrics/eval/plots/custom/reward_histogram.json": [
        {"reward": round(x, 4), "chosen": round(30 * np.exp(-(x - 1) ** 2 / 2)),
         "rejected": round(30 * np.exp(-(x + 1) ** 2 / 2))} for x in np.linspace(-3, 3, 30).tolist()],
    "metrics/eval/plots/custom/calibration.json": [
        {"bin": b, "confidence": 0.525 + 0.05 * b, "accuracy": min(1.0, 0.5 + 0.06 * b), "pairs": 10 + b}
        for b in range(10)],
    "metrics/train/plots/custom/validation.json": [
        {"step": int(s), "val_loss": 0.7 * np.exp(-s / 20) + 0.1, "val_accuracy": min(1.0, 0.5 + s / 80)}
        for s in STEPS[4::5]],
    "metrics/eval/plots/custom/accuracy_by_group.json": [
        {"group": "eval: source=forum", "accuracy": 0.91, "pairs": 120},
        {"group": "eval: source=docs", "accuracy": 0.78, "pairs": 80},
        {"group": "rb: subset=mt-bench-hard", "accuracy": 0.55, "pairs": 37}],
    "metrics/eval/plots/custom/accuracy_by_length_diff.json": [
        {"length_diff": "-30..-1", "order": 4, "pairs": 50, "accuracy": 0.62, "baseline_longer_wins_accuracy": 0.0},
        {"length_diff": "0", "order": 5, "pairs": 10, "accuracy": 0.7, "baseline_longer_wins_accuracy": 0.5},
        {"length_diff": "+1..30", "order": 6, "pairs": 60, "accuracy": 0.81, "baseline_longer_wins_accuracy": 1.0}],
}
FILES = {**{f"metrics/train/plots/metrics/{name}.tsv": "\n".join(lines) + "\n" for name, lines in TSV.items()},
         **{name: json.dumps(rows, indent=4) + "\n" for name, rows in CUSTOM.items()}}


def top_level_plots() -> dict[str, dict]:
    """title -> properties of each plot under `plots:` in dvc.yaml."""
    entries = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    return {props.get("title", plot_id): props for entry in entries for plot_id, props in entry.items()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("plots-repo")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, repo / name)
    for name, text in FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q")
    assert run_dvc(repo, "init", "-q").returncode == 0
    return repo


def axis_titles(spec: object, axis: str) -> set[str]:
    """Every encoding.<axis>.title anywhere in a (layered) Vega-Lite spec."""
    found = set()
    if isinstance(spec, dict):
        channel = spec.get("encoding", {}).get(axis, {})
        if "title" in channel:
            found.add(channel["title"])
        spec = list(spec.values())
    if isinstance(spec, list):
        for item in spec:
            found |= axis_titles(item, axis)
    return found


def test_json_has_every_plot_with_its_title_axis_labels_and_data(repo):
    proc = run_dvc(repo, "plots", "show", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)["data"]
    for title, props in top_level_plots().items():
        assert title in shown, f"plot {title!r} missing from `dvc plots show`"
        content = shown[title][0]["content"]
        assert content["title"]["text"] == title
        assert props["x_label"] in axis_titles(content, "x") and props["y_label"] in axis_titles(content, "y")
        values = content["data"]["values"]
        assert values and all(props["x"] in v for v in values)


def test_html_page_has_every_plot_title_and_axis_label(repo):
    proc = run_dvc(repo, "plots", "show", "-o", "out")
    assert proc.returncode == 0, proc.stderr
    page = (repo / "out" / "index.html").read_text()
    for title, props in top_level_plots().items():
        for text in (title, props["x_label"], props["y_label"]):
            assert json.dumps(text) in page  # inside the plot's Vega-Lite spec
    assert "cdn.jsdelivr.net" in page  # DVC's default page needs the network, hence plots/template.html


def test_offline_template_inlines_the_vega_versions_dvc_uses(repo):
    from dvc_render.vega import VegaRenderer

    template = TEMPLATE.read_text()
    for name, version in re.findall(r"npm/(vega[a-z-]*)@([\d.]+)", VegaRenderer.SCRIPTS):
        assert f"/* {name}@{version} " in template, f"{name}@{version} (what dvc-render loads) is not inlined"
    proc = run_dvc(repo, "plots", "show", "-o", "offline", "--html-template", str(TEMPLATE))
    assert proc.returncode == 0, proc.stderr
    page = (repo / "offline" / "index.html").read_text()
    assert "<script src" not in page and "https://cdn" not in page
    assert all(json.dumps(title) in page for title in top_level_plots())


def png_pixels_vary(path: Path) -> tuple[tuple[int, int], int]:
    """(width, height) and how many distinct byte values the (filtered) pixel data holds: a blank page has a
    handful, a page with plots, text and anti-aliased lines has ~256. Stdlib + numpy, no image library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, size = 8, bytearray(), None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    pixels = np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8)
    return size, int(np.count_nonzero(np.bincount(pixels, minlength=256)))


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=180)


def test_offline_page_renders_titles_and_axes_in_headless_chromium(repo, tmp_path):
    if not (repo / "offline" / "index.html").is_file():
        assert run_dvc(repo, "plots", "show", "-o", "offline", "--html-template", str(TEMPLATE)).returncode == 0
    url = (repo / "offline" / "index.html").as_uri()
    dom = chromium("--dump-dom", url, profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the template renders SVG, so what Vega drew is in the DOM: every title and axis label must be there
    drawn = {html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", dom.stdout)}
    for title, props in top_level_plots().items():
        assert {title, props["x_label"], props["y_label"]} <= drawn, f"{title!r} not drawn with its labels"
    plots = (repo / "offline" / "index.html").read_text().count("vegaEmbed('#")
    assert dom.stdout.count('class="vega-embed') == plots >= len(top_level_plots())  # each embed call rendered

    png = tmp_path / "plots.png"
    shot = chromium(f"--screenshot={png}", "--window-size=1400,3000", url, profile=tmp_path / "profile")
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    size, distinct = png_pixels_vary(png)
    assert size == (1400, 3000) and distinct > 64, f"screenshot {png} looks blank ({distinct} byte values)"
