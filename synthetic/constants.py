"""Exact constants of a synthetic problem: θ*, f*, L, μ, σ², ζ², F0 (all per replica).

For horizon 1 the loss is logistic regression on feature differences (convex): θ* is the global
minimiser and L is exact. For H > 1 the log-partition terms make the landscape non-convex: θ* is
the local stationary point Newton's method reaches from θ_0, μ is the curvature there, and L is
the derived global bound (docs/theory.md), to be checked against `hessian_max_eig_at` along runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from theory_lab.errors import ConfigError, LabError
from synthetic.problem import SyntheticProblem


@dataclass
class Constants:
    theta_star: torch.Tensor    # [S, d]
    f_star: torch.Tensor        # [S]
    L: torch.Tensor             # [S] global smoothness (exact for H = 1, the bound for H > 1)
    L_clients: torch.Tensor     # [S, N] the same per client
    mu: torch.Tensor            # [S] λmin of the global Hessian at θ*
    sigma2: torch.Tensor        # [S] Σ_i w_i σ_i²: per-sample gradient variance at θ*
    sigma2_clients: torch.Tensor  # [S, N] σ_i²; a with-replacement batch of b has σ_i²/b
    zeta2: torch.Tensor         # [S] Σ_i w_i ‖∇f_i(θ*)‖²
    F0: torch.Tensor            # [S] f(θ_0) − f*
    newton_iters: int           # iterations the θ* solve took (diagnostic)
    L_sample: torch.Tensor | None = None   # [S] smoothness of one pair's loss (≥ L_clients ≥ L)
    mu_global: torch.Tensor | None = None  # [S] strong convexity of every client loss everywhere (l2; 0 if H > 1)


def exact_constants(problem: SyntheticProblem, model) -> Constants:
    """The constants of `problem` from its objective `model` (synthetic.oracle.LogLinearDPO)."""
    theta_star, iters = newton_minimize(model, problem.theta0)
    f_star = model.global_loss(theta_star)
    w = problem.client_weights
    L_clients, L = _smoothness(problem), _smoothness(problem, w)
    pair = model.per_pair_grads(model._bcast(theta_star))             # [S, N, n, P]
    g_i = model.grad(model._bcast(theta_star))                        # [S, N, P]
    dev = (pair - g_i[:, :, None]).pow(2).sum(-1)                     # [S, N, n]
    sigma2_clients = (problem.pair_weight * dev).sum(-1)
    mu = torch.linalg.eigvalsh(model.global_hessian(theta_star))[:, 0]
    # Separable data (or fewer informative pairs than dimensions) have no unique minimiser, yet
    # Newton still stops: ‖∇f‖ decays like e^{-‖θ‖} as θ runs off to infinity. The tell-tale is a
    # numerically singular Hessian at the returned point (its curvature decays just as fast).
    bad = mu <= 1e-10 * L
    if bad.any():
        raise ConfigError("problem.l2", f"must be > 0 here: the Hessian at theta* is singular "
                          f"(mu/L = {(mu / L)[bad][0].item():.2g}), so the preference data are "
                          "separable or too few for the dimension and no unique minimiser exists")
    return Constants(
        theta_star=theta_star, f_star=f_star, L=L, L_clients=L_clients, mu=mu,
        sigma2=(w * sigma2_clients).sum(-1), sigma2_clients=sigma2_clients,
        zeta2=(w * g_i.pow(2).sum(-1)).sum(-1),
        F0=model.global_loss(problem.theta0) - f_star, newton_iters=iters,
        L_sample=per_sample_smoothness(problem), mu_global=_global_strong_convexity(problem, L))


def hessian_max_eig_at(model, theta: torch.Tensor) -> torch.Tensor:
    """[S]: largest eigenvalue of the global Hessian at θ [S, P]: the local smoothness met along
    a run, to set against the H > 1 bound L."""
    return torch.linalg.eigvalsh(model.global_hessian(theta))[:, -1]


def gradient_noise_covariance(model, theta: torch.Tensor) -> torch.Tensor:
    """[S, N, P, P]: covariance of one sampled pair's gradient within each client at θ [S, P].

    A with-replacement batch of b has covariance Cov_i / b; FedDPO's aggregated step noise is
    Σ_i w_i² Cov_i / b. Its trace is σ_i² at θ*; its shape (against the Hessian) sets how delays
    raise the floor (docs/theory.md §3.4: tr(H C)/tr(C), not L)."""
    X = model._bcast(theta)
    dev = model.per_pair_grads(X) - model.grad(X)[:, :, None]
    return torch.einsum("snj,snjp,snjq->snpq", model.problem.pair_weight, dev, dev)


def per_sample_smoothness(problem: SyntheticProblem) -> torch.Tensor:
    """[S]: the largest smoothness of one pair's loss, max_j β²/4 ‖z_j‖² + l2 (horizon 1).

    The constant Koloskova et al. 2020 (Assumption 1: every F_i(·, ξ) is L-smooth) assume; it is
    at least each client's L_i, which is at least the global L. For H > 1 the derived bound (the
    same for pairs, clients and f)."""
    if problem.visits is not None:
        return _smoothness(problem, problem.client_weights)
    norms = problem.dphi.pow(2).sum(-1) * (problem.pair_weight > 0)
    return problem.beta**2 / 4 * norms.flatten(1).max(-1).values + problem.l2


def _global_strong_convexity(problem: SyntheticProblem, like: torch.Tensor) -> torch.Tensor:
    """[S]: inf over θ of λmin(∇²f_i), the μ the rate theorems assume. H = 1: the logistic weights
    σ(h)σ(−h) → 0 as |h| → ∞, so only the ridge is left: l2. H > 1: the losses are non-convex: 0."""
    value = problem.l2 if problem.visits is None else 0.0
    return torch.full_like(like, float(value))


def _smoothness(problem: SyntheticProblem, client_weights=None) -> torch.Tensor:
    """Per-client smoothness [S, N], or global [S] when client weights are given.

    H = 1: ∇²ℓ = σ(h)σ(−h) β² z zᵀ ≼ β²/4 z zᵀ with equality at h = 0, so
    L = β²/4 λmax(Zᵀ diag(pair_weight) Z) + l2 exactly (attained at θ = θ_ref).
    H > 1: ‖∇h‖ ≤ β·2H·2B (each step's φ − μ has norm ≤ 2B) and ‖Σ_θ(s)‖ ≤ B², with
    Σ_s |visits_s| ≤ 2H, so ‖∇²ℓ‖ ≤ ¼(4βHB)² + 2βHB² = 4β²H²B² + 2βHB²
    (a worst-case bound, far from attained on random problems).
    """
    p = problem
    if p.visits is not None:
        B = p.features.norm(dim=-1).flatten(1).max(-1).values           # [S] actual max ‖φ‖
        H, b = p.horizon, p.beta
        bound = 4 * b**2 * H**2 * B**2 + 2 * b * H * B**2 + p.l2
        return bound if client_weights is not None else bound[:, None].expand(-1, p.n_clients)
    M = torch.einsum("snj,snjd,snje->snde", p.pair_weight, p.dphi, p.dphi)
    if client_weights is not None:
        M = torch.einsum("sn,snde->sde", client_weights, M)
    return p.beta**2 / 4 * torch.linalg.eigvalsh(M)[..., -1] + p.l2


def newton_minimize(model, theta0, rtol=1e-12, max_iter=500):
    """Damped Newton on the global loss, all replicas at once, to ‖∇f‖ ≤ rtol·max(1, ‖∇f(θ0)‖).

    Where the Hessian is not positive definite (possible only for H > 1) the step falls back to
    steepest descent scaled by 1/‖∇²f‖; Armijo backtracking on each replica separately.
    """
    theta = theta0.clone()
    f, g = model.global_loss(theta), model.global_grad(theta)
    tol = rtol * g.norm(dim=-1).clamp_min(1.0)
    for it in range(max_iter):
        active = g.norm(dim=-1) > tol
        if not active.any():
            return theta, it
        hess = model.global_hessian(theta)
        chol, info = torch.linalg.cholesky_ex(hess)
        newton = -torch.cholesky_solve(g[..., None], chol)[..., 0]
        scale = torch.linalg.matrix_norm(hess, ord=2).clamp_min(1e-12)
        step = torch.where((info == 0)[:, None], newton, -g / scale[:, None])
        step = step.nan_to_num() * active[:, None]
        slope = (g * step).sum(-1)
        t = torch.ones_like(f)
        for _ in range(60):
            cand = theta + t[:, None] * step
            f_new = model.global_loss(cand)
            # Slack of a few ulps of f: near θ* the decrease is below float64 resolution.
            ok = f_new <= f + 1e-4 * t * slope + 1e-14 * f.abs().clamp_min(1.0)
            if ok.all():
                break
            t = torch.where(ok, t, t / 2)
        theta = torch.where(ok[:, None], cand, theta)
        f = torch.where(ok, f_new, f)
        g = model.global_grad(theta)
        if not torch.isfinite(theta).all():
            break
    raise LabError(
        f"theta*: Newton did not converge in {max_iter} iterations (max ‖∇f‖ = "
        f"{g.norm(dim=-1).max().item():.3g}); the preference data may be separable, so no "
        "minimiser exists: set problem.l2 > 0 or use more pairs")
