"""Training precision: float32, or bfloat16 autocast where the hardware computes it natively.

``bf16`` runs the forward pass (convolutions and matrix products) under ``torch.autocast`` in
bfloat16; the weights, their gradients, the optimiser state, the batch-norm statistics, the
loss and every evaluation stay in float32. On a CPU with AVX512-BF16 or AMX that trains the
study's nets 1.4-1.7x faster; without them bfloat16 is emulated and slower than float32, so
``auto`` picks ``bf16`` only where it is native (such a CPU, or a CUDA GPU that supports it).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: what ``auto`` means on ``device``."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The forward pass's context: bfloat16 autocast for ``bf16``, nothing for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def as_float(outputs: Any) -> Any:
    """Model outputs (a tensor or a dict of head outputs) in float32, for the loss."""
    if isinstance(outputs, dict):
        return {k: v.float() for k, v in outputs.items()}
    return outputs.float()
