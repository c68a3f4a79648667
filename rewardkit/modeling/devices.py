"""Device and precision, decided when a stage or the scorer starts (never at import). The decisions that depend on
the kind of device (CUDA or CPU) are made here, so they can be reviewed at once."""
from __future__ import annotations

from contextlib import nullcontext

import torch

from rewardkit.config import PRECISIONS
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


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively, so bf16 matmuls beat fp32 ones. CUDA: compute capability >= 8.0
    (Ampere and later; V100 and T4 only emulate bf16, though `torch.cuda.is_bf16_supported()` says True there).
    CPU: AVX512-BF16 or AMX tiles, as torch's CPU feature checks report them (AVX512 alone emulates bf16)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return any(cpu_bf16_features().values())
    return False


def cpu_bf16_features() -> dict[str, bool]:
    """torch's own checks of this CPU's native bf16 paths: {"avx512_bf16": ..., "amx_tile": ...} (oneDNN runs bf16
    matmuls on AMX tiles where present, else on AVX512-BF16 dot products). The checks are private in torch.cpu, so
    each is looked up with a default (False) for a torch that lacks it."""
    checks = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported"}
    return {feature: bool(getattr(torch.cpu, name, lambda: False)()) for feature, name in checks.items()}


def resolve_precision(precision: str, device: torch.device) -> str:
    """"fp32" or "bf16": auto -> bf16 autocast where `device` has native bf16, else fp32; fp32 and bf16 as asked.
    Under bf16 the weights, optimizer state, score head, loss and rewards stay fp32."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context of a forward at `precision` (auto is resolved): bf16 autocast, or autocast off (fp32,
    also when an outer autocast is on)."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return no_autocast(device)


def no_autocast(device: torch.device):
    """Autocast off for `device`'s kind: what runs inside computes in its inputs' dtype (the score head, in fp32)."""
    return torch.autocast(device.type, enabled=False) if device.type in ("cuda", "cpu") else nullcontext()


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is the process running out of memory (CUDA's, or the CPU allocator's), not bad data."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


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
