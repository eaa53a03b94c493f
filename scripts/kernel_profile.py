"""The GPU kernels a piece of work runs, summed by name: what the benchmark scripts' ``--profile`` records."""

from __future__ import annotations

from typing import Callable

import torch


def kernel_profile(work: Callable[[], None], device: torch.device, runs: int, unit: str, top: int = 15) -> dict:
    """Run ``work`` (``runs`` steps or searches) under torch.profiler, CUDA-graph replays included: per
    ``unit``, how many kernels ran and their summed time, and the ``top`` kernels by time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        work()
        torch.cuda.synchronize(device)
    kernels: dict[str, list[float]] = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels.setdefault(event.name, []).append(event.device_time)  # microseconds
    ranked = sorted(kernels.items(), key=lambda kv: -sum(kv[1]))[:top]
    return {f"{unit}s": runs, f"kernels_per_{unit}": sum(len(t) for t in kernels.values()) / runs,
            f"kernel_ms_per_{unit}": sum(sum(t) for t in kernels.values()) / runs / 1000,
            "top": [{"kernel": name[:120], f"calls_per_{unit}": len(t) / runs, f"ms_per_{unit}": sum(t) / runs / 1000}
                    for name, t in ranked]}
