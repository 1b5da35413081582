"""Constants of any oracle, estimated from its gradients alone (issue 9).

Everything here goes through the Oracle protocol (`theory_lab/oracle.py`): `grad(X, clients, batch)`
with exact (batch=None) or minibatch gradients, `sample_batch`, and a global loss. It therefore works
on the synthetic oracle (where the exact constants are known, so the estimators can be checked) and
on the LLM oracle (in the trainable-parameter subspace). All tensors keep the seed dimension S in
front: a parameter stack is [S, N, P] and a model is [S, P]; nothing loops over seeds.

Estimators (docs/theory.md, "Estimated constants and predictions"):

* Hessian-vector products (`theory_lab.curvature`) by central differences of exact gradients, for
  every client row at once: H_i u_i ~ (grad f_i(theta + e u_i) - grad f_i(theta - e u_i)) / (2 e);
  the global product is sum_i w_i H_i v. When the oracle has closed-form Hessians
  (`oracle.hessian`) they are used instead.
* L: largest |eigenvalue| of the global Hessian by power iteration (at theta_0 and at the optimum
  point, the larger is reported); uncertainty = the residual ||Hv - lambda v|| (an eigenvalue of H
  lies within it of lambda) plus, with finite differences, the Richardson estimate of their error
  along v.
* mu: smallest eigenvalue at the optimum point, by power iteration on (s I - H); same uncertainty.
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

Common parameters
-----------------
The functions below name these and add only what is particular to them:

oracle : Oracle
    Any oracle (theory_lab/oracle.py).
theta : torch.Tensor
    One model per replica, [S, P].
gen : torch.Generator
    Generator of the minibatch draws.

The examples run on ``SyntheticOracle(problem.example_problem())`` (`synthetic.problem.example_problem`:
S = 2 replicas, N = 2 clients, P = 3 parameters; exact constants known).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from theory_lab.curvature import HessianOps, largest_eig, smallest_eig
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
    """One estimated constant per replica, with its uncertainty.

    Parameters
    ----------
    value : numpy.ndarray
        The estimate, shape [S].
    stderr : numpy.ndarray
        Its uncertainty, shape [S]; what it means depends on the constant (`HOW[name]`).

    Examples
    --------
    >>> e = Estimate(np.array([0.5, 0.25]), np.array([0.01, 0.02]))
    >>> e.to_dict()
    {'value': [0.5, 0.25], 'stderr': [0.01, 0.02]}
    """

    value: np.ndarray    # [S]
    stderr: np.ndarray   # [S] (what it means: HOW[name])

    def to_dict(self) -> dict:
        """JSON-friendly form.

        Returns
        -------
        dict
            {"value": list of S floats, "stderr": list of S floats}.

        Examples
        --------
        >>> Estimate(np.array([2.0]), np.array([0.0])).to_dict()
        {'value': [2.0], 'stderr': [0.0]}
        """
        return {"value": self.value.tolist(), "stderr": self.stderr.tolist()}


@dataclass
class Estimates:
    """Estimated constants per replica, each with its uncertainty, plus what predictions need.

    Returned by `estimate_constants`; `HOW` says what each uncertainty is.

    Attributes
    ----------
    L, mu, sigma2, zeta2, F0 : Estimate
        The five constants of `NAMES`, values and uncertainties of shape [S] (see the comments
        on the fields and the module docstring for how each is estimated).
    L_opt : Estimate
        Largest |Hessian eigenvalue| at the optimum point alone (`L` is the larger of it and
        the value at theta_0).
    theta : torch.Tensor
        The optimum point, [S, P]: theta*, the given `at`, or the best point of the descent.
    f_star : numpy.ndarray
        [S]: the exact f* (synthetic oracle) or the lowest loss seen.
    f_star_exact : bool
        Whether `f_star` is exact.
    sigma2_clients : numpy.ndarray
        [S, N]: per-client per-sample gradient variance sigma2_i (sigma2 = sum_i w_i sigma2_i).
    client_grads : torch.Tensor
        [S, N, P]: exact grad f_i at the optimum point.
    batch_size : int
        Minibatch size b of the sigma2 draws.
    draws : int
        Number of minibatch draws.
    meta : dict
        Provenance: optimum_point, grad_norm_at_optimum_point, hessian (closed form or central
        differences), power_iterations, gradient_calls.

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> est = estimate_constants(oracle, draws=16)
    >>> est.theta.shape, est.client_grads.shape, est.sigma2_clients.shape, est.f_star_exact
    (torch.Size([2, 3]), torch.Size([2, 2, 3]), (2, 2), True)
    >>> est.meta["optimum_point"], est.meta["hessian"]
    ('theta*', 'central differences of exact gradients')
    """

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
        """The estimate of one constant by name.

        Parameters
        ----------
        name : str
            One of `NAMES` (or "L_opt").

        Returns
        -------
        Estimate

        Examples
        --------
        >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
        >>> est = estimate_constants(oracle, draws=16)
        >>> est.get("mu") is est.mu
        True
        """
        return getattr(self, name)

    def to_dict(self) -> dict:
        """JSON-friendly form, for manifests.

        Returns
        -------
        dict
            Per name in `NAMES`: value, stderr (lists of S floats) and uncertainty (`HOW`);
            then L_opt, f_star, f_star_exact, sigma2_batch_size, sigma2_draws and the entries
            of `meta`.

        Examples
        --------
        >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
        >>> d = estimate_constants(oracle, batch_size=4, draws=16).to_dict()
        >>> list(d)[:8]
        ['L', 'mu', 'sigma2', 'zeta2', 'F0', 'L_opt', 'f_star', 'f_star_exact']
        >>> d["sigma2"]["uncertainty"], d["sigma2_batch_size"], d["sigma2_draws"]
        ('standard error over minibatch draws', 4, 16)
        """
        out = {name: {**self.get(name).to_dict(), "uncertainty": HOW[name]} for name in NAMES}
        out["L_opt"] = self.L_opt.to_dict()
        out["f_star"] = self.f_star.tolist()
        out["f_star_exact"] = self.f_star_exact
        out["sigma2_batch_size"] = self.batch_size
        out["sigma2_draws"] = self.draws
        return {**out, **self.meta}


# ------------------------------------------------------------------------------------- helpers

def global_loss(oracle, theta: torch.Tensor) -> torch.Tensor:
    """f(theta) = sum_i w_i f_i(theta) on all data, [S] (float64).

    Uses the oracle's `global_loss` if it has one, else the weighted sum of its per-client
    `loss` on full data, else the "train_loss" of its `evaluate`.

    Parameters
    ----------
    oracle, theta
        See Common parameters.

    Returns
    -------
    torch.Tensor
        The global loss, [S], float64.

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> global_loss(oracle, oracle.init_params())  # theta_0 = theta_ref = 0: loss log 2
    tensor([0.6931, 0.6931], dtype=torch.float64)
    >>> bool((global_loss(oracle, oracle.constants.theta_star) < 0.6931).all())
    True
    """
    if hasattr(oracle, "global_loss"):
        return oracle.global_loss(theta).double()
    if hasattr(oracle, "loss"):
        X = theta.unsqueeze(1).expand(-1, oracle.n_clients, -1).contiguous()
        return (oracle.weights.double() * oracle.loss(X, None, None).double()).sum(-1)
    return oracle.evaluate(theta)["train_loss"].double()


def client_grads(oracle, theta: torch.Tensor) -> torch.Tensor:
    """Exact grad f_i(theta) of every client at one model theta [S, P] -> [S, N, P].

    Parameters
    ----------
    oracle, theta
        See Common parameters; every client is evaluated at theta.

    Returns
    -------
    torch.Tensor
        Full-data gradients grad f_i(theta), [S, N, P].

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> G = client_grads(oracle, oracle.constants.theta_star)
    >>> G.shape
    torch.Size([2, 2, 3])
    >>> bool(weighted(oracle, G).norm(dim=-1).max() < 1e-12)  # grad f(theta*) = 0
    True
    """
    return oracle.grad(theta.unsqueeze(1).expand(-1, oracle.n_clients, -1).contiguous(), None, None)


def weighted(oracle, G: torch.Tensor) -> torch.Tensor:
    """sum_i w_i G_i: [S, N, P] -> [S, P].

    Parameters
    ----------
    oracle : Oracle
        Supplies the client weights `oracle.weights`, [S, N].
    G : torch.Tensor
        One vector per client, [S, N, P].

    Returns
    -------
    torch.Tensor
        The weighted sum over clients, [S, P], in G's dtype.

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> oracle.weights                                        # equal client sizes
    tensor([[0.5000, 0.5000],
            [0.5000, 0.5000]], dtype=torch.float64)
    >>> G = torch.arange(12, dtype=torch.float64).reshape(2, 2, 3)
    >>> weighted(oracle, G)
    tensor([[1.5000, 2.5000, 3.5000],
            [7.5000, 8.5000, 9.5000]], dtype=torch.float64)
    """
    return torch.einsum("sk,skp->sp", oracle.weights.to(G.dtype), G)


def heterogeneity(oracle, theta: torch.Tensor, G: torch.Tensor | None = None) -> torch.Tensor:
    """zeta2(theta) = sum_i w_i ||grad f_i(theta) - grad f(theta)||^2 [S] at any model theta [S, P]
    (at theta* it equals sum_i w_i ||grad f_i(theta*)||^2 since grad f(theta*) = 0). Use it along a
    run, at the averaged model of each logged round.

    Parameters
    ----------
    oracle, theta
        See Common parameters.
    G : torch.Tensor or None, optional
        The client gradients at theta, [S, N, P], if already computed (`client_grads`).

    Returns
    -------
    torch.Tensor
        zeta2(theta), [S].

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> z = heterogeneity(oracle, oracle.constants.theta_star)
    >>> z.shape, bool(torch.allclose(z, oracle.constants.zeta2))
    (torch.Size([2]), True)
    """
    G = client_grads(oracle, theta) if G is None else G
    dev = (G - weighted(oracle, G).unsqueeze(1)).pow(2).sum(-1)
    return (oracle.weights.to(G.dtype) * dev).sum(-1)


def minibatch_variance(oracle, theta: torch.Tensor, batch_size: int, draws: int, gen: torch.Generator,
                       G: torch.Tensor | None = None):
    """Per-sample gradient variance at theta from `draws` minibatches of size b per client:
    returns (sigma2 [S], stderr [S], per-client sigma2_i [S, N]).

    Each draw r gives b * ||g_i^(r) - grad f_i(theta)||^2 per client, from the minibatch
    gradient g_i^(r) on `oracle.sample_batch(gen, b)`; sigma2 is the mean over draws of
    sum_i w_i of these, and stderr its standard error (sample standard deviation over draws
    / sqrt(draws)). With minibatches drawn with replacement, the expectation is exactly the
    per-sample variance sigma2.

    Parameters
    ----------
    oracle : Oracle
        Any oracle with minibatch gradients and `sample_batch`.
    theta, gen
        See Common parameters (gen: of the minibatch draws).
    batch_size : int
        b, pairs per client per minibatch, >= 1.
    draws : int
        Number of minibatches, >= 2.
    G : torch.Tensor or None, optional
        Exact client gradients at theta, [S, N, P], if already computed.

    Returns
    -------
    sigma2 : torch.Tensor
        [S], float64.
    stderr : torch.Tensor
        [S], float64.
    sigma2_clients : torch.Tensor
        Per-client per-sample variance, [S, N], float64.

    Raises
    ------
    ConfigError
        batch_size < 1 or draws < 2.

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> s2, se, s2_i = minibatch_variance(oracle, oracle.constants.theta_star, 4, 32,
    ...                                   torch.Generator().manual_seed(0))
    >>> s2.shape, s2_i.shape
    (torch.Size([2]), torch.Size([2, 2]))
    >>> bool((abs(s2 - oracle.constants.sigma2) <= 3 * se).all())
    True
    """
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
    Returns (best point [S, P], lowest loss [S], its gradient [S, P]): "the lowest loss seen".

    Step sizes: BB1 ||s||^2 / s^T y (capped at 100 step0) while the curvature s^T y is
    positive, else step0. A step whose loss is not finite or exceeds f + 10 max(|f|, 1) restarts
    from the best point with step0. Each step costs one loss and one gradient evaluation.

    Parameters
    ----------
    oracle : Oracle
        See Common parameters.
    theta0 : torch.Tensor
        Start, [S, P].
    steps : int
        Number of steps.
    step0 : torch.Tensor
        First (and fallback) step size per replica, [S], e.g. 1 / L.

    Returns
    -------
    best : torch.Tensor
        Lowest-loss point seen, [S, P].
    f_best : torch.Tensor
        Its global loss, [S].
    g_best : torch.Tensor
        Its global gradient, [S, P].

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> best, f_best, g_best = descend(oracle, oracle.init_params(), 50, 1.0 / oracle.constants.L)
    >>> bool(torch.allclose(f_best, oracle.constants.f_star)), bool((g_best.norm(dim=-1) < 1e-6).all())
    (True, True)
    """
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

    The methods and their uncertainties are those of the module docstring: L is the larger of
    the largest |Hessian eigenvalue| at theta_0 and at the optimum point; mu, sigma2 and zeta2
    are taken at the optimum point; F0 = f(theta_0) - f*.

    Parameters
    ----------
    oracle : Oracle
        Any oracle (theory_lab/oracle.py); a synthetic one also carries `constants`.
    batch_size : int, optional
        Minibatch size b of the sigma2 draws (pairs per client).
    draws : int, optional
        Number of minibatch draws for sigma2.
    power_iters : int, optional
        Largest number of power iterations for L (at each of the two points).
    mu_iters : int, optional
        Largest number of power iterations for mu.
    descent_steps : int, optional
        BB steps of the descent that finds the optimum point when neither `at` nor the exact
        theta* is used.
    at : torch.Tensor or None, optional
        The optimum point to use, [S, P].
    f_star : torch.Tensor or None, optional
        A known lowest loss, [S] (or a scalar); the reference f* is the smaller of it and the
        loss at the optimum point. Ignored when the exact f* is used.
    use_exact_optimum : bool, optional
        Use the synthetic oracle's theta* (unless `at` is given) and its exact f* (even with
        `at`, for F0).
    fd_eps : float or None, optional
        Central-difference step; None: `default_fd_eps`.
    exact_hessian : bool or None, optional
        See above and `HessianOps`.
    seed : int, optional
        Seed of the power-iteration starts and the minibatch draws.

    Returns
    -------
    Estimates
        The five constants with uncertainties ([S] each), the optimum point, f* and provenance
        in `meta`.

    Raises
    ------
    ConfigError
        batch_size < 1 or draws < 2 (from `minibatch_variance`).

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> est = estimate_constants(oracle, draws=16)
    >>> exact = exact_values(oracle)
    >>> est.L.value.round(4), exact["L"].round(4)
    (array([0.3411, 0.3272]), array([0.3411, 0.3272]))
    >>> est.mu.value.round(4), exact["mu"].round(4)
    (array([0.2195, 0.202 ]), array([0.2195, 0.202 ]))
    >>> bool((abs(est.sigma2.value - exact["sigma2"]) <= 3 * est.sigma2.stderr).all())
    True
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
    """The synthetic oracle's exact constants (L, mu, sigma2, zeta2, F0), or None.

    Parameters
    ----------
    oracle : Oracle
        Any oracle; the exact constants are read from its `constants`, if it has them.

    Returns
    -------
    dict of str to numpy.ndarray, or None
        For each name in `NAMES`, the exact values [S] (float64); None when the oracle has no
        `constants` (e.g. the LLM oracle).

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> x = exact_values(oracle)
    >>> list(x), x["zeta2"].shape
    (['L', 'mu', 'sigma2', 'zeta2', 'F0'], (2,))
    >>> exact_values(object()) is None
    True
    """
    c = getattr(oracle, "constants", None)
    if c is None:
        return None
    return {name: _np(getattr(c, name)) for name in NAMES}


