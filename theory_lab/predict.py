"""Predictions from constants (issue 9): for each candidate configuration, the stationary floor and
the rounds, local steps and bytes to reach a target suboptimality epsilon, as a ranked table; and,
after a run, the observed curve set against the prediction.

Model (docs/theory.md, "Estimated constants and predictions"), per replica:

* floor = the exact leading-order floors of `theory_lab.bounds` for the candidate's algorithm:
  noise (sigma2/b), participation (S < N), client drift (exact v^T H^-1 v from the client Hessians
  at theta*; Hessian products by finite differences where no closed form exists; the L_max zeta2
  bound if that fails), DecDPO's consensus-induced drift (the same derivation with gossip, from the
  topology's W), staleness (`staleness_floor`, acting on noise + participation; the delta rule with
  L* in place of tr(H C)/tr(C), an upper bound).
* transient: the averaged model contracts per round by rho = max_{h in {mu, L*}} |c(h)|, with c(h)
  the round's factor on a curvature-h direction (SGD: 1 - eta h; E local steps with server step
  eta_g: 1 - eta_g (1 - (1 - eta h)^E); DecDPO: (1 - eta h)^tau; model-averaging staleness:
  c^(1/(1 + q_bar))), L* the largest Hessian eigenvalue at the optimum; the suboptimality is then
      e(R) = floor + (F0 - floor) rho^(2R)
  (squared: suboptimality is quadratic in the distance), and rounds to eps is the smallest R with
  e(R) <= eps: inf when eps <= floor or rho >= 1.
* bytes per round: the count the algorithms report (FedDPO 2 S P itemsize; SCAFFOLD x2; DecDPO
  messages P itemsize; gradient tracking x2; centralized 0).

Constants are the exact synthetic ones (`oracle.constants`, closed-form Hessians) or estimated
on any oracle by `theory_lab.estimate`.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import tomllib
import typing
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from analysis import TAIL, floors_by
from theory_lab import bounds
from theory_lab.config import ExperimentConfig, build_config, read_toml, to_dict, toml_value
from theory_lab.curvature import HessianOps, largest_eig
from theory_lab.errors import ConfigError, LabError
from theory_lab.estimate import NAMES, Estimates, comparison, estimate_constants, exact_values
from theory_lab.results import atomic_write_text, read_results
from theory_lab.runner import make_oracle
from theory_lab.sweep import grid_points
from theory_lab.topology import make_topology

DECAY_POWER = 2  # e(R) - floor ∝ rho^(DECAY_POWER R): suboptimality is quadratic in the distance


# --------------------------------------------------------------------------------- constants

@dataclass
class Model:
    """Everything a prediction needs about one problem (all arrays per replica)."""

    source: str                  # "exact" or "estimated"
    L: np.ndarray                # [S] global smoothness (divergence check)
    L_opt: np.ndarray            # [S] largest Hessian eigenvalue at the optimum
    mu: np.ndarray               # [S]
    sigma2_clients: np.ndarray   # [S, N]
    zeta2: np.ndarray            # [S]
    F0: np.ndarray               # [S]
    weights: np.ndarray          # [S, N]
    G: torch.Tensor              # [S, N, P] client gradients at the optimum
    ops: HessianOps              # Hessian products at the optimum
    dim: int
    itemsize: int
    estimates: Estimates | None = None

    @property
    def n_seeds(self) -> int:
        return self.weights.shape[0]


def _np(x) -> np.ndarray:
    return x.detach().double().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=float)


def build_model(oracle, source: str = "auto", batch_size: int = 8, **estimate_kw) -> Model:
    """Constants of `oracle` for predictions: source 'exact' (synthetic), 'estimated' (any oracle,
    `theory_lab.estimate.estimate_constants(**estimate_kw)`), or 'auto' (exact when known)."""
    if source not in ("auto", "exact", "estimated"):
        raise ConfigError("--source", f"must be auto, exact or estimated, got {source!r}")
    c = getattr(oracle, "constants", None)
    if source == "exact" and c is None:
        raise ConfigError("--source", "exact constants exist only on the synthetic track; use 'estimated'")
    itemsize = torch.empty((), dtype=oracle.dtype).element_size()
    w = _np(oracle.weights)
    if c is not None and source != "estimated":
        theta = c.theta_star
        ops = HessianOps(oracle, theta, exact=None)
        X = theta.unsqueeze(1).expand(-1, oracle.n_clients, -1).contiguous()
        G = oracle.grad(X, None, None)
        if ops.exact:
            L_opt = torch.linalg.eigvalsh(ops.Hbar)[:, -1]
        else:
            L_opt = largest_eig(ops, torch.Generator().manual_seed(0))[0]
        return Model("exact", _np(c.L), _np(L_opt), _np(c.mu).clip(min=0.0), _np(c.sigma2_clients),
                     _np(c.zeta2), _np(c.F0), w, G, ops, oracle.dim, itemsize)
    est = estimate_constants(oracle, batch_size=batch_size, **estimate_kw)
    ops = HessianOps(oracle, est.theta, estimate_kw.get("fd_eps"), estimate_kw.get("exact_hessian", False))
    return Model("estimated", est.L.value, est.L_opt.value, est.mu.value, est.sigma2_clients,
                 est.zeta2.value, est.F0.value, w, est.client_grads, ops, oracle.dim, itemsize, est)


# --------------------------------------------------------------------------------- floors

def _drift_quadratic(model: Model, U: torch.Tensor, eta: float):
    """eta^2/2 a^T Hbar^-1 a with a = sum_i w_i H_i u_i, U [S, N, P]: the suboptimality of the
    fixed point theta* + eta Hbar^-1 a. Returns ([S] values, ok [S])."""
    if float(U.abs().max()) == 0.0:
        return np.zeros(model.n_seeds), np.ones(model.n_seeds, bool)
    a = weighted_rows(model.weights, model.ops.client_hvp(U))
    u, res = model.ops.solve(a)
    q = _np((a * u).sum(-1))
    ok = (_np(res) <= 1e-6 * _np(a.norm(dim=-1))) & (q >= 0) & (model.mu > 0)
    return eta**2 / 2.0 * q, ok


def weighted_rows(w: np.ndarray, T: torch.Tensor) -> torch.Tensor:
    return torch.einsum("sk,skp->sp", torch.as_tensor(w, dtype=T.dtype), T)


def fed_drift(model: Model, eta: float, E: int) -> tuple[np.ndarray, str]:
    """FedDPO drift floor eta^2 (E-1)^2/8 v^T Hbar^-1 v (bounds.drift_floor_exact)."""
    if E <= 1:
        return np.zeros(model.n_seeds), ""
    if model.ops.exact:
        H, G = model.ops.H.numpy(), model.G.numpy()
        return np.array([bounds.drift_floor_exact(eta, E, H[s], G[s], model.weights[s])
                         for s in range(model.n_seeds)], dtype=float), ""
    val, ok = _drift_quadratic(model, (E - 1) / 2.0 * model.G, eta)
    if ok.all():
        return val, ""
    bound = np.asarray(bounds.drift_floor(eta, E, model.zeta2, model.L), dtype=float)
    return np.where(ok, val, bound), "drift: L*zeta2 bound (Hessian solve failed)"


def dec_drift(model: Model, eta: float, tau: int, W: np.ndarray) -> np.ndarray:
    """DecDPO's fixed-point bias (docs/theory.md, "Estimated constants and predictions"): with
    g~_i = N w_i g_i and M = sum_{k>=2} lambda_k/(1 - lambda_k) v_k v_k^T,
        u_i = (tau - 1)/2 g~_i + tau (M G~)_i,   a = sum_i w_i H_i u_i,   subopt = eta^2/2 a^T Hbar^-1 a."""
    lam, V = np.linalg.eigh(W)
    N = W.shape[0]
    keep = np.ones(N, bool)
    keep[np.argmin(np.abs(lam - 1.0))] = False              # the consensus direction
    if np.any(np.abs(1.0 - lam[keep]) < 1e-10):
        return np.full(model.n_seeds, np.inf)               # disconnected
    M = (V[:, keep] * (lam[keep] / (1.0 - lam[keep]))) @ V[:, keep].T
    Gt = model.G * torch.as_tensor(N * model.weights, dtype=model.G.dtype)[..., None]
    U = (tau - 1) / 2.0 * Gt + tau * torch.einsum("ij,sjp->sip", torch.as_tensor(M, dtype=Gt.dtype), Gt)
    val, ok = _drift_quadratic(model, U, eta)
    return np.where(ok, val, np.nan)


def noise_trace(model: Model, b: int, participants: int) -> np.ndarray:
    """[S] trace of the averaged gradient noise per local step: sum_i w_i^2 sigma_i^2 / b over all N
    clients, times N/S for S sampled participants (uniform weights)."""
    if b == 0:
        return np.zeros(model.n_seeds)
    N = model.weights.shape[1]
    return (model.weights**2 * model.sigma2_clients).sum(-1) / b * N / participants


# --------------------------------------------------------------------------------- one candidate

# the algorithms this module has a model for (a registered plug-in gets one clear line instead)
PREDICTABLE = ("centralized", "feddpo", "fedprox", "scaffold", "decdpo", "gradient_tracking")


def predict_config(cfg: ExperimentConfig, model: Model, topology=None) -> dict:
    """Per-replica floor, per-round contraction and bytes of one configuration."""
    a, N = cfg.algorithm, cfg.n_clients
    if a.name not in PREDICTABLE:
        raise ConfigError("algorithm.name", f"no prediction model for {a.name!r} (predict models "
                          f"{', '.join(PREDICTABLE)}); run it and compare with `theory-lab verify --results`")
    eta, eta_g, E, b = a.lr, a.server_lr, a.local_steps, a.batch_size
    S = a.participation or N
    zero = np.zeros(model.n_seeds)
    notes = []
    terms = {"noise": zero, "participation": zero, "drift": zero, "consensus": np.full(model.n_seeds, np.nan)}
    if a.optimizer != "sgd" or a.momentum or a.schedule != "constant":
        notes.append("model assumes constant-step plain SGD")
    if a.name == "fedprox":
        notes.append("proximal term not modelled")
    if a.server_opt != "sgd":
        notes.append(f"server optimizer {a.server_opt} not modelled (its fixed point is FedAvg's; its speed differs)")
    copies = 1
    if a.state_policy == "average":
        copies += (2 if a.optimizer == "adamw" else int(a.momentum > 0))
    P, isz = model.dim, model.itemsize

    def factor(h):
        return np.abs(1.0 - eta * h)

    if a.name == "centralized":
        terms["noise"] = bounds.sgd_noise_floor(eta, noise_trace(model, b, N) / max(E, 1)) * np.ones(model.n_seeds)
        steps, per_round = 1, 0
    elif a.name in ("feddpo", "fedprox", "scaffold"):
        gamma = eta * eta_g
        terms["noise"] = np.asarray(bounds.sgd_noise_floor(gamma, noise_trace(model, b, S)), dtype=float)
        if a.name != "scaffold":
            if S < N:
                terms["participation"] = np.asarray(
                    bounds.participation_floor(eta, S, N, model.zeta2, E=E, eta_g=eta_g), dtype=float)
            terms["drift"], note = fed_drift(model, eta, E)
            if note:
                notes.append(note)

        def factor(h):  # noqa: F811
            return np.abs(1.0 - eta_g * (1.0 - (1.0 - eta * h) ** E))
        steps = E
        per_round = 2 * S * P * isz * copies * (2 if a.name == "scaffold" else 1)
    else:  # decdpo, gradient_tracking
        terms["noise"] = np.asarray(bounds.sgd_noise_floor(eta, noise_trace(model, b, N)), dtype=float)
        W = topology.W(0)
        symmetric = topology.period == 1 and np.allclose(W, W.T, atol=1e-12)
        period = topology.period
        messages = sum(topology.messages_per_round(t) for t in range(period)) / period
        if a.name == "decdpo":
            if symmetric:
                terms["drift"] = dec_drift(model, eta, E, W)
                Gt = _np(model.G) * (N * model.weights)[..., None]
                traces = (N * model.weights) ** 2 * model.sigma2_clients / b if b else None
                terms["consensus"] = np.array([
                    bounds.spectral_consensus(eta, W, Gt[s], tau=E, noise_traces=None if traces is None else traces[s])
                    for s in range(model.n_seeds)], dtype=float)
            else:
                terms["drift"] = np.full(model.n_seeds, np.nan)
                notes.append("time-varying or non-symmetric W: consensus drift not modelled")

            def factor(h):  # noqa: F811
                return np.abs(1.0 - eta * h) ** E
            steps, per_round = E, messages * P * isz * copies
        else:
            terms["consensus"] = np.zeros(model.n_seeds) if b == 0 else np.full(model.n_seeds, np.nan)
            steps, per_round = 1, messages * P * isz * 2
    c = terms["consensus"]
    scale = eta**2 * steps**2 * (model.zeta2 + noise_trace(model, b, N) * N)
    terms["consensus"] = np.where(np.abs(c) <= 1e-12 * scale, 0.0, c)   # round-off: exactly 0
    base = terms["noise"] + terms["participation"]
    if a.q_max > 0:
        # delta rule: L* stands in for tr(H C)/tr(C) (no noise covariance here): an upper bound
        sum_w2 = 1.0 / S if S < N else (model.weights**2).sum(-1)
        stale = np.asarray(bounds.staleness_floor(eta, a.q_max, base, model.L_opt, E=E, eta_g=eta_g,
                                                  rule=a.stale_rule, delay=a.delay, sum_w2=np.mean(sum_w2)),
                           dtype=float)
        terms["staleness"] = stale - base
        base = stale
        if a.stale_rule == "delta":
            limit = np.asarray(bounds.delayed_step_limit(model.L_opt, a.q_max), dtype=float)
            if np.any(eta * eta_g * E >= limit):
                notes.append("eta eta_g E above the delayed-step stability limit")
    floor = terms["drift"] + base
    floor = np.where(np.abs(floor) <= 1e-14 * np.abs(model.F0), 0.0, floor)  # round-off: exactly 0
    rho = np.maximum(factor(model.mu), factor(model.L_opt))
    if a.q_max > 0 and a.stale_rule == "model_average":
        rho = rho ** (1.0 / (1.0 + float(bounds.mean_delay(a.q_max, a.delay))))
    if np.any(eta * model.L >= 2.0):
        notes.append(f"lr >= 2/L = {2.0 / float(model.L.max()):.3g}: may diverge from theta_0")
    floor = np.where(rho >= 1.0, np.inf, floor)           # unstable at the optimum: diverges
    if np.any(model.mu <= 0):
        notes.append("mu <= 0: no contraction model, rounds to eps not predicted")
        rho = np.where(model.mu <= 0, np.nan, rho)
    # leading order in eta: say when the expansion parameter is not small
    x = eta * eta_g * steps * float(np.max(model.L_opt))
    if a.name == "decdpo" and topology is not None and "consensus drift" not in " ".join(notes):
        lam = np.sort(np.linalg.eigvalsh(topology.W(0)))
        x = eta * steps * float(np.max(model.L_opt)) / max(1.0 - lam[-2], 1e-12) if len(lam) > 1 else x
    if x > 0.2 and (np.any(terms["drift"] > 0) or a.name == "decdpo"):
        notes.append(f"expansion parameter {x:.2g} not << 1: leading-order floors likely overestimate")
    return {"floor": floor, "terms": terms, "rho": rho, "steps_per_round": steps,
            "bytes_per_round": float(per_round), "notes": notes}


def rounds_to_eps(eps: float, floor: np.ndarray, F0: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Smallest R >= 0 with floor + (F0 - floor) rho^(2R) <= eps, per replica (inf if unreachable)."""
    floor, F0, rho = (np.asarray(x, dtype=float) for x in (floor, F0, rho))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log((eps - floor) / (F0 - floor)) / (DECAY_POWER * np.log(rho))
    r = np.ceil(np.maximum(np.nan_to_num(r, nan=np.inf) - 1e-9, 0.0))
    r = np.where(F0 <= eps, 0.0, r)
    r = np.where((eps <= floor) | (rho >= 1.0) | ~np.isfinite(floor), np.inf, r)
    return np.where(np.isnan(rho), np.nan, r)


