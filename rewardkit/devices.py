"""Device and precision, decided when a stage or the scorer starts (never at import)."""
from __future__ import annotations

import torch

from rewardkit.errors import UserError


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when a GPU is visible, else cpu; otherwise any torch device string (cpu, cuda, cuda:N)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but no CUDA device is visible; use auto or cpu "
                        "(or install the CUDA build of torch)")
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA; fp32 on CPU (bf16 matmuls are far slower than fp32 on CPUs without AMX)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
