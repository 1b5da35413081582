"""The claim registry: each claim is declared once, with its source, regime, metric, predicted
form, tolerance and negative controls, and a check that runs its sweep and returns what it saw.

Every verdict must be able to fail. A claim is confirmed only when its prediction passes, its
coefficient (where exact) passes, every declared negative control is refuted by the same check
with the same budget, and its small parameter is inside the declared limit. A claim that
declares no control cannot be confirmed ("does not discriminate"). `Claim.run` applies that rule
(analysis.verdict.decide); a check only reports the parts.

API (what a claim module writes)
--------------------------------
    @claim("my-floor", statement=..., source=..., metric="subopt floor", predicted=...,
           regime="exact gradients, η ∈ {etas}, E ∈ {Es}",     # formatted with params
           params={"etas": (0.125, 0.25, 0.5), "Es": (2, 3, 5)},  # ONE source: body reads c.params
           tolerance=0.3,                                         # the body judges with c.tolerance
           band=(0.8, 1.25),            # observed/predicted CI must lie inside: adds "coefficient ×2"
           small=Small("ηEL_max", 0.3), # above the limit: "outside regime", never confirmed
           controls=(Control("feddpo", "algorithm", "FedDPO has the effect: its slope must be refuted"),))
    def my_floor(ctx: Context, c: Claim) -> Outcome:
        fit = ...; pred = judge_exponent(fit, 2.0, c.tolerance)
        out = Outcome.from_fit(fit, pred, 2.0, small=eta * E * L)   # the measured small parameter
        out.coefficient_check(c, observed, predicted, seeds)        # ratio + CI, and the ×2 control
        out.control("feddpo", fit_feddpo, judge_exponent(fit_feddpo, 0.0, c.tolerance))
        return out

- `Control(name, kind, what)`: kind is one of CONTROL_KINDS ("algorithm": one with the effect,
  "rival law", "coefficient": a deliberately wrong one, "setting": a configuration where the
  prediction must fail). Declaring `band` adds COEFFICIENT_X2.
- `Outcome.control(name, fit_or_text, verdict)`: the control's fit and the verdict of the SAME
  judge (same tolerance, same band) on it. A declared control never reported counts as "not run".
- `Outcome.coefficient_check(c, observed, predicted, seeds)`: analysis.ratio_fit (geometric mean
  of observed/predicted, CI by the seed bootstrap), judged by analysis.judge_ratio against c.band
  (confirmed only when the whole CI is inside), and the ×2 control (ratio/2, same band).
  exact=True: deterministic ratios, the interval is their range; fit=RatioFit(...) to pass your own.
- `Outcome.small`: the measured value of c.small's parameter (max over the sweep).
- `Claim.run(ctx)` -> Outcome whose `verdict` is the final one (`prediction` keeps the check's).
- A check may still take only `ctx` (legacy); it then gets no Claim but the same final rule.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from analysis import TAIL, FitResult, RatioFit, Verdict, decide, floors_by, judge_ratio, ratio_fit
from theory_lab.results import atomic_write
from theory_lab.runner import RunResult
from theory_lab.sweep import run_sweep

CONTROL_KINDS = ("algorithm", "rival law", "coefficient", "setting")


@dataclass(frozen=True)
class Control:
    """A negative control: where the same check, same budget, must refute the prediction."""
    name: str
    kind: str   # one of CONTROL_KINDS
    what: str   # one sentence: why the prediction must fail there

    def __post_init__(self):
        if self.kind not in CONTROL_KINDS:
            raise ValueError(f"control kind must be one of {CONTROL_KINDS}, got {self.kind!r}")


COEFFICIENT_X2 = Control("coefficient ×2", "coefficient",
                         "the exact prediction multiplied by 2, judged against the same band")


@dataclass(frozen=True)
class Small:
    """The small parameter of a leading-order prediction (e.g. ηEL_max) and its declared limit."""
    name: str
    limit: float


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    source: str
    metric: str
    regime: str
    predicted: str
    tolerance: float
    check: Callable[..., "Outcome"]
    should_hold: bool = True  # --strict fails when a claim that should hold is refuted
    track: str = "synthetic"  # "llm": opt-in (`verify --track llm`), needs the LLM extra and minutes
    params: dict = field(default_factory=dict)        # the numbers the regime text and the body share
    controls: tuple[Control, ...] = ()
    band: tuple[float, float] | None = None           # observed/predicted coefficient band
    small: Small | None = None
    reads: tuple[str, ...] = ()   # the verify options the check reads besides the model and data ("llm_lr")

    def run(self, ctx: "Context") -> "Outcome":
        """Run the check and replace its verdict by the final one (`decide`)."""
        out = self.check(ctx, self) if _takes_claim(self.check) else self.check(ctx)
        out.prediction = out.verdict
        reported = {n: o.verdict for n, o in out.controls.items()}
        small = None if self.small is None or out.small is None else (self.small.name, out.small, self.small.limit)
        out.verdict = decide(out.verdict, coefficient=out.coefficient_verdict, controls=reported,
                             missing=[k.name for k in self.controls if k.name not in reported], small=small)
        return out


def _takes_claim(fn) -> bool:
    return len(inspect.signature(fn).parameters) >= 2


@dataclass
class ControlOutcome:
    """A control under the claim's own check: its fit (as text) and the check's verdict on it."""
    fitted: str
    verdict: Verdict


@dataclass
class Outcome:
    """What a check returns: the headline fit, the prediction's verdict, its coefficient and
    controls, the measured small parameter, and anything else worth reporting."""
    fitted: float
    ci: tuple[float, float]
    verdict: Verdict
    predicted_value: float | None = None
    tightness: float | None = None
    details: dict = field(default_factory=dict)
    figure: str | None = None
    coefficient: RatioFit | None = None
    coefficient_verdict: Verdict | None = None
    controls: dict[str, ControlOutcome] = field(default_factory=dict)
    small: float | None = None
    prediction: Verdict | None = None   # set by Claim.run: the check's own verdict

    @classmethod
    def from_fit(cls, fit: FitResult, verdict: Verdict, predicted: float | None = None, **kw) -> "Outcome":
        return cls(fit.slope, (fit.ci_low, fit.ci_high), verdict, predicted, **kw)

    def control(self, name: str, fit, verdict: Verdict) -> "Outcome":
        """Record control `name`: `fit` is a FitResult, a RatioFit or a text; `verdict` is the
        claim's own judge applied to it (it must say "refuted" for the claim to be confirmed)."""
        self.controls[name] = ControlOutcome(fit_text(fit), verdict)
        return self

    def coefficient_check(self, c: Claim, observed=None, predicted=None, seeds=None, rng=None, *,
                          exact: bool = False, fit: RatioFit | None = None) -> "Outcome":
        """Judge observed/predicted against c.band and record the ×2 coefficient control.

        `exact=True` for deterministic ratios (the interval is their range, see analysis.ratio_fit);
        `fit` to pass a RatioFit built another way (e.g. a t-interval over random draws)."""
        if c.band is None:
            raise ValueError(f"claim {c.id} declares no coefficient band")
        fit = fit or ratio_fit(observed, predicted, seeds, rng=rng, exact=exact)
        self.coefficient, self.coefficient_verdict = fit, judge_ratio(fit, c.band)
        wrong = fit.scaled(2.0)
        return self.control(COEFFICIENT_X2.name, wrong, judge_ratio(wrong, c.band))


