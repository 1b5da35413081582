"""The constants the rate theorems assume, on the synthetic problem: per-sample smoothness
(Koloskova et al. 2020), the strong convexity every client loss has everywhere, and the
gradient-noise covariance the exact staleness model uses (docs/theory.md §3.4, §5.1)."""

import torch

from synthetic.constants import gradient_noise_covariance
from theory_lab.claims.base import PROBLEM
from theory_lab.config import build_config
from theory_lab.runner import make_oracle


def _oracle(pairs=12):
    cfg = {"run": {"rounds": 1, "seeds": [0, 1]}, "problem": {**PROBLEM, "pairs_per_client": pairs, "n_clients": 3},
           "algorithm": {"name": "feddpo", "lr": 0.1}}
    return make_oracle(build_config(cfg))


def test_sample_smoothness_is_the_largest_single_pair_hessian():
    o = _oracle()
    c = o.constants
    X = o.problem.theta_ref[:, None].expand(-1, o.n_clients, -1).contiguous()   # h = 0: curvature 1/4
    top = torch.zeros(o.n_seeds, dtype=c.L.dtype)
    for j in range(12):
        batch = torch.full((o.n_seeds, o.n_clients, 1), j, dtype=torch.long)
        top = torch.maximum(top, torch.linalg.eigvalsh(o.hessian(X, None, batch))[..., -1].max(-1).values)
    assert torch.allclose(c.L_sample, top, rtol=1e-12)
    assert torch.all(c.L <= c.L_clients.max(-1).values) and torch.all(c.L_clients.max(-1).values < c.L_sample)
    assert torch.allclose(c.mu_global, torch.full_like(c.mu, PROBLEM["l2"])) and torch.all(c.mu_global < c.mu)


def test_noise_covariance_trace_is_the_per_sample_variance():
    o = _oracle()
    C = gradient_noise_covariance(o, o.constants.theta_star)
    assert torch.allclose(C.diagonal(dim1=-2, dim2=-1).sum(-1), o.constants.sigma2_clients, rtol=1e-10)
    assert torch.all(torch.linalg.eigvalsh(C) > -1e-14)
