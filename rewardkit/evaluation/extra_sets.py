"""Extra evaluation sets (`evaluate.extra_sets: {name: path}` or `{name: {path: ..., scoring: ...}}`): benchmark or
regression files the user trusts, in any format the validate stage accepts (rows with lists of answers included),
validated the same way and tokenized with the trained model's own tokenizer, truncation policy and rendering, into
a directory of their own: <out>/<name>/ (validated.jsonl with every row tagged by its source row and answers,
rejects.jsonl, validate.json, the token store, and scores.jsonl: see `rewardkit.evaluation.answer_scores`)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from rewardkit.config import ValidateConfig
from rewardkit.data.formats import PLAIN, renderer_for
from rewardkit.data.readers import data_files
from rewardkit.data.validation import ValidateOutputs, validate_files
from rewardkit.encoding.families import input_template
from rewardkit.encoding.store import TokenStore
from rewardkit.encoding.tokenization import store_meta, tokenize_split
from rewardkit.errors import UserError
from rewardkit.evaluation.benchmarks import SCORINGS

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
AUTO = "auto"


@dataclass(frozen=True)
class ExtraSet:
    path: Path
    scoring: str
    """rmbench | rewardbench2 | pairs, or auto: detected from the rows' shape."""


def check_extra_sets(extra_sets: dict, extra_dir: Path) -> dict[str, ExtraSet]:
    """{name: set}: names usable as directory and metric names, files that exist under `extra_dir` (the directory
    dvc.yaml tracks for the evaluate stage), known scoring rules."""
    if not isinstance(extra_sets, dict):
        raise UserError(f"evaluate.extra_sets must be a mapping of name: path, got {extra_sets!r}")
    out = {}
    for name, value in extra_sets.items():
        spec = value if isinstance(value, dict) else {"path": value}
        path, scoring = spec.get("path"), spec.get("scoring", AUTO)
        if not isinstance(name, str) or not NAME.match(name) or not isinstance(path, str) or set(spec) - {
                "path", "scoring"}:
            raise UserError(f"evaluate.extra_sets: {name!r}: {value!r}: names are letters, digits, '_', '.', '-' "
                            "and each value is a path or {path: ..., scoring: ...}")
        if scoring not in (AUTO, *SCORINGS):
            raise UserError(f"evaluate.extra_sets.{name}.scoring: {scoring!r} is not one of {AUTO}, "
                            f"{', '.join(SCORINGS)}")
        if not Path(path).is_file():
            raise UserError(f"evaluate.extra_sets.{name}: file not found: {path} (one .jsonl, .jsonl.gz, .json or "
                            ".parquet file)")
        out[name] = ExtraSet(data_files(path, str(extra_dir))[0], scoring)
    return out


def prepare_extra_set(name: str, source: Path, out_dir: Path, model, tokenizer, meta: dict,
                      validate_cfg: ValidateConfig, use_margin: bool = True) -> tuple[TokenStore, dict]:
    """Validate and tokenize one extra set; returns its store (margins as train.use_margin says, as training reads
    them) and its validation metrics."""
    set_dir = out_dir / name
    outputs = ValidateOutputs(set_dir / "validated.jsonl", set_dir / "rejects.jsonl", set_dir / "validate.json")
    try:
        checked = validate_files([source], outputs, validate_cfg, tag_rows=True)
    except UserError as e:
        if not outputs.metrics.exists():  # the file itself is unreadable: the message says why
            raise UserError(f"evaluate.extra_sets.{name}: {e}") from None
        counts = json.loads(outputs.metrics.read_text(encoding="utf-8"))
        reasons = ", ".join(f"{k} {v}" for k, v in counts["rejected_by_reason"].items() if v)
        raise UserError(f"evaluate.extra_sets.{name}: {counts['rejected']} of {counts['lines_read']} rows of "
                        f"{source} rejected ({reasons}), above validate.max_reject_fraction "
                        f"{validate_cfg.max_reject_fraction}: fix the file (`python -m stages.validate` shows each "
                        "row's reason) or raise the threshold") from None
    template = input_template(model.hf.config, tokenizer)
    renderer = renderer_for(meta.get("rendering"), tokenizer)
    made = store_meta(meta["base_model"], meta["max_length"], template, meta.get("rendering", PLAIN),
                      meta.get("tokenizer_sha256"))
    tokenize_split(outputs.validated, set_dir / "tokens", tokenizer, template, meta["max_length"], renderer,
                   keep_identical=True, meta=made)
    validation = {k: checked[k] for k in ("lines_read", "kept", "rejected", "format", "pairs", "multi_answer_rows")
                  if k in checked}
    validation["rejected_by_reason"] = {k: v for k, v in checked["rejected_by_reason"].items() if v}
    return TokenStore(set_dir / "tokens", segment_ids=template.segment_ids, use_margin=use_margin), validation