def _mean_rounds(R: np.ndarray) -> float:
    """Mean over replicas; nan if any is unpredicted, inf if any cannot reach eps."""
    if np.any(np.isnan(R)):
        return math.nan
    return float(np.mean(R)) if np.all(np.isfinite(R)) else math.inf


# --------------------------------------------------------------------------------- candidates

def _known_key(path: list[str]) -> bool:
    node: typing.Any = ExperimentConfig
    for part in path:
        if not (dataclasses.is_dataclass(node) and part in {f.name for f in dataclasses.fields(node)}):
            return False
        node = typing.get_type_hints(node)[part]
    return not dataclasses.is_dataclass(node)


def parse_candidates(specs: list[str]) -> list[dict]:
    """["algorithm.local_steps=1,3,6", "topology.name=ring,path"] -> the cartesian product as
    [{dotted.key: value}]; each value is read as TOML, else as a plain string."""
    axes = []
    for spec in specs:
        if "=" not in spec:
            raise ConfigError("--candidates", f"expected key=v1,v2,..., got {spec!r}")
        key, raw = (s.strip() for s in spec.split("=", 1))
        if not _known_key(key.split(".")):
            raise ConfigError("--candidates", f"unknown config key {key!r} (e.g. algorithm.local_steps, "
                              "algorithm.participation, algorithm.q_max, algorithm.name, topology.name)")
        values = []
        for text in (t.strip() for t in raw.split(",")):
            if not text:
                raise ConfigError("--candidates", f"empty value in {spec!r}")
            try:
                values.append(tomllib.loads(f"v = {text}")["v"])
            except tomllib.TOMLDecodeError:
                values.append(text)
        axes.append([(key, v) for v in values])
    return [dict(combo) for combo in itertools.product(*axes)]


