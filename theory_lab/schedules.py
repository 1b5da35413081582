"""Step-size schedules, indexed by the local step counter t = 0, 1, ..."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "inverse", "inv_sqrt", "cosine")


def step_size(name: str, lr: float, t: int, *, decay_steps: float, total_steps: int) -> float:
    if name == "constant":
        return lr
    if name == "inverse":  # eta_t = lr / (1 + t / t0): the 1/t rate for strongly convex problems
        return lr / (1.0 + t / decay_steps)
    if name == "inv_sqrt":  # eta_t = lr / sqrt(1 + t / t0): the non-convex 1/sqrt(T) regime
        return lr / math.sqrt(1.0 + t / decay_steps)
    if name == "cosine":
        return 0.5 * lr * (1.0 + math.cos(math.pi * min(t, total_steps) / max(total_steps, 1)))
    raise ValueError(f"unknown schedule {name!r}")
