"""The local-SGD lower bound on its hard instance (theory.md 5.1, "Lower bounds"): the bound's
numbers, the instance's oracle, lower ≤ observed for FedDPO, and the controls the same check
refutes (minibatch SGD and the ζ = 0 instance go below it)."""

import numpy as np
import pytest
import torch

from analysis import bound_validity
from synthetic.hard_instances import TwoTypeQuadratic
from theory_lab import bounds
from theory_lab.algorithms import make_algorithm
from theory_lab.claims import REGISTRY, Context
from theory_lab.claims.bound_claims import subopt_at
from theory_lab.communicator import InProcessCommunicator
from theory_lab.config import AlgorithmConfig


def noiseless_local_gd(R, eta, K, H=1.0, zeta=1.0, D=1.0):
    """F(x_R) of local GD on the two-type instance, by plain iteration (no closed form)."""
    x = -D
    for _ in range(R):
        curved, linear = x, x
        for _ in range(K):
            curved -= eta * (H * curved - zeta)
            linear -= eta * zeta
        x = (curved + linear) / 2
    return H / 4 * x**2


# ---- the bound functions on hand-made numbers ----

def test_drift_factor_by_hand():
    # K = 2: f = 2u/(1 - (1-u)^2) - 1 = u/(2 - u); at u = 1 every K gives K - 1
    assert bounds.local_drift_factor(0.5, 2) == pytest.approx(1 / 3)
    assert bounds.local_drift_factor(1.0, 5) == pytest.approx(4.0)
    assert bounds.local_drift_factor(0.0, 5) == 0.0
    u = np.linspace(0, 1, 101)
    assert np.all(np.diff(bounds.local_drift_factor(u, 6)) > 0)   # the proof needs it increasing


def test_lower_bound_by_hand_at_one_round():
    """R = 1, K = 2, H = zeta = D = 1: t ≤ 1/2 gives u_t = 1, f = 1 and min(t², (1-t)²) = t²,
    largest at t = 1/2; t > 1/2 gives less. So the bound is (1/4)(1/2)² = 1/16."""
    got = bounds.local_sgd_lower_bound(1, 2, 1.0, 1.0, 1.0)
    assert (1 - 2e-3) / 16 <= got <= 1 / 16   # the maximum over a grid of t: never above the true one


def test_lower_bound_is_zero_without_local_steps_or_dissimilarity():
    assert bounds.local_sgd_lower_bound(10, 1, 1.0, 1.0, 1.0) == 0.0
    assert bounds.local_sgd_lower_bound(10, 4, 1.0, 0.0, 1.0) == 0.0


@pytest.mark.parametrize("K, R", [(2, 5), (4, 20), (8, 60)])
def test_lower_bound_is_below_every_step_and_within_8x_of_the_best(K, R):
    """Below the exact error at every η ≤ 1/H (iterated, not the closed form), and not vacuous:
    the best step on a fine grid is within 8x of it."""
    errors = np.asarray([noiseless_local_gd(R, eta, K) for eta in np.geomspace(1e-4, 1.0, 300)])
    lower = bounds.local_sgd_lower_bound(R, K, 1.0, 1.0, 1.0)
    assert lower <= errors.min()
    assert errors.min() <= 8 * lower


def test_lower_bound_scales_with_its_constants():
    """ζ² and D² scale together: (ζ², D²) -> (c ζ², c D²) multiplies it by c; H -> c H with
    ζ -> c ζ (same drift in x) multiplies it by c."""
    base = bounds.local_sgd_lower_bound(20, 4, 1.0, 1.0, 1.0)
    assert bounds.local_sgd_lower_bound(20, 4, 1.0, 3.0, 3.0) == pytest.approx(3 * base)
    assert bounds.local_sgd_lower_bound(20, 4, 2.0, 4.0, 1.0) == pytest.approx(2 * base)


def test_lower_bound_rejects_steps_outside_its_class():
    with pytest.raises(Exception):
        bounds.local_drift_factor(1.5, 3)


# ---- the oracle ----

def test_gradient_matches_finite_differences_and_is_pure():
    o = TwoTypeQuadratic(H=2.0, zeta=0.7, D=1.0, n_clients=6, sigma2=0.0, n_seeds=2)
    X = torch.randn(2, 6, 1, dtype=torch.float64)
    before = X.clone()
    g, h = o.grad(X, None, None), 1e-6
    fd = (o.loss(X + h) - o.loss(X - h)) / (2 * h)
    assert torch.allclose(g[..., 0], fd, atol=1e-8)
    assert torch.equal(o.grad(X, None, None), g) and torch.equal(X, before)
    clients, seed = torch.tensor([[1, 4], [0, 5]]), torch.arange(2)[:, None]
    assert torch.equal(o.grad(X[seed, clients], clients, None), g[seed, clients])