def _label(point: dict) -> str:
    """{"algorithm.local_steps": 3, "topology.name": "ring"} -> "local_steps=3 topology=ring"."""
    def short(key):
        parts = key.split(".")
        return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]
    return " ".join(f"{short(k)}={v}" for k, v in point.items()) or "(config)"


def _problem_key(cfg: ExperimentConfig) -> str:
    data = to_dict(cfg)
    return json.dumps({"track": cfg.track, "seeds": cfg.run.seeds,
                       "data": data["problem"] if cfg.track == "synthetic" else data["llm"]}, sort_keys=True)


def _oracle(cfg: ExperimentConfig):
    return make_oracle(cfg)


def predict(data: dict, overrides: list[str] = (), candidates: list[dict] | None = None,
            eps: float | None = None, source: str = "auto", models: dict | None = None,
            **estimate_kw) -> pd.DataFrame:
    """The ranked prediction table for the candidates (a list of {dotted.key: value}; default: the
    config's [sweep] points, or the config itself). One row per candidate, values averaged over
    replicas (rounds: inf if any replica cannot reach eps). eps defaults to
    max(1e-2 * mean F0, 2 * the largest finite predicted floor)."""
    if eps is not None and not eps > 0:
        raise ConfigError("--eps", f"must be > 0, got {eps}")
    if candidates is None:
        candidates = grid_points(data) if data.get("sweep") else [{}]
    models = {} if models is None else models
    rows = []
    for point in candidates:
        cfg = build_config(data, [*(f"{k}={toml_value(v)}" for k, v in point.items()), *overrides])
        key = _problem_key(cfg)
        if key not in models:
            b = cfg.algorithm.batch_size or 8
            models[key] = build_model(_oracle(cfg), source, batch_size=b, **estimate_kw)
        model = models[key]
        topo = make_topology(cfg.topology, cfg.n_clients) if cfg.algorithm.decentralized else None
        pred = predict_config(cfg, model, topo)
        rows.append((point, cfg, model, topo, pred))
    if eps is None:
        finite = [float(np.mean(p["floor"])) for *_, p in rows if np.all(np.isfinite(p["floor"]))]
        F0 = float(np.mean([np.mean(m.F0) for _, _, m, _, _ in rows]))
        eps = max(1e-2 * F0, 2.0 * max(finite, default=0.0))
    table = []
    for point, cfg, model, topo, pred in rows:
        a = cfg.algorithm
        R = rounds_to_eps(eps, pred["floor"], model.F0, pred["rho"])
        R_mean = _mean_rounds(R)
        t = pred["terms"]
        table.append({
            "candidate": _label(point), "algorithm": a.name, "E": a.local_steps, "S": a.participation or cfg.n_clients,
            "q_max": a.q_max, "topology": topo.name if topo else "server" if a.name != "centralized" else "none",
            "lr": a.lr, "batch_size": a.batch_size, "floor": float(np.mean(pred["floor"])),
            "floor_noise": float(np.mean(t["noise"])), "floor_participation": float(np.mean(t["participation"])),
            "floor_drift": float(np.mean(t["drift"])), "floor_staleness": float(np.mean(t.get("staleness", 0.0))),
            "consensus": float(np.mean(t["consensus"])), "rho_round": float(np.mean(pred["rho"])),
            "eps": eps, "rounds_to_eps": R_mean, "local_steps_to_eps": R_mean * pred["steps_per_round"],
            "bytes_per_round": pred["bytes_per_round"],
            "bytes_to_eps": R_mean * pred["bytes_per_round"] if pred["bytes_per_round"] else
            (0.0 if math.isfinite(R_mean) else R_mean),
            "constants": model.source, "notes": "; ".join(pred["notes"]),
        })
    df = pd.DataFrame(table)
    df = df.sort_values(["rounds_to_eps", "bytes_to_eps", "floor"], kind="stable", na_position="last")
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------------- after a run

