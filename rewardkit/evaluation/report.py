"""metrics/report.html: one self-contained page (inline CSS, SVG and a few lines of script; no CDN, no request)
with the headline numbers, the plots, and the held-out pairs the model gets most confidently wrong — the `TOP_WRONG`
pairs with the most negative margin r⁺ − r⁻, each with a prompt excerpt, both answers, both rewards and its
source/subset — in a table sortable by any column (click its header) and filterable by group or text (also from
the address: `report.html#group=docs&text=rate`). Deterministic: no dates."""
from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rewardkit.data.formats import render_plain_prompt, render_plain_response
from rewardkit.encoding.store import TokenStore
from rewardkit.evaluation.svg import bar_chart, line_chart
from rewardkit.io import atomic_path, read_jsonl

TOP_WRONG = 50
PROMPT_CHARS, ANSWER_CHARS = 600, 1500
HEADLINE = (("pairs", "held-out pairs"), ("accuracy", "accuracy (ties ½)"),
            ("baseline_longer_wins_accuracy", "longer-answer-wins baseline"), ("loss", "BT loss"), ("ece", "ECE"),
            ("tie_rate", "tie rate"), ("mean_margin", "mean margin r⁺ − r⁻"))


@dataclass(frozen=True)
class ReportInputs:
    calibration: list[dict]
    histogram: list[dict]
    groups: list[dict]
    length_buckets: list[dict]
    wrong: list[dict]


def _excerpt(text: str, chars: int, keep_end: bool = False) -> str:
    if len(text) <= chars:
        return text
    return "…" + text[-chars:] if keep_end else text[:chars] + "…"


def wrong_pairs(store: TokenStore, chosen: torch.Tensor, rejected: torch.Tensor, columns: pd.DataFrame,
                eval_rows: Path | None, k: int = TOP_WRONG) -> list[dict]:
    """The k pairs with the most negative margin (ties and right answers left out), most confident first, with
    their texts read from the split file (`eval_rows`; without it, no texts)."""
    margin = (chosen - rejected).double().numpy()
    wrong = np.flatnonzero(margin < 0)
    picked = wrong[np.argsort(margin[wrong], kind="stable")][:k]
    rows = store.columns("row")["row"].to_numpy()
    wanted = {int(rows[p]): None for p in picked}
    if eval_rows is not None and Path(eval_rows).exists() and wanted:
        for number, row in enumerate(read_jsonl(eval_rows)):
            if number in wanted:
                wanted[number] = row
    out = []
    for p in picked:
        row = wanted[int(rows[p])] or {}
        group = " / ".join(str(columns[c][p]) for c in ("source", "subset") if c in columns and pd.notna(
            columns[c][p]))
        out.append({"pair": int(p), "group": group or "(none)", "margin": float(margin[p]),
                    "reward_chosen": float(chosen[p]), "reward_rejected": float(rejected[p]),
                    "prompt": _excerpt(render_plain_prompt(row.get("prompt", "")), PROMPT_CHARS, keep_end=True),
                    "chosen": _excerpt(render_plain_response(row.get("chosen", "")), ANSWER_CHARS),
                    "rejected": _excerpt(render_plain_response(row.get("rejected", "")), ANSWER_CHARS)})
    return out


def _headline(metrics: dict) -> str:
    cells = [(label, metrics.get(key)) for key, label in HEADLINE]
    bias = metrics.get("length_bias", {})
    cells.append(("Spearman(reward, length)", bias.get("spearman_reward_length")))
    for name, extra in (metrics.get("extra_sets") or {}).items():
        cells.append((f"{name}: accuracy over pairs", extra.get("accuracy")))
        scoring = extra.get("scoring")
        if scoring in ("rmbench", "rewardbench2"):
            bench = extra[scoring]
            cells.append((f"{name}: {scoring} {'average' if scoring == 'rmbench' else 'Score'}",
                          bench.get("average", bench.get("Score"))))
    rows = "".join(f"<tr><th>{escape(label)}</th><td>{_number(value)}</td></tr>" for label, value in cells)
    return f'<table class="headline">{rows}</table>'