def fit_text(fit) -> str:
    """A fit as one short text: slope or ratio with its CI."""
    if isinstance(fit, FitResult):
        return ci_text(fit.slope, (fit.ci_low, fit.ci_high))
    if isinstance(fit, RatioFit):
        return "ratio " + ci_text(fit.ratio, (fit.ci_low, fit.ci_high))
    return str(fit)


REGISTRY: dict[str, Claim] = {}

# The synthetic problem of the floor and consensus claims: floors are measured from the optimum
# (init = "optimum": no transient to wait out); l2 > 0 keeps it well conditioned.
PROBLEM = {"n_clients": 8, "pairs_per_client": 60, "heldout_pairs": 20, "dim": 5, "n_contexts": 10,
           "heterogeneity": 2.0, "dirichlet_alpha": 0.3, "l2": 0.05, "init": "optimum"}


def claim(id: str, *, statement: str, source: str, metric: str, regime: str, predicted: str,
          tolerance: float, should_hold: bool = True, track: str = "synthetic", params: dict | None = None,
          controls: tuple[Control, ...] | list[Control] = (), band: tuple[float, float] | None = None,
          small: Small | None = None, reads: tuple[str, ...] = ()):
    """Register a check. `regime` is formatted with `params` (write literal braces as {{ }}), so
    the numbers the report prints are the ones the body reads from `c.params`; `reads` names the
    Context options the check reads besides the LLM model and data ("llm_lr"), so the report's
    reproduce command sets exactly those."""
    params = dict(params or {})
    controls = tuple(controls) + ((COEFFICIENT_X2,) if band is not None else ())

    def register(fn):
        text = regime.format(**params) if params else regime
        REGISTRY[id] = Claim(id, statement, source, metric, text, predicted, tolerance, fn, should_hold, track,
                             params, controls, band, small, tuple(reads))
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
    runs_dir: str = ""          # finished runs (a run's or a sweep's folder) the LLM claims read, not rerun

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
        import matplotlib   # lazy: the backend must be chosen before pyplot loads, and only when figures are on

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt.subplots(figsize=(4.2, 3.0), layout="constrained")

    def save(self, claim_id: str, fig) -> str | None:
        if fig is None or self.figure_dir is None:
            return None
        import matplotlib.pyplot as plt   # lazy: see figure()

        path = Path(self.figure_dir) / f"{claim_id}.png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))
        plt.close(fig)
        return str(path)


def floors(table, metric: str, tail: float = TAIL):
    """Per (run_id, seed): the stationary level of `metric` (tail mean) and a stationarity flag."""
    return floors_by(table, metric, ["run_id"], tail=tail)


def ci_text(value: float, ci: tuple[float, float]) -> str:
    if not np.isfinite(value):
        return "n/a"
    if not all(np.isfinite(ci)):
        return f"{value:.3g}"
    if abs(value) < 1e-9 * max(abs(ci[0]), abs(ci[1])):
        value = 0.0   # round-off of terms that cancel exactly (e.g. equal counts), not a value
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
