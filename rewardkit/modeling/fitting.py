"""Loading a trained model on a device with too little memory for its fp32 weights: in bf16 instead, said in one
line (evaluate, score and serve load through `rewardkit.modeling.artifact.load_artifact`). Halving the weights is
what lets an 8B reward model trained with FSDP over several GPUs be scored on one; its rewards then differ from
the fp32 ones by bf16 rounding (about three significant digits)."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from rewardkit.errors import UserError

HEADROOM = 0.8  # of the free memory, for the weights: activations, workspaces and the allocator need the rest
GB = 1e9


def weight_bytes(model_dir: Path) -> int:
    """Bytes of the model's weights as saved (the safetensors files; the train stage saves fp32)."""
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))


def free_bytes(device: torch.device) -> int:
    """Memory free for the weights: the GPU's free memory, or the RAM available on the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


def bf16_supported(device: torch.device) -> bool:
    return device.type != "cuda" or torch.cuda.is_bf16_supported()


def load_dtype(model_dir: Path, device: torch.device) -> torch.dtype | None:
    """None (as saved) when the weights fit HEADROOM of `device`'s free memory; bf16 when only half of them do,
    said on stderr; a model too big even then stops with one line."""
    need, free = weight_bytes(model_dir), free_bytes(device)
    if need <= HEADROOM * free:
        return None
    if need / 2 <= HEADROOM * free and bf16_supported(device):
        print(f"model: {model_dir}'s {need / GB:.1f} GB of fp32 weights do not fit the {free / GB:.1f} GB free on "
              f"{device}; loading it in bf16 ({need / 2 / GB:.1f} GB): rewards differ from fp32 by bf16 rounding",
              file=sys.stderr)
        return torch.bfloat16
    raise UserError(f"{model_dir} needs {need / 2 / GB:.1f} GB even in bf16 but {device} has {free / GB:.1f} GB "
                    "free: score it on a device with more memory (a GPU with bf16, or the CPU)")
