"""Peak memory of a block of work: CUDA allocator peak on GPU, resident-set high-water mark on CPU.

CPU: PyTorch has no allocator statistics for host memory, so the resident set of the process is
measured instead: Linux's ``/proc/self/clear_refs`` (write ``5``) resets the high-water mark
``VmHWM``, and the peak of the block is ``VmHWM`` after it minus ``VmRSS`` before it. Elsewhere
(no procfs) the figure is unavailable (None). Run each measured configuration in a fresh process
(:func:`ddeqs.bench.step.run_step_bench` with ``isolate=True``) so that memory kept by the
allocator from an earlier configuration does not hide the next one's growth.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


class PeakMemory:
    """``with PeakMemory(device) as pm: ...``; then ``pm.mib`` (float MiB or None) and ``pm.kind``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda peak allocated" if device.type == "cuda" else "cpu peak RSS above baseline"
        self.mib: float | None = None
        self._base: int | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                _CLEAR.write_text("5")  # reset VmHWM to the current RSS
                self._base = _status_kib("VmRSS")
            except OSError:
                self._base = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._base is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            hwm = _status_kib("VmHWM")
            self.mib = None if hwm is None else max(0, hwm - self._base) / 1024
