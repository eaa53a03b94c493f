"""The ``--device`` flag shared by the training and decoding CLIs."""

from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(spec: str | None, local_rank: int = 0) -> torch.device:
    """``--device``: cpu, cuda (this process's GPU under torchrun), cuda:N or N; default CUDA when present."""
    if spec is None:
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if spec.isdigit():
        spec = f"cuda:{spec}"
    elif spec == "cuda":
        spec = f"cuda:{local_rank}"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"--device {spec!r}: expected cpu, cuda, cuda:N or N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {spec}: CUDA is not available here (use --device cpu)")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {spec}: only cpu and cuda are supported")
    return device