_TABLE_FIELDS = {"algorithm": "algorithm.name", "local_steps": "algorithm.local_steps",
                 "participation": "algorithm.participation", "q_max": "algorithm.q_max",
                 "stale_rule": "algorithm.stale_rule", "lr": "algorithm.lr", "schedule": "algorithm.schedule",
                 "optimizer": "algorithm.optimizer", "batch_size": "algorithm.batch_size",
                 "server_lr": "algorithm.server_lr", "prox_mu": "algorithm.prox_mu"}


def _run_configs(table: pd.DataFrame, manifest: dict) -> list[tuple[int, dict, list[str]]]:
    """(run_id, base config dict, overrides) per run of a results directory: the manifest's config,
    the sweep point, and the algorithm fields of the table (authoritative for each run)."""
    if "config" not in manifest:
        raise LabError("manifest.json: no 'config' in the manifest; cannot rebuild the runs' configs")
    base = copy.deepcopy(manifest["config"])
    base["run"]["seeds"] = manifest.get("seeds", base["run"]["seeds"])
    runs = {r["run_id"]: r.get("point", {}) for r in manifest.get("runs", [])}
    ids = sorted(table["run_id"].unique()) if "run_id" in table else [0]
    out = []
    for rid in ids:
        sub = table[table["run_id"] == rid] if "run_id" in table else table
        over = [f"{k}={toml_value(v)}" for k, v in runs.get(rid, {}).items()]
        first = sub.iloc[0]
        for col, key in _TABLE_FIELDS.items():
            if col in sub and pd.notna(first[col]):
                v = first[col]
                v = v.item() if hasattr(v, "item") else v
                over.append(f"{key}={toml_value(v)}")
        if "topology" in sub and first["topology"] not in ("server", "none"):
            over.append(f"topology.name={toml_value(str(first['topology']))}")
        out.append((int(rid), base, over))
    return out


