"""Synthetic track: closed forms against autograd / finite differences, and the exact constants."""

import dataclasses

import numpy as np
import pytest
import scipy.optimize
import torch
import torch.nn.functional as F

from synthetic import ProblemConfig, SyntheticOracle, build_problem
from theory_lab.errors import ConfigError

SMALL = dict(n_clients=3, dim=4, n_contexts=5, n_actions=3, pairs_per_client=12,
             client_sizes=[12, 7, 9], heldout_pairs=10, ref_scale=0.7, l2=0.05)


def make(horizon=1, seeds=(0, 1), **kw):
    cfg = ProblemConfig(horizon=horizon, **{**SMALL, **kw})
    return SyntheticOracle(build_problem(cfg, list(seeds)))


def rand_rows(o, K, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = scale * torch.randn(o.n_seeds, K, o.dim, generator=g, dtype=torch.float64)
    clients = torch.randint(o.n_clients, (o.n_seeds, K), generator=g)
    return X, clients


def autograd_grad(o, X, clients, batch=None):
    X = X.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(o.loss(X, clients, batch).sum(), X)
    return g


def autograd_hessian(o, X, clients, batch=None):
    """Rows are independent, so d/dX of Σ_rows grad[..., p] is row p of each row's Hessian."""
    X = X.clone().requires_grad_(True)
    grad = torch.autograd.grad(o.loss(X, clients, batch).sum(), X, create_graph=True)[0]
    rows = [torch.autograd.grad(grad[..., p].sum(), X, retain_graph=True)[0] for p in range(o.dim)]
    return torch.stack(rows, -2)


@pytest.mark.parametrize("horizon", [1, 3])
@pytest.mark.parametrize("minibatch", [False, True])
def test_grad_and_hessian_match_autograd(horizon, minibatch):
    o = make(horizon)
    X, clients = rand_rows(o, K=5)
    batch = o.sample_batch(torch.Generator().manual_seed(1), 4) if minibatch else None
    torch.testing.assert_close(o.grad(X, clients, batch), autograd_grad(o, X, clients, batch))
    torch.testing.assert_close(o.hessian(X, clients, batch),
                               autograd_hessian(o, X, clients, batch))
    # all clients in order (clients=None) is the same as passing arange
    Xa = X[:, :3]
    torch.testing.assert_close(o.grad(Xa, None, batch),
                               o.grad(Xa, torch.arange(3).expand(2, -1), batch))


@pytest.mark.parametrize("horizon", [1, 3])
def test_global_derivatives_match_finite_differences(horizon):
    o = make(horizon)
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(2, o.dim, generator=g, dtype=torch.float64)
    v = torch.randn(2, o.dim, generator=g, dtype=torch.float64)
    eps = 1e-5
    fd = (o.global_loss(theta + eps * v) - o.global_loss(theta - eps * v)) / (2 * eps)
    torch.testing.assert_close(fd, (o.global_grad(theta) * v).sum(-1), rtol=1e-7, atol=1e-9)
    fd_g = (o.global_grad(theta + eps * v) - o.global_grad(theta - eps * v)) / (2 * eps)
    hv = torch.einsum("spq,sq->sp", o.global_hessian(theta), v)
    torch.testing.assert_close(fd_g, hv, rtol=1e-6, atol=1e-8)
    # global = Σ_i w_i (client quantity)
    rows = theta[:, None].expand(-1, o.n_clients, -1)
    torch.testing.assert_close(o.global_grad(theta),
                               torch.einsum("sn,snp->sp", o.weights, o.grad(rows, None, None)))


def test_minibatch_gradient_is_mean_of_sampled_pair_gradients():
    o = make(3)
    X, _ = rand_rows(o, K=3)
    batch = o.sample_batch(torch.Generator().manual_seed(2), 6)
    pairs = o.per_pair_grads(X)                                      # [S, N, n_max, P]
    s, c = torch.arange(2)[:, None, None], torch.arange(3)[None, :, None]
    torch.testing.assert_close(o.grad(X, None, batch), pairs[s, c, batch].mean(2))


def test_horizon1_is_logistic_regression_on_feature_differences():
    o = make(1, beta=0.7)
    p = o.problem
    X, _ = rand_rows(o, K=3)
    Xr = X.clone().requires_grad_(True)
    logits = p.beta * torch.einsum("snjd,snd->snj", p.dphi, Xr - p.theta_ref[:, None])
    bce = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    ref = (p.pair_weight * bce).sum(-1) + 0.5 * p.l2 * Xr.pow(2).sum(-1)
    torch.testing.assert_close(o.loss(X), ref.detach())
    torch.testing.assert_close(o.grad(X), torch.autograd.grad(ref.sum(), Xr)[0])


def test_theta_star_matches_lbfgs_and_constants_are_consistent():
    o = make(1, l2=0.0, pairs_per_client=60, client_sizes=None)
    c = o.constants
    assert (o.global_grad(c.theta_star).norm(dim=-1) < 1e-10).all()
    for s in range(o.n_seeds):
        def fun(x, s=s):
            t = o.problem.theta0.clone()
            t[s] = torch.from_numpy(x)
            return o.global_loss(t)[s].item(), o.global_grad(t)[s].numpy().copy()
        res = scipy.optimize.minimize(fun, np.zeros(o.dim), jac=True, method="L-BFGS-B",
                                      options=dict(gtol=1e-12, ftol=1e-15, maxiter=1000))
        np.testing.assert_allclose(res.x, c.theta_star[s].numpy(), atol=1e-6)
    torch.testing.assert_close(c.F0, o.global_loss(o.init_params()) - c.f_star)
    ev = o.evaluate(c.theta_star)
    assert set(ev) == {"subopt", "grad_norm_sq", "dist_to_opt", "train_loss", "eval_pref_acc",
                       "reward_margin"} and all(v.shape == (2,) for v in ev.values())
    assert ev["subopt"].abs().max() < 1e-12 and ev["dist_to_opt"].max() < 1e-20


def test_horizon3_theta_star_is_a_local_minimum():
    o = make(3)
    c = o.constants
    assert (o.global_grad(c.theta_star).norm(dim=-1) < 1e-10).all()
    assert (c.mu > 0).all()
    torch.testing.assert_close(c.mu, torch.linalg.eigvalsh(o.global_hessian(c.theta_star))[:, 0])


def test_smoothness_exact_for_horizon1_and_an_upper_bound_elsewhere():
    o = make(1, l2=0.1)
    L = o.constants.L
    # h = 0 at θ = θ_ref, where σ(h)σ(−h) = 1/4 attains the bound
    torch.testing.assert_close(o.hessian_max_eig_at(o.problem.theta_ref), L)
    for scale in (0.5, 3.0):
        theta = scale * torch.randn(2, o.dim, generator=torch.Generator().manual_seed(4),
                                    dtype=torch.float64)
        assert (o.hessian_max_eig_at(theta) <= L + 1e-12).all()
    X, clients = rand_rows(o, K=3)
    Lc = o.constants.L_clients[torch.arange(2)[:, None], clients]
    assert (torch.linalg.eigvalsh(o.hessian(X, clients))[..., -1] <= Lc + 1e-12).all()
    o3 = make(3, beta=2.0)
    for scale in (0.0, 1.0, 5.0):
        theta = o3.problem.theta_ref + scale * torch.randn(
            2, o3.dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        H = o3.global_hessian(theta)
        assert (torch.linalg.matrix_norm(H, ord=2) <= o3.constants.L).all()


def test_sigma2_matches_empirical_minibatch_variance():
    o = make(1, n_clients=4, client_sizes=[30, 10, 20, 25])
    c = o.constants
    rows = c.theta_star[:, None].expand(-1, o.n_clients, -1)
    exact = o.grad(rows)
    gen = torch.Generator().manual_seed(7)
    draws = 4000
    acc = torch.zeros(2, o.n_clients, dtype=torch.float64)
    for _ in range(draws):
        acc += (o.grad(rows, None, o.sample_batch(gen, 1)) - exact).pow(2).sum(-1)
    empirical = (o.weights * acc / draws).sum(-1)
    torch.testing.assert_close(empirical, c.sigma2, rtol=0.05, atol=0)


def test_zeta2_grows_with_preference_heterogeneity():
    z = [make(1, heterogeneity=h, reward_scale=1.0, pairs_per_client=200,
              client_sizes=None).constants.zeta2 for h in (0.0, 2.0, 6.0)]
    assert (z[0] < z[1]).all() and (z[1] < z[2]).all()


def test_replica_data_do_not_depend_on_other_seeds():
    for horizon in (1, 3):
        a = make(horizon, seeds=[0, 1]).problem
        b = make(horizon, seeds=[1]).problem
        for f in dataclasses.fields(a):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if isinstance(va, torch.Tensor) and f.name != "sizes":
                assert torch.equal(va[1], vb[0]), f.name
        assert not torch.equal(a.dphi[0], a.dphi[1])


@pytest.mark.parametrize("horizon", [1, 3])
def test_unequal_sizes_weights_and_padding(horizon):
    o = make(horizon, seeds=[0])
    p = o.problem
    weights = torch.tensor([12, 7, 9], dtype=torch.float64) / 28
    torch.testing.assert_close(p.client_weights[0], weights)
    batch = o.sample_batch(torch.Generator().manual_seed(0), 500)
    assert (batch < p.sizes[:, None]).all() and (batch >= 0).all()
    assert set(batch[0, 1].tolist()) == set(range(7))
    X, clients = rand_rows(o, K=4)
    before = (o.loss(X, clients), o.grad(X, clients), o.hessian(X, clients))
    pad = p.pair_weight == 0
    p.dphi[pad] = 5.0                                    # garbage in the padding ...
    if p.visits is not None:
        p.visits[pad] = 3.0
    after = (o.loss(X, clients), o.grad(X, clients), o.hessian(X, clients))
    for u, v in zip(before, after):                      # ... never reaches the oracle
        torch.testing.assert_close(u, v)


@pytest.mark.parametrize("field,value", [
    ("horizon", 0), ("n_clients", 0), ("dim", 0), ("n_contexts", 0), ("n_actions", 1),
    ("pairs_per_client", 0), ("client_sizes", [3, 3]), ("client_sizes", [3, 0, 3]),
    ("heldout_pairs", 0), ("heterogeneity", -1.0), ("dirichlet_alpha", -0.1), ("beta", 0.0),
    ("l2", -1e-3), ("feature_bound", 0.0), ("behaviour", "greedy"), ("init", "random")])
def test_validate_names_the_field(field, value):
    cfg = ProblemConfig(n_clients=3)
    setattr(cfg, field, value)
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert err.value.field == f"problem.{field}" and str(err.value).startswith(f"problem.{field}:")


def test_separable_data_without_l2_is_refused():
    # 3 pairs in 8 dimensions are always separable: no minimiser, so no θ*
    with pytest.raises(ConfigError, match="separable") as err:
        make(1, n_clients=1, client_sizes=None, pairs_per_client=3, dim=8, l2=0.0)
    assert err.value.field == "problem.l2"
    make(1, n_clients=1, client_sizes=None, pairs_per_client=3, dim=8, l2=1e-3)  # fine


def test_heldout_accuracy_beats_chance_with_strong_rewards():
    for horizon in (1, 3):
        o = make(horizon, reward_scale=8.0, pairs_per_client=150, client_sizes=None,
                 heldout_pairs=200, dirichlet_alpha=0.5, behaviour="reference")
        ev = o.evaluate(o.constants.theta_star)
        assert (ev["eval_pref_acc"] > 0.75).all() and (ev["reward_margin"] > 0).all()


def test_shared_data_has_zero_heterogeneity_and_optimum_init_starts_at_theta_star():
    from synthetic.oracle import SyntheticOracle

    cfg = ProblemConfig(n_clients=4, pairs_per_client=30, dim=4, n_contexts=6, heterogeneity=2.0,
                        shared_data=True, l2=0.01)
    oracle = SyntheticOracle(build_problem(cfg, [0, 1]), init="optimum")
    assert float(oracle.constants.zeta2.max()) < 1e-20
    assert float(oracle.evaluate(oracle.init_params())["grad_norm_sq"].max()) < 1e-20
