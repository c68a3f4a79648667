"""The trained reward model on disk: `save_pretrained` (safetensors) + tokenizer + reward_model.json, which records
what a consumer needs to score as training did (max length, truncation policy, pooling, reward mean/std)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from rewardkit.errors import UserError
from rewardkit.io import atomic_path, native_os_errors
from rewardkit.modeling.fitting import load_dtype
from rewardkit.modeling.loading import load_hf_classifier
from rewardkit.modeling.model import RewardModel, disable_dropout, score_head

META_FILE = "reward_model.json"
ADAPTER_DIR = "adapter"
"""Where, inside a model directory, a LoRA adapter trained for it is (peft's adapter_config.json and weights): a
subdirectory, since transformers reads an adapter_config.json beside config.json as an adapter to load with peft."""


def save_artifact(model: RewardModel, tokenizer, out_dir: str | Path, meta: dict, adapter: Path | None = None) -> None:
    """Write the model directory atomically, as one directory; `adapter`: a peft adapter directory to put in it
    as ADAPTER_DIR."""
    # native_os_errors: safetensors and tokenizers write in Rust, and report a full disk as their own exceptions
    with atomic_path(out_dir, is_dir=True) as tmp, native_os_errors(out_dir):
        model.hf.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if adapter is not None:
            shutil.copytree(adapter, tmp / ADAPTER_DIR)


def load_artifact(model_dir: str | Path, device: torch.device | None = None) -> tuple[RewardModel, object, dict]:
    """A trained reward model directory -> (RewardModel in eval mode, tokenizer, metadata). A missing or damaged
    directory stops with one line naming the file (`check_model_dir`). `device`: where it will run; when its fp32
    weights do not fit there, it is loaded in bf16, and the user told (`rewardkit.modeling.fitting`)."""
    meta = check_model_dir(Path(model_dir))
    dtype = load_dtype(Path(model_dir), device) if device is not None else None
    try:
        model, tokenizer = load_hf_classifier(str(model_dir), dtype=dtype)
    except (UserError, OSError):
        raise
    except Exception as e:  # the files passed the checks, yet transformers cannot build the model from them
        raise damaged(Path(model_dir), f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    disable_dropout(model)
    if dtype is not None and (head := score_head(model)) is not None:
        head.float()  # the body in bf16, the score head as everywhere in fp32 (rewardkit.modeling.model.FP32Head)
    return RewardModel(model, meta["pooling"]).eval(), tokenizer, meta


def damaged(path: Path, why: str) -> UserError:
    model_dir = path if path.is_dir() else path.parent
    return UserError(f"{path} is damaged ({why}): restore the model with `dvc checkout {model_dir}`, or retrain "
                     "it with `dvc repro train`")


def check_model_dir(model_dir: Path) -> dict:
    """Check a model directory before loading it and return its metadata: it exists, every JSON file in it
    (metadata, config, tokenizer) parses, and every safetensors file is whole (`safetensors_problem`).

    A truncated copy, an interrupted `dvc pull`, a bad merge would otherwise surface as a traceback from deep
    inside safetensors or transformers. (Bytes changed inside the tensor data keep the file's shape and are not
    detected here; DVC's hash of the directory, `dvc status`, tells.)"""
    if not model_dir.is_dir():
        raise UserError(f"model directory {model_dir} not found: train it with `dvc repro train`, or restore it "
                        f"with `dvc checkout {model_dir}`")
    if not (model_dir / META_FILE).is_file():
        raise UserError(f"{model_dir} is not a reward model written by the train stage ({META_FILE} is missing)")
    parsed = {}
    for path in sorted(model_dir.glob("*.json")):
        try:
            parsed[path.name] = json.loads(path.read_bytes())
        except UnicodeDecodeError:
            raise damaged(path, "not UTF-8 text") from None
        except json.JSONDecodeError as e:
            raise damaged(path, f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    meta = parsed[META_FILE]
    if not isinstance(meta, dict) or not {"pooling", "max_length"} <= meta.keys():
        raise damaged(model_dir / META_FILE, "pooling or max_length is missing")
    weights = sorted(model_dir.glob("*.safetensors"))
    if not weights:
        raise damaged(model_dir / "model.safetensors", "the file is missing")
    for path in weights:
        if (why := safetensors_problem(path)) is not None:
            raise damaged(path, why)
    return meta


def safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a whole safetensors file (None when it is): an 8-byte header length, a JSON header, and
    tensor data that ends exactly at the end of the file; then safetensors itself must open it."""
    from safetensors import safe_open

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than a safetensors header"
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return f"its header claims {n} bytes but the file has {size}: truncated"
        try:
            header = json.loads(f.read(n))
            end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "its header is not a safetensors header"
    if 8 + n + end != size:
        return f"{size} bytes where its header describes {8 + n + end}: truncated or overwritten"
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as e:  # safetensors' own error type; its message says what is wrong
        return f"safetensors cannot read it: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None
