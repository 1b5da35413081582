"""Constants of any oracle, estimated from its gradients alone (issue 9).

Everything here goes through the Oracle protocol (`theory_lab/oracle.py`): `grad(X, clients, batch)`
with exact (batch=None) or minibatch gradients, `sample_batch`, and a global loss. It therefore works
on the synthetic oracle (where the exact constants are known, so the estimators can be checked) and
on the LLM oracle (in the trainable-parameter subspace). All tensors keep the seed dimension S in
front: a parameter stack is [S, N, P] and a model is [S, P]; nothing loops over seeds.

Estimators (docs/theory.md, "Estimated constants and predictions"):

* Hessian-vector products by central differences of exact gradients, for every client row at once:
  H_i u_i ~ (grad f_i(theta + e u_i) - grad f_i(theta - e u_i)) / (2 e); the global product is
  sum_i w_i H_i v. When the oracle has closed-form Hessians (`oracle.hessian`) they are used instead.
* L: largest |eigenvalue| of the global Hessian by power iteration (at theta_0 and at the optimum
  point, the larger is reported); uncertainty = the residual ||Hv - lambda v|| (an eigenvalue of H
  lies within it of lambda).
* mu: smallest eigenvalue at the optimum point, by power iteration on (s I - H); same residual.
* sigma2: per-sample gradient variance, sum_i w_i E||g_i - grad f_i||^2 * b over repeated
  `sample_batch` draws of size b (with-replacement draws make this exactly sigma2 in expectation);
  uncertainty = standard error over draws.
* zeta2: sum_i w_i ||grad f_i(theta) - grad f(theta)||^2 at the optimum point (exact gradients);
  uncertainty = first-order propagation of the distance to the optimum, 2 sqrt(zeta2) L ||grad f|| / mu.
* F0: f(theta_0) - f*, with f* exact when the oracle carries `constants` (synthetic), else the
  lowest loss seen (by gradient descent with Barzilai-Borwein steps, or given); uncertainty =
  ||grad f(theta_hat)||^2 / (2 mu) (Polyak-Lojasiewicz), 0 for the exact f*.

The optimum point is theta* when `oracle.constants` exists, the point given by `at` (e.g. the
averaged model of a run), or else the lowest-loss point of the descent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from theory_lab.errors import ConfigError

NAMES = ("L", "mu", "sigma2", "zeta2", "F0")
HOW = {
    "L": "power-iteration residual ||Hv - lambda v||",
    "mu": "power-iteration residual ||Hv - lambda v||",
    "sigma2": "standard error over minibatch draws",
    "zeta2": "first-order error from the distance to the optimum (0 at the exact theta*)",
    "F0": "PL bound ||grad f(theta_hat)||^2/(2 mu) on f_hat* - f* (0 for the exact f*)",
}


@dataclass
class Estimate:
    value: np.ndarray    # [S]
    stderr: np.ndarray   # [S] (what it means: HOW[name])

    def to_dict(self) -> dict:
        return {"value": self.value.tolist(), "stderr": self.stderr.tolist()}


@dataclass
class Estimates:
    """Estimated constants per replica, each with its uncertainty, plus what predictions need."""

    L: Estimate                   # max over the probe points of the largest |Hessian eigenvalue|
    mu: Estimate                  # smallest Hessian eigenvalue at the optimum point
    sigma2: Estimate              # per-sample variance: sigma2(b) = sigma2 / b
    zeta2: Estimate               # heterogeneity at the optimum point
    F0: Estimate                  # f(theta_0) - f*
    L_opt: Estimate               # largest |Hessian eigenvalue| at the optimum point
    theta: torch.Tensor           # [S, P] the optimum point (theta*, `at`, or the descent's best)
    f_star: np.ndarray            # [S] f* (exact) or the lowest loss seen
    f_star_exact: bool
    sigma2_clients: np.ndarray    # [S, N] per-client per-sample variance
    client_grads: torch.Tensor    # [S, N, P] grad f_i at the optimum point
    batch_size: int               # b of the sigma2 draws
    draws: int
    meta: dict = field(default_factory=dict)

    def get(self, name: str) -> Estimate:
        return getattr(self, name)

    def to_dict(self) -> dict:
        out = {name: {**self.get(name).to_dict(), "uncertainty": HOW[name]} for name in NAMES}
        out["L_opt"] = self.L_opt.to_dict()
        out["f_star"] = self.f_star.tolist()
        out["f_star_exact"] = self.f_star_exact
        out["sigma2_batch_size"] = self.batch_size
        out["sigma2_draws"] = self.draws
        return {**out, **self.meta}


# ------------------------------------------------------------------------------------- helpers

def global_loss(oracle, theta: torch.Tensor) -> torch.Tensor:
    """f(theta) = sum_i w_i f_i(theta) on all data, [S] (float64)."""
    if hasattr(oracle, "global_loss"):
        return oracle.global_loss(theta).double()
    if hasattr(oracle, "loss"):
        X = theta.unsqueeze(1).expand(-1, oracle.n_clients, -1).contiguous()
        return (oracle.weights.double() * oracle.loss(X, None, None).double()).sum(-1)
    return oracle.evaluate(theta)["train_loss"].double()


def client_grads(oracle, theta: torch.Tensor) -> torch.Tensor:
    """Exact grad f_i(theta) of every client at one model theta [S, P] -> [S, N, P]."""
    return oracle.grad(theta.unsqueeze(1).expand(-1, oracle.n_clients, -1).contiguous(), None, None)


def weighted(oracle, G: torch.Tensor) -> torch.Tensor:
    """sum_i w_i G_i: [S, N, P] -> [S, P]."""
    return torch.einsum("sk,skp->sp", oracle.weights.to(G.dtype), G)


def heterogeneity(oracle, theta: torch.Tensor, G: torch.Tensor | None = None) -> torch.Tensor:
    """zeta2(theta) = sum_i w_i ||grad f_i(theta) - grad f(theta)||^2 [S] at any model theta [S, P]
    (at theta* it equals sum_i w_i ||grad f_i(theta*)||^2 since grad f(theta*) = 0). Use it along a
    run, at the averaged model of each logged round."""
    G = client_grads(oracle, theta) if G is None else G
    dev = (G - weighted(oracle, G).unsqueeze(1)).pow(2).sum(-1)
    return (oracle.weights.to(G.dtype) * dev).sum(-1)


def default_fd_eps(theta: torch.Tensor) -> torch.Tensor:
    """[S]: central-difference step, (machine eps)^(1/3) scaled by max(1, ||theta||)."""
    base = torch.finfo(theta.dtype).eps ** (1.0 / 3.0)
    return base * theta.norm(dim=-1).clamp_min(1.0)


class HessianOps:
    """Hessian products of every client at one model theta [S, P]: closed form when the oracle has
    `hessian` (and P is small), else central differences of exact gradients."""

    def __init__(self, oracle, theta: torch.Tensor, fd_eps: float | None = None, exact: bool | None = None):
        self.oracle, self.theta = oracle, theta
        self.w = oracle.weights.to(theta.dtype)
        if exact is None:
            exact = hasattr(oracle, "hessian") and oracle.dim <= 512
        self.exact = bool(exact)
        self.evals = 0  # gradient calls spent
        if self.exact:
            X = theta.unsqueeze(1).expand(-1, oracle.n_clients, -1).contiguous()
            self.H = oracle.hessian(X)                                   # [S, N, P, P]
            self.Hbar = torch.einsum("sk,skpq->spq", self.w, self.H)
        else:
            self.eps = (torch.full((theta.shape[0],), float(fd_eps), dtype=theta.dtype)
                        if fd_eps else default_fd_eps(theta))

    def client_hvp(self, U: torch.Tensor) -> torch.Tensor:
        """H_i(theta) u_i for every client row: U [S, N, P] -> [S, N, P]."""
        if self.exact:
            return torch.einsum("skpq,skq->skp", self.H, U)
        norm = U.norm(dim=-1, keepdim=True)
        D = U / norm.clamp_min(1e-300)
        e = self.eps[:, None, None]
        X = self.theta.unsqueeze(1)
        gp = self.oracle.grad((X + e * D).contiguous(), None, None)
        gm = self.oracle.grad((X - e * D).contiguous(), None, None)
        self.evals += 2
        return (gp - gm) / (2 * e) * norm

    def hvp(self, V: torch.Tensor) -> torch.Tensor:
        """Global Hessian product sum_i w_i H_i v: V [S, P] -> [S, P]."""
        if self.exact:
            return torch.einsum("spq,sq->sp", self.Hbar, V)
        U = V.unsqueeze(1).expand(-1, self.oracle.n_clients, -1)
        return torch.einsum("sk,skp->sp", self.w, self.client_hvp(U))

    def fd_error(self, V: torch.Tensor) -> torch.Tensor:
        """[S]: error estimate of the difference quotient along V [S, P] (unit rows): the Richardson
        difference ||Hv(2e) - Hv(e)|| / 3 of a central difference (0 for closed-form Hessians)."""
        if self.exact:
            return torch.zeros(V.shape[0], dtype=V.dtype)
        eps = self.eps
        a = self.hvp(V)
        self.eps = 2 * eps
        b = self.hvp(V)
        self.eps = eps
        return (b - a).norm(dim=-1) / 3

    def solve(self, V: torch.Tensor, iters: int = 200, rtol: float = 1e-10):
        """H^-1 v by conjugate gradients (exact solve for closed-form Hessians): returns (u, ||Hu - v||)."""
        if self.exact:
            u = torch.linalg.solve(self.Hbar, V.unsqueeze(-1))[..., 0]
            return u, (torch.einsum("spq,sq->sp", self.Hbar, u) - V).norm(dim=-1)
        u = torch.zeros_like(V)
        r = V.clone()
        p = r.clone()
        rs = (r * r).sum(-1)
        stop = rtol * V.norm(dim=-1)
        for _ in range(iters):
            if bool((rs.sqrt() <= stop).all()):
                break
            Hp = self.hvp(p)
            curv = (p * Hp).sum(-1)
            alpha = torch.where(curv > 0, rs / curv.clamp_min(1e-300), torch.zeros_like(rs))
            active = (rs.sqrt() > stop) & (curv > 0)
            alpha = alpha * active
            u = u + alpha[:, None] * p
            r = r - alpha[:, None] * Hp
            rs_new = (r * r).sum(-1)
            p = r + (rs_new / rs.clamp_min(1e-300))[:, None] * p
            rs = torch.where(active, rs_new, rs)
        return u, (self.hvp(u) - V).norm(dim=-1)


def power_iteration(apply, dim_shape, gen: torch.Generator, dtype, iters: int = 100, rtol: float = 1e-8):
    """Largest-|eigenvalue| of a symmetric operator `apply` ([S, P] -> [S, P]), per replica.
    Returns (lambda [S], residual ||A v - lambda v|| [S], iterations used)."""
    v = torch.randn(*dim_shape, generator=gen, dtype=torch.float64).to(dtype)
    v = v / v.norm(dim=-1, keepdim=True)
    lam = res = None
    it = 0
    v_last = v
    for it in range(1, iters + 1):
        Av = apply(v)
        lam = (v * Av).sum(-1)
        res = (Av - lam[:, None] * v).norm(dim=-1)
        v_last = v
        norm = Av.norm(dim=-1, keepdim=True)
        if bool((res <= rtol * lam.abs().clamp_min(1e-300)).all()):
            break
        v = torch.where(norm > 0, Av / norm.clamp_min(1e-300), v)
    return lam, res, it, v_last


def largest_eig(ops: HessianOps, gen, iters=100, rtol=1e-8):
    """(|lambda_max| [S], uncertainty [S], iterations) of the global Hessian; the uncertainty is the
    residual ||Hv - lambda v|| plus the finite-difference error along v."""
    lam, res, it, v = power_iteration(ops.hvp, ops.theta.shape, gen, ops.theta.dtype, iters, rtol)
    return lam.abs(), res + ops.fd_error(v), it


def smallest_eig(ops: HessianOps, top: torch.Tensor, gen, iters=300, rtol=1e-8):
    """(lambda_min [S], uncertainty [S], iterations) by power iteration on (s I - H), s = |lambda_max|."""
    s = top.clamp_min(1e-300)[:, None]
    lam, res, it, v = power_iteration(lambda v: s * v - ops.hvp(v), ops.theta.shape, gen,
                                      ops.theta.dtype, iters, rtol)
    return top - lam, res + ops.fd_error(v), it


def minibatch_variance(oracle, theta: torch.Tensor, batch_size: int, draws: int, gen: torch.Generator,
                       G: torch.Tensor | None = None):
    """Per-sample gradient variance at theta from `draws` minibatches of size b per client:
    returns (sigma2 [S], stderr [S], per-client sigma2_i [S, N])."""
    if batch_size < 1:
        raise ConfigError("batch_size", f"the variance needs minibatches of >= 1 pair, got {batch_size}")
    if draws < 2:
        raise ConfigError("draws", f"the standard error needs >= 2 draws, got {draws}")
    X = theta.unsqueeze(1).expand(-1, oracle.n_clients, -1).contiguous()
    G = oracle.grad(X, None, None) if G is None else G
    per = []
    for _ in range(draws):
        g = oracle.grad(X, None, oracle.sample_batch(gen, batch_size))
        per.append((g - G).pow(2).sum(-1).double() * batch_size)        # [S, N]
    per = torch.stack(per)                                                # [R, S, N]
    w = oracle.weights.double()
    total = (w * per).sum(-1)                                            # [R, S]
    return total.mean(0), total.std(0) / math.sqrt(draws), per.mean(0)


def descend(oracle, theta0: torch.Tensor, steps: int, step0: torch.Tensor):
    """Exact-gradient descent with Barzilai-Borwein steps from theta0 [S, P] (first step step0 [S]).
    Returns (best point [S, P], lowest loss [S], its gradient [S, P]): "the lowest loss seen"."""
    theta = theta0.clone()
    f = global_loss(oracle, theta)
    g = weighted(oracle, client_grads(oracle, theta))
    best, f_best, g_best = theta.clone(), f.clone(), g.clone()
    step = step0.to(theta.dtype).clone()
    for _ in range(steps):
        new = theta - step[:, None] * g
        f_new = global_loss(oracle, new)
        g_new = weighted(oracle, client_grads(oracle, new))
        s, y = new - theta, g_new - g
        sy = (s * y).sum(-1)
        bb = (s * s).sum(-1) / sy.clamp_min(1e-300)
        # BB1 step when the curvature along s is positive, else back to the safe 1/L step
        step = torch.where((sy > 0) & torch.isfinite(bb), bb.clamp(max=100 * step0), step0)
        better = torch.isfinite(f_new) & (f_new < f_best)
        best = torch.where(better[:, None], new, best)
        g_best = torch.where(better[:, None], g_new, g_best)
        f_best = torch.where(better, f_new, f_best)
        bad = ~torch.isfinite(f_new) | (f_new > f + 10 * f.abs().clamp_min(1.0))
        theta = torch.where(bad[:, None], best, new)                    # restart a blow-up
        g = torch.where(bad[:, None], g_best, g_new)
        f = torch.where(bad, f_best, f_new)
        step = torch.where(bad, step0, step)
    return best, f_best, g_best


def _np(x) -> np.ndarray:
    return x.detach().double().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=float)


# ------------------------------------------------------------------------------------- main entry

def estimate_constants(oracle, *, batch_size: int = 8, draws: int = 64, power_iters: int = 100,
                       mu_iters: int = 300, descent_steps: int = 100, at: torch.Tensor | None = None,
                       f_star: torch.Tensor | None = None, use_exact_optimum: bool = True,
                       fd_eps: float | None = None, exact_hessian: bool | None = False,
                       seed: int = 0) -> Estimates:
    """Estimate L, mu, sigma2, zeta2, F0 (each with its uncertainty) on any oracle.

    batch_size, draws: the minibatches of the sigma2 estimate. power_iters / mu_iters: power
    iterations for L / mu. at: the optimum point [S, P] to use (e.g. the averaged model of a run);
    by default theta* of a synthetic oracle (unless use_exact_optimum=False), else the best point of
    `descent_steps` exact-gradient BB steps from theta_0. f_star: the lowest loss seen, if known.
    exact_hessian: False (default) forces finite differences of gradients even when the oracle has
    closed-form Hessians (so the estimator is the one used on the LLM track); None uses them when
    available. seed: the generator of power-iteration starts and minibatch draws.
    """
    gen = torch.Generator().manual_seed(seed)
    consts = getattr(oracle, "constants", None)
    theta0 = oracle.init_params()
    # L at theta_0 (for horizon 1 and theta_0 = theta_ref this is where the global sup is attained)
    ops0 = HessianOps(oracle, theta0, fd_eps, exact_hessian)
    L0, r0, it0 = largest_eig(ops0, gen, power_iters)
    evals = ops0.evals

    exact_opt = at is None and consts is not None and use_exact_optimum
    if at is not None:
        theta = at.to(theta0.dtype)
        f_hat = global_loss(oracle, theta)
    elif exact_opt:
        theta = consts.theta_star.to(theta0.dtype)
        f_hat = consts.f_star.double()
    else:
        theta, f_hat, _ = descend(oracle, theta0, descent_steps, 1.0 / L0.clamp_min(1e-12))
        evals += 2 * descent_steps
    if f_star is not None:
        f_hat = torch.minimum(f_hat, torch.as_tensor(f_star, dtype=torch.float64))

    G = client_grads(oracle, theta)
    grad_norm = weighted(oracle, G).norm(dim=-1).double()
    ops = HessianOps(oracle, theta, fd_eps, exact_hessian)
    L1, r1, it1 = largest_eig(ops, gen, power_iters)
    mu, rmu, itmu = smallest_eig(ops, L1, gen, mu_iters)
    evals += ops.evals
    use0 = L0 >= L1
    L = torch.where(use0, L0, L1)
    rL = torch.where(use0, r0, r1)

    s2, s2_se, s2_clients = minibatch_variance(oracle, theta, batch_size, draws, gen, G)
    zeta2 = heterogeneity(oracle, theta, G).double()
    mu_pos = mu.double().clamp_min(1e-300)
    z_err = torch.where(mu > 0, 2 * zeta2.sqrt() * L.double() * grad_norm / mu_pos,
                        torch.full_like(zeta2, math.inf))
    f0 = global_loss(oracle, theta0)
    if consts is not None and use_exact_optimum:
        f_ref, f_exact = consts.f_star.double(), True
    else:
        f_ref, f_exact = f_hat, False
    F0 = f0 - f_ref
    rounding = 4 * torch.finfo(torch.float64).eps * (f0.abs() + f_ref.abs())
    F0_err = rounding if f_exact else rounding + torch.where(
        mu > 0, grad_norm.pow(2) / (2 * mu_pos), torch.full_like(F0, math.inf))
    z_err = torch.where(grad_norm == 0, torch.zeros_like(z_err), z_err)
    if exact_opt:
        z_err = torch.where(grad_norm <= 1e-10 * zeta2.sqrt().clamp_min(1.0), torch.zeros_like(z_err), z_err)

    def est(v, e):
        return Estimate(_np(v), _np(e))

    where = "theta*" if exact_opt else ("given" if at is not None else f"descent ({descent_steps} BB steps)")
    meta = {"optimum_point": where,
            "grad_norm_at_optimum_point": _np(grad_norm).tolist(),
            "hessian": "closed form" if ops.exact else "central differences of exact gradients",
            "power_iterations": {"L_theta0": it0, "L_opt": it1, "mu": itmu}, "gradient_calls": evals}
    return Estimates(L=est(L, rL), mu=est(mu, rmu), sigma2=est(s2, s2_se), zeta2=est(zeta2, z_err),
                     F0=est(F0, F0_err), L_opt=est(L1, r1), theta=theta, f_star=_np(f_ref),
                     f_star_exact=f_exact, sigma2_clients=_np(s2_clients), client_grads=G,
                     batch_size=batch_size, draws=draws, meta=meta)


def exact_values(oracle) -> dict[str, np.ndarray] | None:
    """The synthetic oracle's exact constants (L, mu, sigma2, zeta2, F0), or None."""
    c = getattr(oracle, "constants", None)
    if c is None:
        return None
    return {name: _np(getattr(c, name)) for name in NAMES}


def comparison(est: Estimates, exact: dict | None) -> dict:
    """Per constant: estimate, uncertainty, and (when known) exact value, ratio and |diff|/stderr."""
    out = {}
    for name in NAMES:
        e = est.get(name)
        row = {"estimate": e.value.tolist(), "stderr": e.stderr.tolist()}
        if exact is not None:
            x = exact[name]
            with np.errstate(divide="ignore", invalid="ignore"):
                row["exact"] = x.tolist()
                row["ratio"] = (e.value / x).tolist()
                row["z"] = (np.abs(e.value - x) / e.stderr).tolist()
        out[name] = row
    return out