def comparison(est: Estimates, exact: dict | None) -> dict:
    """Per constant: estimate, uncertainty, and (when known) exact value, ratio and |diff|/stderr.

    Parameters
    ----------
    est : Estimates
        The estimates (`estimate_constants`).
    exact : dict or None
        Exact values per name, [S] each (`exact_values`), or None.

    Returns
    -------
    dict
        For each name in `NAMES`, a row {"estimate", "stderr"} (lists of S floats) plus, with
        `exact`, "exact", "ratio" (estimate / exact) and "z" (|estimate - exact| / stderr, the
        stderr floored at float64 rounding of the exact value: a value that is exact by
        construction, stderr 0, gets z <= 1 instead of inf or nan).

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> rows = comparison(estimate_constants(oracle, draws=16), exact_values(oracle))
    >>> list(rows["L"])
    ['estimate', 'stderr', 'exact', 'ratio', 'z']
    >>> [round(r, 6) for r in rows["F0"]["ratio"]]
    [1.0, 1.0]
    >>> all(z <= 1 for z in rows["zeta2"]["z"])   # exact at theta* by construction: stderr 0, z finite
    True
    >>> list(comparison(estimate_constants(oracle, draws=16), None)["mu"])
    ['estimate', 'stderr']
    """
    out = {}
    for name in NAMES:
        e = est.get(name)
        row = {"estimate": e.value.tolist(), "stderr": e.stderr.tolist()}
        if exact is not None:
            x = exact[name]
            with np.errstate(divide="ignore", invalid="ignore"):
                row["exact"] = x.tolist()
                row["ratio"] = (e.value / x).tolist()
                rounding = 8 * np.finfo(np.float64).eps * np.abs(x)   # a zero stderr still has rounding
                row["z"] = (np.abs(e.value - x) / np.maximum(e.stderr, rounding)).tolist()
        out[name] = row
    return out
