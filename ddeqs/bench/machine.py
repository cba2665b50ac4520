"""The machine a figure was measured on: CPU model name (as ``lscpu`` prints it) and torch threads;
:func:`sync` before reading a clock."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else :func:`platform.processor`, else ``'unknown CPU'``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA); a no-op on CPU. Timers read the clock after it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