def _number(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def _plots(inputs: ReportInputs) -> str:
    charts = [
        line_chart({"accuracy": [(r["confidence"], r["accuracy"]) for r in inputs.calibration],
                    "confidence": [(r["confidence"], r["confidence"]) for r in inputs.calibration]},
                   "mean confidence in bin", "accuracy", "Calibration of σ(r⁺ − r⁻)"),
        line_chart({"chosen": [(r["reward"], r["chosen"]) for r in inputs.histogram],
                    "rejected": [(r["reward"], r["rejected"]) for r in inputs.histogram]},
                   "reward", "answers in bin", "Rewards, chosen vs rejected"),
        bar_chart([r["group"] for r in inputs.groups], {"accuracy": [r["accuracy"] for r in inputs.groups]},
                  "Accuracy per source or subset"),
        bar_chart([f"{r['length_diff']} ({r['pairs']})" for r in inputs.length_buckets],
                  {"accuracy": [r["accuracy"] for r in inputs.length_buckets],
                   "longer wins": [r["baseline_longer_wins_accuracy"] for r in inputs.length_buckets]},
                  "Accuracy per length difference, chosen − rejected in characters (pairs)"),
    ]
    return '<div class="plots">' + "".join(charts) + "</div>"


COLUMNS = (("pair", "pair"), ("group", "source / subset"), ("margin", "margin"), ("reward_chosen", "r chosen"),
           ("reward_rejected", "r rejected"), ("prompt", "prompt"), ("chosen", "chosen"), ("rejected", "rejected"))


def _table(wrong: list[dict]) -> str:
    head = "".join(f'<th data-col="{k}" data-num="{int(k in ("pair", "margin", "reward_chosen", "reward_rejected"))}"'
                   f">{escape(label)}</th>" for k, label in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(row[k]))}</td>" for k, _ in COLUMNS) + "</tr>"
                   for row in wrong)
    groups = sorted({row["group"] for row in wrong})
    options = "".join(f"<option>{escape(g)}</option>" for g in groups)
    return (f'<p><label>group <select id="group"><option value="">all</option>{options}</select></label> '
            f'<label>text <input id="text" type="search"></label> <span id="shown"></span></p>'
            f'<table id="wrong"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


STYLE = """body{font:14px sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
#wrong td{white-space:pre-wrap;max-width:28em}#wrong th{cursor:pointer;background:#eee}
.plots{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{font-weight:bold}"""
SCRIPT = """const table=document.getElementById('wrong'),body=table.tBodies[0];
function filter(){const g=document.getElementById('group').value,t=document.getElementById('text').value.toLowerCase();
let n=0;for(const r of body.rows){
const ok=(!g||r.cells[1].textContent===g)&&(!t||r.textContent.toLowerCase().includes(t));
r.style.display=ok?'':'none';n+=ok}
document.getElementById('shown').textContent=n+' of '+body.rows.length+' shown'}
for(const th of table.tHead.rows[0].cells){th.onclick=()=>{const i=th.cellIndex,num=th.dataset.num==='1',
up=th.dataset.dir!=='up';th.dataset.dir=up?'up':'down';const rows=[...body.rows];
rows.sort((a,b)=>{const x=a.cells[i].textContent,y=b.cells[i].textContent;
const c=num?parseFloat(x)-parseFloat(y):x.localeCompare(y);return up?c:-c});rows.forEach(r=>body.appendChild(r))}}
const h=new URLSearchParams(location.hash.slice(1));  // report.html#group=docs&text=rate opens filtered
if(h.has('group'))document.getElementById('group').value=h.get('group');
if(h.has('text'))document.getElementById('text').value=h.get('text');
document.getElementById('group').onchange=filter;document.getElementById('text').oninput=filter;filter();"""


def report_html(metrics: dict, inputs: ReportInputs) -> str:
    data = json.dumps(metrics).replace("</", "<\\/")  # a JSON island: "</script>" must not end it
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Reward model evaluation</title>"
            f"<style>{STYLE}</style></head><body><h1>Reward model evaluation</h1><h2>Headline numbers</h2>"
            f"{_headline(metrics)}<h2>Plots</h2>{_plots(inputs)}"
            f"<h2>Most confidently wrong held-out pairs (top {TOP_WRONG} by margin)</h2>{_table(inputs.wrong)}"
            f"<script type=\"application/json\" id=\"metrics\">{data}</script>"
            f"<script>{SCRIPT}</script></body></html>\n")


def write_report(path: Path, metrics: dict, inputs: ReportInputs) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(report_html(metrics, inputs), encoding="utf-8")