def compare(results_dir, eps: float | None = None, tail: float = TAIL, source: str = "auto",
            **estimate_kw) -> pd.DataFrame:
    """Observed vs predicted, one row per run of a results directory (`theory-lab synthetic|sweep
    --out DIR`): observed floor (tail mean of subopt, mean over seeds) vs the predicted floor, and
    observed rounds to eps (first logged round where the seed-mean subopt <= eps) vs predicted,
    with their ratios (observed / predicted). eps defaults, per run, to
    max(1e-2 F0, 2 max(observed floor, predicted floor))."""
    with warnings.catch_warnings():  # sweep point columns may mix types (e.g. two `name`s)
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)
        table, manifest = read_results(results_dir)
    if "subopt" not in table or table["subopt"].isna().all():
        raise LabError(f"{results_dir}: no subopt column (f* unknown on this track); nothing to compare")
    models: dict = {}
    rows = []
    for rid, base, over in _run_configs(table, manifest):
        cfg = build_config(base, over)
        key = _problem_key(cfg)
        if key not in models:
            models[key] = build_model(_oracle(cfg), source, batch_size=cfg.algorithm.batch_size or 8, **estimate_kw)
        model = models[key]
        topo = make_topology(cfg.topology, cfg.n_clients) if cfg.algorithm.decentralized else None
        pred = predict_config(cfg, model, topo)
        sub = table[table["run_id"] == rid] if "run_id" in table else table
        fl = floors_by(sub, "subopt", ["algorithm"], tail=tail)
        observed = float(fl["floor"].mean())
        predicted = float(np.mean(pred["floor"]))
        zero = 1e-12 * float(np.mean(model.F0))   # round-off level: a floor of exactly 0
        observed, predicted = (0.0 if abs(v) <= zero else v for v in (observed, predicted))
        curve = sub.groupby("round")["subopt"].mean().sort_index()
        e = eps if eps is not None else max(1e-2 * float(np.mean(model.F0)), 2.0 * max(observed, predicted))
        hit = curve[curve <= e]
        R_obs = float(hit.index[0]) if len(hit) else math.inf
        R = rounds_to_eps(e, pred["floor"], model.F0, pred["rho"])
        R_pred = _mean_rounds(R)
        with np.errstate(divide="ignore", invalid="ignore"):
            rows.append({"run_id": rid, "algorithm": cfg.algorithm.name, "E": cfg.algorithm.local_steps,
                         "S": cfg.algorithm.participation or cfg.n_clients, "q_max": cfg.algorithm.q_max,
                         "topology": topo.name if topo else "none" if cfg.algorithm.name == "centralized" else "server",
                         "lr": cfg.algorithm.lr,
                         "floor_observed": observed, "floor_predicted": predicted,
                         "floor_ratio": observed / predicted if predicted > 0 else (math.inf if observed > 0 else 1.0),
                         "stationary": bool(fl["stationary"].all()), "eps": e,
                         "rounds_observed": R_obs, "rounds_predicted": R_pred,
                         "rounds_ratio": R_obs / R_pred if R_pred > 0 and math.isfinite(R_pred) else math.nan,
                         "last_round": int(curve.index.max()), "constants": model.source,
                         "notes": "; ".join(pred["notes"])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------- CLI

def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _write(path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=_plain) + "\n")


def _plain(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    raise TypeError(type(v).__name__)


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]


def _estimate_kw(args) -> dict:
    for name in ("draws", "power_iters", "descent_steps"):
        if getattr(args, name) < (2 if name == "draws" else 1 if name == "power_iters" else 0):
            raise ConfigError("--" + name.replace("_", "-"), f"too small: {getattr(args, name)}")
    return {"draws": args.draws, "power_iters": args.power_iters, "descent_steps": args.descent_steps,
            "seed": args.estimate_seed}


def cmd_constants(args) -> int:
    cfg = build_config(read_toml(args.config), args.set)
    oracle = make_oracle(cfg)
    b = args.batch_size if args.batch_size is not None else (cfg.algorithm.batch_size or 8)
    est = estimate_constants(oracle, batch_size=b, use_exact_optimum=not args.estimate_optimum,
                             **_estimate_kw(args))
    exact = exact_values(oracle)
    comp = comparison(est, exact)
    payload = {"config": str(args.config), "seeds": cfg.run.seeds, "track": cfg.track,
               "estimates": est.to_dict(), "comparison": comp}
    if args.out:
        _write(args.out, payload)
    if args.json:
        print(json.dumps(payload, indent=2, default=_plain))
    else:
        print(f"constants of {args.config} ({cfg.track}, seeds {cfg.run.seeds}; sigma2 from {est.draws} "
              f"draws of b={b}; optimum point: {est.meta['optimum_point']})")
        for name in NAMES:
            row = comp[name]
            for s, seed in enumerate(cfg.run.seeds):
                line = f"  {name:>6} seed {seed}: {row['estimate'][s]:.6g} ± {row['stderr'][s]:.2g}"
                if exact is not None:
                    line += f"   exact {row['exact'][s]:.6g}   ratio {row['ratio'][s]:.6f}"
                print(line)
        if args.out:
            print(f"saved: {args.out}")
    return 0


def cmd_predict(args) -> int:
    if args.results:
        df = compare(args.results, eps=args.eps, tail=args.tail, source=args.source, **_estimate_kw(args))
        cols = ["run_id", "algorithm", "E", "S", "q_max", "topology", "floor_observed", "floor_predicted",
                "floor_ratio", "stationary", "eps", "rounds_observed", "rounds_predicted", "rounds_ratio"]
    else:
        if not args.config:
            raise ConfigError("--config", "give --config FILE.toml (a prediction) or --results DIR (a comparison)")
        cands = parse_candidates(args.candidates) if args.candidates else None
        df = predict(read_toml(args.config), args.set, cands, args.eps, args.source, **_estimate_kw(args))
        cols = ["rank", "candidate", "algorithm", "E", "S", "q_max", "topology", "floor", "consensus",
                "rho_round", "rounds_to_eps", "local_steps_to_eps", "bytes_to_eps"]
    if args.out:
        _write(args.out, {"rows": _records(df)})
    if args.json:
        print(json.dumps(_records(df), indent=2))
    else:
        print(df[cols].to_string(index=False, formatters={c: _fmt for c in cols}))
        notes = [f"{r.get('candidate', r.get('run_id'))}: {r['notes']}" for r in df.to_dict("records") if r["notes"]]
        if notes:
            print("notes:\n  " + "\n  ".join(notes))
        if args.out:
            print(f"saved: {args.out}")
    return 0


def add_parsers(subparsers) -> None:
    """Register `constants` and `predict` on the `theory-lab` subparsers; handlers return an exit code."""
    def common(p):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--out", metavar="FILE", help="save the result as JSON")
        p.add_argument("--draws", type=int, default=64, help="minibatch draws for sigma2 (default 64)")
        p.add_argument("--power-iters", type=int, default=100, help="power iterations for L (default 100)")
        p.add_argument("--descent-steps", type=int, default=100,
                       help="gradient steps to find the optimum where theta* is unknown (default 100)")
        p.add_argument("--estimate-seed", type=int, default=0, help="generator seed of the estimators")

    c = subparsers.add_parser("constants", help="estimate L, mu, sigma2, zeta2, F0 on any oracle "
                              "(with the exact values beside them on the synthetic track)")
    c.add_argument("--config", required=True, help="TOML config file")
    c.add_argument("--batch-size", type=int, default=None,
                   help="b of the sigma2 draws (default: algorithm.batch_size, or 8)")
    c.add_argument("--estimate-optimum", action="store_true",
                   help="find the optimum by gradient descent even where theta* is known")
    common(c)
    c.set_defaults(func=cmd_constants)

    p = subparsers.add_parser("predict", help="predicted floors and rounds/steps/bytes to eps per candidate, "
                              "or (--results) observed vs predicted")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="TOML config file")
    src.add_argument("--results", metavar="DIR", help="a results directory: compare observed with predicted")
    p.add_argument("--eps", type=float, default=None, help="target suboptimality (default: see docs/theory.md)")
    p.add_argument("--candidates", action="append", default=[], metavar="KEY=V1,V2",
                   help="candidate values of a config field (repeatable: the cartesian product)")
    p.add_argument("--source", default="auto", choices=("auto", "exact", "estimated"),
                   help="constants: exact (synthetic), estimated, or auto")
    p.add_argument("--tail", type=float, default=TAIL, help=f"tail fraction for the observed floor (default {TAIL})")
    common(p)
    p.set_defaults(func=cmd_predict)
