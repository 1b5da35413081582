"""Claims about staleness: FedDPO with bounded random per-client delays, under both server rules
(average the returned models, or apply the averaged deltas to the current model)."""

from __future__ import annotations

import numpy as np

from analysis import judge_exponent, loglog_slope
from analysis.verdict import Verdict
from theory_lab.claims.base import Context, Outcome, claim, floors, plot_fit
from theory_lab.claims.federated import base


def _staleness(ctx: Context, rule: str, claim_id: str) -> Outcome:
    qs = (0, 2, 8) if ctx.quick else (0, 1, 2, 4, 8)
    cfg = base(600 if ctx.quick else 2000, batch_size=2, lr=1.0, stale_rule=rule)
    res = ctx.sweep(cfg, [{"algorithm.q_max": q} for q in qs], min_seeds=16)
    f = floors(res.table, "subopt", 0.6)
    level0 = f[f["run_id"] == 0].set_index("seed")["floor"]
    f = f[f["run_id"] > 0]
    excess = f["floor"].to_numpy() - level0.loc[f["seed"]].to_numpy()
    x = np.asarray([qs[r] for r in f["run_id"]], dtype=float)
    fit = loglog_slope(x, excess, seeds=f["seed"].to_numpy())
    verdict = judge_exponent(fit, 1.0, 0.3)
    if fit.n_dropped:
        verdict = Verdict("refuted" if fit.n_dropped == len(x) else verdict.status,
                          f"{fit.n_dropped} of {len(x)} stale floors are not above the q_max=0 floor; " + verdict.reason)
    levels = f.groupby("run_id")["floor"].mean().to_dict()
    details = {"floor_q0": float(level0.mean()), **{f"floor_q{qs[r]}": v for r, v in levels.items()}}
    return Outcome.from_fit(fit, verdict, 1.0, details=details,
                            figure=plot_fit(ctx, claim_id, fit, x, np.maximum(excess, 1e-30), "q_max", "floor − floor(q=0)"))


@claim("staleness-model-average", statement="FedDPO with delays ≤ q_max: the stationary gap grows linearly in q_max "
       "(server averages the returned models, as the Jiang'26 code does)", source="Jiang'26",
       metric="subopt floor minus the q_max=0 floor", regime="E=1, batch 2, η=1, delays ~ U{0..q_max}, ≥16 replicas",
       predicted="slope 1 in q_max", tolerance=0.3, should_hold=False)
def staleness_model_average(ctx: Context) -> Outcome:
    return _staleness(ctx, "model_average", "staleness-model-average")


@claim("staleness-delta", statement="FedDPO with delays ≤ q_max: the stationary gap grows linearly in q_max "
       "(server applies the averaged deltas to its current model: asynchronous SGD)", source="Jiang'26",
       metric="subopt floor minus the q_max=0 floor", regime="E=1, batch 2, η=1, delays ~ U{0..q_max}, ≥16 replicas",
       predicted="slope 1 in q_max", tolerance=0.3)
def staleness_delta(ctx: Context) -> Outcome:
    return _staleness(ctx, "delta", "staleness-delta")
