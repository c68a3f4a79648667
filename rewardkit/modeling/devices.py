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
    """bf16 autocast on CUDA GPUs that have bf16 (Ampere and later; older ones run fp32 with TF32 where they can);
    fp32 on CPU (bf16 matmuls are far slower than fp32 on CPUs without AMX)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.cuda.is_bf16_supported())
    return torch.autocast("cpu", enabled=False)


def enable_tf32(device: torch.device) -> None:
    """On CUDA, let the fp32 matmuls outside autocast use TF32 tensor cores (the newer torch API when it exists)."""
    if device.type != "cuda":
        return
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "fp32_precision"):
        matmul.fp32_precision = conv.fp32_precision = "tf32"
    else:
        matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device` without stalling the host: on CUDA through pinned memory with a non-blocking copy
    (a plain `.to("cuda")` of pageable memory synchronises the stream); elsewhere `.to(device)`. The caching host
    allocator keeps the pinned buffer until the copy is done, so the caller may drop it at once."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
