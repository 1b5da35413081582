"""Curvature of any oracle from its gradients: Hessian products of every client at one point (closed
form, or central differences of exact gradients) and the extreme eigenvalues of the global Hessian
by power iteration, per replica. `theory_lab.estimate` reads L and mu from them.

Common parameters
-----------------
ops : HessianOps
    The Hessian products at the point of interest.
gen : torch.Generator
    Generator of the power iteration's random start.
iters : int, optional
    Largest number of power iterations.
rtol : float, optional
    Relative residual at which to stop.

The examples run on ``SyntheticOracle(problem.example_problem())`` (`synthetic.problem.example_problem`:
S = 2 replicas, N = 2 clients, P = 3 parameters; exact constants known).
"""

from __future__ import annotations

import torch


def default_fd_eps(theta: torch.Tensor) -> torch.Tensor:
    """[S]: central-difference step, (machine eps)^(1/3) scaled by max(1, ||theta||).

    Parameters
    ----------
    theta : torch.Tensor
        The point of the difference quotients, [S, P]; its dtype sets the machine eps.

    Returns
    -------
    torch.Tensor
        The step e per replica, [S].

    Notes
    -----
    A central difference has truncation error O(e^2) and round-off error O(eps / e); the two
    balance at e ~ eps^(1/3) relative to the scale of theta.

    Examples
    --------
    >>> theta = torch.tensor([[0.0, 0.0], [6.0, 8.0]], dtype=torch.float64)
    >>> [f"{e:.4e}" for e in default_fd_eps(theta)]                # ||theta|| = 0 and 10
    ['6.0555e-06', '6.0555e-05']
    """
    base = torch.finfo(theta.dtype).eps ** (1.0 / 3.0)
    return base * theta.norm(dim=-1).clamp_min(1.0)


