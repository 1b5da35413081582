"""Hard instances of lower-bound proofs, as oracles the project's algorithms run on unchanged.

`TwoTypeQuadratic` is the heterogeneous instance of `theory_lab.bounds.local_sgd_lower_bound`
(theory.md 5.1, "Lower bounds"): local steps drift towards the curved clients' own minimiser, so
local SGD's fixed point misses x* while minibatch SGD's does not. It follows the Oracle protocol
(theory_lab/oracle.py); `grad`, `loss` and `evaluate` are pure.

>>> import torch
>>> o = TwoTypeQuadratic(H=1.0, zeta=0.5, D=1.0, n_clients=4)
>>> o.grad(torch.zeros(1, 4, 1), None, None)[0, :, 0].tolist()   # ±zeta at x* = 0
[-0.5, 0.5, -0.5, 0.5]
"""

from __future__ import annotations

import math

import torch

from theory_lab.bounds import Constants

DTYPE = torch.float64


class TwoTypeQuadratic:
    """M clients on x in R (M even): even clients f(x) = H x^2/2 - zeta x, odd clients the
    linear f(x) = zeta x. F = H x^2/4, x* = 0, F* = 0; every f_i is convex and H-smooth and the
    gradient dissimilarity at x* is exactly zeta^2. A stochastic gradient adds N(0, sigma2/b)
    per client (the same curvature for every sample: the per-sample smoothness is H too).

    The start is x_0 = -D: local SGD's fixed point lies on that side of x* for eta H <= 1, so
    the transient and the drift add up instead of cancelling (what the lower bound needs).
    With zeta = 0 the clients still differ in curvature but agree at x*: no drift.

    Parameters
    ----------
    H, zeta, D : float
        Curvature of the curved clients, gradient dissimilarity at x*, distance of x_0 to x*.
    n_clients : int
        M, even (alternating types: on a ring every neighbour has the other type).
    sigma2 : float
        Per-sample gradient noise variance.
    n_seeds : int
        Independent replicas (the noise differs; the instance is the same).
    """

    dim = 1
    dtype = DTYPE

    def __init__(self, H: float, zeta: float, D: float, n_clients: int = 4, sigma2: float = 0.0, n_seeds: int = 1):
        if n_clients < 2 or n_clients % 2:
            raise ValueError(f"n_clients must be even and >= 2, got {n_clients}")
        if not (H > 0 and zeta >= 0 and D >= 0 and sigma2 >= 0):
            raise ValueError("need H > 0 and zeta, D, sigma2 >= 0")
        self.H, self.zeta, self.D, self.sigma2 = float(H), float(zeta), float(D), float(sigma2)
        self.n_clients, self.n_seeds = n_clients, n_seeds
        curved = torch.arange(n_clients) % 2 == 0
        self.curvature = torch.where(curved, self.H, 0.0).to(DTYPE)       # [M]
        self.slope = torch.where(curved, -self.zeta, self.zeta).to(DTYPE)  # [M]
        self.weights = torch.full((n_seeds, n_clients), 1.0 / n_clients, dtype=DTYPE)
        self.smoothness = torch.full((n_seeds,), self.H / 2, dtype=DTYPE)  # of F
        self._s = torch.arange(n_seeds)[:, None]

    def constants(self) -> Constants:
        """The theorems' constants: F is H/2-smooth and H/2-strongly convex; the clients are
        H-smooth (per sample too) but the linear ones are not strongly convex (mu_global = 0)."""
        return Constants(L=self.H / 2, mu=self.H / 2, sigma2=self.sigma2, zeta2=self.zeta**2,
                         F0=self.H * self.D**2 / 4, n=self.n_clients, L_max=self.H, D2=self.D**2,
                         L_sample=self.H, mu_global=0.0)

    # ---- the Oracle protocol ----
    def init_params(self) -> torch.Tensor:
        return torch.full((self.n_seeds, 1), -self.D, dtype=DTYPE)

    def sample_batch(self, gen: torch.Generator, batch_size: int):
        """Each client's minibatch-mean noise [S, M, 1] (None: exact gradients)."""
        if batch_size == 0:
            return None
        noise = torch.randn(self.n_seeds, self.n_clients, 1, generator=gen, dtype=DTYPE)
        return noise * math.sqrt(self.sigma2 / batch_size)

    def _rows(self, clients):
        return torch.arange(self.n_clients).expand(self.n_seeds, -1) if clients is None else clients

    def grad(self, X, clients, batch):
        """[S, K, 1]: H_i x + c_i (+ the batch's noise) at each row."""
        c = self._rows(clients)
        g = self.curvature[c, None] * X + self.slope[c, None]
        return g if batch is None else g + batch[self._s, c]

    def local_step(self, X, clients, batch):
        return self.grad(X, clients, batch)   # no client state

    def loss(self, X, clients=None, batch=None):
        """[S, K]: each row's exact client loss (the noise has mean zero)."""
        c = self._rows(clients)
        x = X[..., 0]
        return 0.5 * self.curvature[c] * x**2 + self.slope[c] * x

    def evaluate(self, theta):
        x = theta[:, 0]
        f = self.H / 4 * x**2
        return {"subopt": f, "train_loss": f, "grad_norm_sq": (self.H / 2 * x) ** 2, "dist_to_opt": x**2}

    # ---- closed forms ----
    def local_sgd_expected_subopt(self, R, eta: float, K: int, batch_size: int = 0) -> torch.Tensor:
        """Exact E F(x_R) - F* of local SGD (FedDPO: K steps of size eta, full participation,
        server step 1) after R rounds: the mean follows the noiseless affine recursion
        x -> rho x + (1 - rho) x_inf and the variance V -> rho^2 V + v (theory.md 5.1).
        Valid for 0 < eta H < 2 (convergent local steps)."""
        R = torch.as_tensor(R, dtype=DTYPE)
        s = 1.0 - eta * self.H
        j = torch.arange(K, dtype=DTYPE)
        geo, geo2 = (s**j).sum(), (s ** (2 * j)).sum()
        rho = (1.0 + s**K) / 2.0
        x_inf = -(self.zeta / self.H) * (K / geo - 1.0)
        mean = x_inf + rho**R * (-self.D - x_inf)
        noise = self.sigma2 / batch_size if batch_size else 0.0
        v = eta**2 * noise * (geo2 + K) / (2 * self.n_clients)   # one round's averaged noise
        var = v * (1.0 - rho ** (2 * R)) / (1.0 - rho**2)
        return self.H / 4 * (mean**2 + var)
