"""Progress on stderr: a bar on a terminal; in a log (no terminal) a plain line every 30 s, so a
long run shows where it is without flooding short ones."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "", enabled: bool | None = None, heartbeat: float = 30.0):
        self.total, self.label, self.done = max(total, 1), label, 0
        self.tty = sys.stderr.isatty()
        self.enabled = enabled is not False   # False: silent (sweeps inside claims, tests)
        self.heartbeat = heartbeat
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        finished = self.done >= self.total
        frac = self.done / self.total
        eta = (now - self.start) * (1 - frac) / frac if frac else 0.0
        if self.tty and (now - self.last > 0.1 or finished):
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} eta {eta:5.1f}s")
            sys.stderr.write("\n" if finished else "")
        elif not self.tty and now - self.last > self.heartbeat:
            sys.stderr.write(f"{self.label}: {self.done}/{self.total} rounds, {now - self.start:.0f}s elapsed, eta {eta:.0f}s\n")
        else:
            return
        self.last = now
        sys.stderr.flush()