def test_global_objective_and_constants():
    o = TwoTypeQuadratic(H=2.0, zeta=0.7, D=1.5, n_clients=4)
    theta = torch.tensor([[0.3]], dtype=torch.float64)
    rows = theta[:, None].expand(-1, 4, -1)
    assert float(o.loss(rows).mean()) == pytest.approx(float(o.evaluate(theta)["subopt"]))   # F* = 0
    g0 = o.grad(torch.zeros(1, 4, 1, dtype=torch.float64), None, None)
    c = o.constants()
    assert float(g0.pow(2).mean()) == pytest.approx(c.zeta2) and float(g0.mean()) == 0.0       # x* = 0
    assert float(o.evaluate(o.init_params())["subopt"]) == pytest.approx(c.F0)


def test_noise_has_the_declared_variance():
    o = TwoTypeQuadratic(H=1.0, zeta=1.0, D=1.0, n_clients=4, sigma2=0.5, n_seeds=2000)
    noise = o.sample_batch(torch.Generator().manual_seed(0), 5)
    assert float(noise.var()) == pytest.approx(0.5 / 5, rel=0.05)
    assert o.sample_batch(torch.Generator(), 0) is None


def test_feddpo_on_the_instance_is_the_closed_form():
    """The project's FedDPO reproduces the exact mean recursion (noiseless: to rounding) and the
    expected error with noise (within 4 standard errors over 400 replicas)."""
    exact = TwoTypeQuadratic(1.0, 1.0, 1.0, 4)
    got = subopt_at(exact, "feddpo", 4, 0.1, [20], 0)[0]
    assert got == pytest.approx(float(exact.local_sgd_expected_subopt(20, 0.1, 4)), rel=1e-10)
    assert got == pytest.approx(noiseless_local_gd(20, 0.1, 4), rel=1e-10)
    noisy = TwoTypeQuadratic(1.0, 1.0, 1.0, 4, sigma2=0.05, n_seeds=400)
    alg = make_algorithm(AlgorithmConfig(name="feddpo", local_steps=4, lr=0.1, batch_size=1), noisy,
                              InProcessCommunicator(), torch.Generator().manual_seed(1), 20)
    for r in range(20):
        alg.round(r)
    runs = noisy.evaluate(alg.model())["subopt"]
    expected = float(noisy.local_sgd_expected_subopt(20, 0.1, 4, 1))
    assert abs(float(runs.mean()) - expected) < 4 * float(runs.std()) / 20


# ---- lower ≤ observed, and the controls the same check refutes ----

ETAS = np.geomspace(1e-3, 1.0, 7)


def best(oracle, name, K, R):
    return min(subopt_at(oracle, name, K, eta, [R], 1)[0] for eta in ETAS)


@pytest.mark.parametrize("K, R", [(2, 10), (8, 30)])
def test_local_sgd_stays_above_the_bound_and_the_controls_go_below(K, R):
    hard = TwoTypeQuadratic(1.0, 1.0, 1.0, 4, sigma2=1e-3, n_seeds=4)
    lower = bounds.local_sgd_lower_bound(R, K, 1.0, 1.0, 1.0)
    local = [subopt_at(hard, "feddpo", K, eta, [R], 1)[0] for eta in ETAS]
    assert bound_validity(lower, local)["valid"]
    assert not bound_validity(lower, best(hard, "centralized", K, R))["valid"]          # minibatch SGD
    flat = TwoTypeQuadratic(1.0, 0.0, 1.0, 4, sigma2=1e-3, n_seeds=4)
    assert not bound_validity(lower, best(flat, "feddpo", K, R))["valid"]              # ζ = 0


def test_claim_is_confirmed_with_every_control_refuted():
    c = REGISTRY["local-sgd-lower-bound"]
    out = c.run(Context(quick=True, seeds=3))
    assert out.prediction.status == "confirmed", out.prediction.reason
    assert {k.name for k in c.controls} == set(out.controls)
    assert all(o.verdict.status == "refuted" for o in out.controls.values())
    assert out.verdict.status == "confirmed"
    gaps = out.details["by setting"]
    assert all(1.0 <= g["observed/lower"] <= g["upper/lower"] for g in gaps.values())
