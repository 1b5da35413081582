"""A one-line progress bar on stderr (only on a terminal, so logs and CI stay clean)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "", enabled: bool | None = None):
        self.total, self.label, self.done = max(total, 1), label, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self.last > 0.1 or self.done >= self.total):
            self.last = now
            frac = self.done / self.total
            bar = "#" * int(30 * frac)
            eta = (now - self.start) * (1 - frac) / frac if frac else 0.0
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} eta {eta:5.1f}s")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