class HessianOps:
    """Hessian products of every client at one model theta [S, P]: closed form when the oracle has
    `hessian` (and P is small), else central differences of exact gradients.

    Parameters
    ----------
    oracle : Oracle
        See Common parameters.
    theta : torch.Tensor
        The point of the Hessians, [S, P].
    fd_eps : float or None, optional
        Central-difference step for every replica; None (or 0) uses `default_fd_eps(theta)`.
    exact : bool or None, optional
        True: closed-form Hessians `oracle.hessian` (the oracle must have it); False: central
        differences; None: closed form when the oracle has `hessian` and P <= 512.

    Attributes
    ----------
    exact : bool
        Which of the two is used.
    evals : int
        Gradient calls spent so far (2 per finite-difference product; 0 in closed form).
    H, Hbar : torch.Tensor
        Closed form only: client Hessians [S, N, P, P] and the global one sum_i w_i H_i
        [S, P, P].
    eps : torch.Tensor
        Finite differences only: the step per replica, [S].

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> theta = oracle.constants.theta_star
    >>> exact, fd = HessianOps(oracle, theta), HessianOps(oracle, theta, exact=False)
    >>> exact.exact, fd.exact
    (True, False)
    >>> V = torch.ones(2, 3, dtype=torch.float64)
    >>> bool(torch.allclose(exact.hvp(V), fd.hvp(V), atol=1e-8)), fd.evals
    (True, 2)
    """

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
        """H_i(theta) u_i for every client row: U [S, N, P] -> [S, N, P].

        Finite differences use the unit direction u_i / ||u_i|| with step e and scale back by
        ||u_i||, so the step does not depend on the size of U (2 gradient calls).

        Parameters
        ----------
        U : torch.Tensor
            One direction per client, [S, N, P].

        Returns
        -------
        torch.Tensor
            H_i(theta) u_i, [S, N, P].

        Examples
        --------
        >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
        >>> ops = HessianOps(oracle, oracle.constants.theta_star, exact=False)
        >>> U = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> HU = ops.client_hvp(U)
        >>> HU.shape, bool(torch.allclose(HU, torch.einsum("skpq,skq->skp", oracle.hessian(
        ...     oracle.constants.theta_star.unsqueeze(1).expand(-1, 2, -1)), U), atol=1e-8))
        (torch.Size([2, 2, 3]), True)
        """
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
        """Global Hessian product sum_i w_i H_i v: V [S, P] -> [S, P].

        Parameters
        ----------
        V : torch.Tensor
            One direction per replica, [S, P].

        Returns
        -------
        torch.Tensor
            H(theta) v with H = sum_i w_i H_i, [S, P].

        Examples
        --------
        >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
        >>> ops = HessianOps(oracle, oracle.constants.theta_star)   # closed form
        >>> V = torch.eye(3, dtype=torch.float64)[:2]
        >>> bool(torch.allclose(ops.hvp(V), torch.stack([ops.Hbar[0, :, 0], ops.Hbar[1, :, 1]])))
        True
        """
        if self.exact:
            return torch.einsum("spq,sq->sp", self.Hbar, V)
        U = V.unsqueeze(1).expand(-1, self.oracle.n_clients, -1)
        return torch.einsum("sk,skp->sp", self.w, self.client_hvp(U))

    def fd_error(self, V: torch.Tensor) -> torch.Tensor:
        """[S]: error estimate of the difference quotient along V [S, P] (unit rows): the Richardson
        difference ||Hv(2e) - Hv(e)|| / 3 of a central difference (0 for closed-form Hessians).

        Parameters
        ----------
        V : torch.Tensor
            Directions, [S, P], unit rows.

        Returns
        -------
        torch.Tensor
            The error estimate, [S] (4 gradient calls with finite differences).

        Examples
        --------
        >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
        >>> theta = oracle.constants.theta_star
        >>> V = torch.nn.functional.normalize(torch.ones(2, 3, dtype=torch.float64), dim=-1)
        >>> bool((HessianOps(oracle, theta, exact=False).fd_error(V) < 1e-8).all())
        True
        >>> HessianOps(oracle, theta, exact=True).fd_error(V)
        tensor([0., 0.], dtype=torch.float64)
        """
        if self.exact:
            return torch.zeros(V.shape[0], dtype=V.dtype)
        eps = self.eps
        a = self.hvp(V)
        self.eps = 2 * eps
        b = self.hvp(V)
        self.eps = eps
        return (b - a).norm(dim=-1) / 3

    def solve(self, V: torch.Tensor, iters: int = 200, rtol: float = 1e-10):
        """H^-1 v by conjugate gradients (exact solve for closed-form Hessians): returns (u, ||Hu - v||).

        Conjugate gradients stop per replica when ||r|| <= rtol ||v||, or where the curvature
        p^T H p is not positive (CG needs H positive definite); the returned residual tells.

        Parameters
        ----------
        V : torch.Tensor
            Right-hand sides, [S, P].
        iters : int, optional
            Largest number of CG iterations.
        rtol : float, optional
            Relative residual at which a replica stops.

        Returns
        -------
        u : torch.Tensor
            Approximate H^-1 v, [S, P].
        residual : torch.Tensor
            ||H u - v||, [S].

        Examples
        --------
        >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
        >>> ops = HessianOps(oracle, oracle.constants.theta_star, exact=False)
        >>> u, res = ops.solve(torch.ones(2, 3, dtype=torch.float64))
        >>> u.shape, bool((res < 1e-8).all())
        (torch.Size([2, 3]), True)
        """
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
    Returns (lambda [S], residual ||A v - lambda v|| [S], iterations used, v [S, P]).

    Starts from a random unit vector per replica and stops when every replica's residual is
    <= rtol |lambda|, or after `iters` iterations. lambda is the Rayleigh quotient v^T A v of
    the last iterate v (signed); an eigenvalue of A lies within the residual of it.

    Parameters
    ----------
    apply : callable
        v [S, P] -> A v [S, P], A symmetric per replica.
    dim_shape : tuple of int
        Shape of v, (S, P).
    gen
        See Common parameters.
    dtype : torch.dtype
        dtype of v.
    iters, rtol
        See Common parameters (one `apply` per iteration).

    Returns
    -------
    lam : torch.Tensor
        Rayleigh quotient, [S].
    residual : torch.Tensor
        ||A v - lam v||, [S].
    iterations : int
        Iterations used.
    v : torch.Tensor
        The unit vector lam belongs to, [S, P].

    Examples
    --------
    >>> A = torch.diag(torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64))
    >>> lam, res, it, v = power_iteration(lambda v: v @ A, (2, 3), torch.Generator().manual_seed(0),
    ...                                   torch.float64)
    >>> lam.round(decimals=6), bool((res <= 1e-8 * 3).all()), v.abs().round(decimals=4)
    (tensor([3., 3.], dtype=torch.float64), True, tensor([[1., 0., 0.],
            [1., 0., 0.]], dtype=torch.float64))
    """
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
    residual ||Hv - lambda v|| plus the finite-difference error along v.

    Parameters
    ----------
    ops, gen, iters, rtol
        See Common parameters.

    Returns
    -------
    lam : torch.Tensor
        Largest |eigenvalue| of sum_i w_i H_i, [S].
    uncertainty : torch.Tensor
        [S], as above.
    iterations : int
        Power iterations used.

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> theta = oracle.constants.theta_star
    >>> lam, err, it = largest_eig(HessianOps(oracle, theta, exact=False), torch.Generator().manual_seed(0))
    >>> bool((abs(lam - oracle.hessian_max_eig_at(theta)) <= err + 1e-10).all())
    True
    """
    lam, res, it, v = power_iteration(ops.hvp, ops.theta.shape, gen, ops.theta.dtype, iters, rtol)
    return lam.abs(), res + ops.fd_error(v), it


def smallest_eig(ops: HessianOps, top: torch.Tensor, gen, iters=300, rtol=1e-8):
    """(lambda_min [S], uncertainty [S], iterations) by power iteration on (s I - H), s = |lambda_max|.

    The eigenvalues of s I - H lie in [0, 2 s], and its largest one is s - lambda_min, so the
    power iteration finds lambda_min = s - (its eigenvalue). The uncertainty is, as in
    `largest_eig`, the residual plus the finite-difference error along v.

    Parameters
    ----------
    ops, gen, iters
        See Common parameters.
    top : torch.Tensor
        |lambda_max| of the same Hessian, [S] (from `largest_eig`).
    rtol : float, optional
        Relative residual (of s I - H) at which to stop.

    Returns
    -------
    (lam, uncertainty, iterations)
        As `largest_eig`'s, with lam the smallest eigenvalue of sum_i w_i H_i, [S].

    Examples
    --------
    >>> from synthetic import SyntheticOracle, problem; oracle = SyntheticOracle(problem.example_problem())
    >>> ops = HessianOps(oracle, oracle.constants.theta_star, exact=False)
    >>> gen = torch.Generator().manual_seed(0)
    >>> mu, err, it = smallest_eig(ops, largest_eig(ops, gen)[0], gen)
    >>> bool((abs(mu - oracle.constants.mu) <= err + 1e-10).all())  # mu is taken at theta*
    True
    """
    s = top.clamp_min(1e-300)[:, None]
    lam, res, it, v = power_iteration(lambda v: s * v - ops.hvp(v), ops.theta.shape, gen,
                                      ops.theta.dtype, iters, rtol)
    return top - lam, res + ops.fd_error(v), it
