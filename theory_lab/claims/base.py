"""The claim registry: each claim is declared once, with its source, regime, metric, predicted
form and tolerance, and a check function that runs its sweep and returns a fitted value with a
confidence interval and a verdict.

    @claim("drift-floor", source=..., metric="subopt floor", regime=..., predicted=..., tolerance=0.3)
    def drift_floor(ctx: Context) -> Outcome: ...
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from analysis import FitResult, Verdict, floors_by
from theory_lab.runner import RunResult
from theory_lab.sweep import run_sweep


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    source: str
    metric: str
    regime: str
    predicted: str
    tolerance: float
    check: Callable[["Context"], "Outcome"]
    should_hold: bool = True  # --strict fails when a claim that should hold is refuted
    track: str = "synthetic"  # "llm": opt-in (`verify --track llm`), needs the LLM extra and minutes


@dataclass
class Outcome:
    """What a check returns: the headline fit, the verdict, and anything else worth reporting."""
    fitted: float
    ci: tuple[float, float]
    verdict: Verdict
    predicted_value: float | None = None
    tightness: float | None = None
    details: dict = field(default_factory=dict)
    figure: str | None = None

    @classmethod
    def from_fit(cls, fit: FitResult, verdict: Verdict, predicted: float | None = None, **kw) -> "Outcome":
        return cls(fit.slope, (fit.ci_low, fit.ci_high), verdict, predicted, **kw)


REGISTRY: dict[str, Claim] = {}


def claim(id: str, *, statement: str, source: str, metric: str, regime: str, predicted: str,
          tolerance: float, should_hold: bool = True, track: str = "synthetic"):
    def register(fn):
        REGISTRY[id] = Claim(id, statement, source, metric, regime, predicted, tolerance, fn, should_hold, track)
        return fn
    return register


@dataclass
class Context:
    """What a check may use: the budget (quick or full, seeds) and a sweep runner."""
    quick: bool = True
    seeds: int = 3
    figure_dir: Path | None = None
    runs: int = 0  # how many single runs the checks launched (for the report)
    llm_model: str = "smollm2"  # the LLM-track claims' model ("tiny" for tests)
    llm_lr: float = 0.01        # their SGD step size (ηEL small: the leading-order regime)
    data_dir: str = ""          # their data directory ("" = llm.config's default)

    def sweep(self, base: dict, variants: list[dict], rounds: int | None = None, min_seeds: int = 0) -> RunResult:
        """Run `base` (a config as a dict) once per variant ({dotted.key: value}), all seeds
        vectorized, and return one tidy table. `min_seeds` raises the replica count for claims
        whose metric is a noisy stationary average (replicas are nearly free: vectorized)."""
        data = copy.deepcopy(base)
        data.setdefault("run", {})["seeds"] = list(range(max(self.seeds, min_seeds)))
        if rounds is not None:
            data["run"]["rounds"] = rounds
        data["sweep"] = {"variants": variants}
        self.runs += len(variants)
        return run_sweep(data, progress=False)

    def figure(self, claim_id: str):
        """A (fig, axes) pair to draw the claim's diagnostic on, or None when figures are off."""
        if self.figure_dir is None:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt.subplots(figsize=(4.2, 3.0), layout="constrained")

    def save(self, claim_id: str, fig) -> str | None:
        if fig is None or self.figure_dir is None:
            return None
        import matplotlib.pyplot as plt

        from theory_lab.results import atomic_write

        path = Path(self.figure_dir) / f"{claim_id}.png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))
        plt.close(fig)
        return str(path)


def floors(table, metric: str, tail: float = 0.25):
    """Per (run_id, seed): the stationary level of `metric` (tail mean) and a stationarity flag."""
    return floors_by(table, metric, ["run_id"], tail=tail)


def ci_text(value: float, ci: tuple[float, float]) -> str:
    if not np.isfinite(value):
        return "n/a"
    if not all(np.isfinite(ci)):
        return f"{value:.3g}"
    return f"{value:.3g} [{ci[0]:.3g}, {ci[1]:.3g}]"


def combine(verdicts: list[Verdict], names: list[str]) -> Verdict:
    """One verdict from several sub-checks: refuted if any is, confirmed only if all are."""
    parts = "; ".join(f"{n}: {v.status} ({v.reason})" for n, v in zip(names, verdicts))
    statuses = {v.status for v in verdicts}
    if "refuted" in statuses:
        return Verdict("refuted", parts)
    return Verdict("confirmed" if statuses == {"confirmed"} else "inconclusive", parts)


def constant_per_seed(result: RunResult, name: str):
    """A function mapping a floors table (run_id, seed) to that run's exact constant `name`."""
    runs = {r["run_id"]: r["constants"][name] for r in result.manifest["runs"]}
    return lambda f: np.asarray([runs[r][s] for r, s in zip(f["run_id"], f["seed"])], dtype=float)


def plot_fit(ctx: Context, claim_id: str, fit: FitResult, x, y, x_name: str, y_name: str) -> str | None:
    """The diagnostic figure of a log-log claim: per-seed points and the fitted power law."""
    made = ctx.figure(claim_id)
    if made is None:
        return None
    fig, ax = made
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    ax.loglog(x[ok], y[ok], "o", ms=4, mfc="none", color="0.2", label="runs (one point per seed)")
    if np.isfinite(fit.slope) and ok.any():
        grid = np.geomspace(x[ok].min(), x[ok].max(), 50)
        ax.loglog(grid, np.exp(fit.intercept) * grid**fit.slope, "-", color="0.45",
                  label=f"fit: slope {ci_text(fit.slope, (fit.ci_low, fit.ci_high))}")
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(claim_id, fontsize=9)
    ax.legend(fontsize=7)
    return ctx.save(claim_id, fig)


def within_seed(x, y, seeds):
    """Divide x and y by their geometric means within each seed (a fixed-effects log-log fit).

    Each seed is a different random problem, so its constants set a different prefactor; the
    claims are about exponents, which this keeps while removing the per-seed prefactor.
    Non-positive values are left for the fit to drop and count."""
    x, y, seeds = np.asarray(x, float), np.asarray(y, float), np.asarray(seeds)
    xo, yo = x.copy(), y.copy()
    for s in np.unique(seeds):
        m = (seeds == s) & (x > 0) & (y > 0)
        if m.any():
            xo[seeds == s] = x[seeds == s] / np.exp(np.log(x[m]).mean())
            yo[seeds == s] = y[seeds == s] / np.exp(np.log(y[m]).mean())
    return xo, yo
