"""The exact staleness model (theory_lab.bounds.staleness_floor_exact, docs/theory.md §3.4) against
a Monte-Carlo simulation of the same quadratic with the same delay model as FedDPO.start_models:
every participant draws its own delay, uniform on {0..q_max}, every round."""

from __future__ import annotations

import numpy as np
import pytest

from theory_lab import bounds as bd

H = np.diag([1.0, 0.3])
C_CLIENT = np.array([[1.0, 0.3], [0.3, 0.5]])      # per-client gradient noise covariance
W = np.full(8, 1 / 8)


def simulate(eta, q, rule, *, E=1, eta_g=1.0, weights=W, chains=400, rounds=3000, burn=400, seed=0):
    """Stationary E f of FedDPO on f_i = 1/2 x^T H x with per-client delays, noise N(0, C_CLIENT):
    the time and chain average of f(server model) after `burn` rounds."""
    rng = np.random.default_rng(seed)
    n, d = len(weights), H.shape[0]
    chol = np.linalg.cholesky(C_CLIENT)
    hist = np.zeros((q + 1, chains, d))             # server models, newest first
    total = 0.0
    for t in range(rounds):
        delay = rng.integers(0, q + 1, size=(chains, n))
        start = hist[delay, np.arange(chains)[:, None]]
        x = start
        for _ in range(E):
            x = x - eta * (x @ H + rng.standard_normal((chains, n, d)) @ chol.T)
        if rule == "model_average":
            new = hist[0] + eta_g * (np.einsum("i,cid->cd", weights, x) - hist[0])
        else:
            new = hist[0] + eta_g * np.einsum("i,cid->cd", weights, x - start)
        hist = np.concatenate([new[None], hist[:-1]])
        if t >= burn:
            total += 0.5 * np.einsum("cd,de,ce->", new, H, new) / chains
    return total / (rounds - burn)


@pytest.mark.parametrize("rule", ["model_average", "delta"])
@pytest.mark.parametrize("q", [1, 4, 8])
def test_exact_staleness_matches_monte_carlo(rule, q):
    eta = 0.2
    exact = bd.staleness_floor_exact(eta, H, C_CLIENT * (W @ W), q, W, rule=rule)
    assert simulate(eta, q, rule) == pytest.approx(exact, rel=0.05)


def test_exact_staleness_local_steps_server_step_and_unequal_weights():
    w = np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    for rule in ("model_average", "delta"):
        exact = bd.staleness_floor_exact(0.1, H, C_CLIENT * (w @ w), 3, w, E=3, eta_g=0.7, rule=rule)
        assert simulate(0.1, 3, rule, E=3, eta_g=0.7, weights=w, chains=300) == pytest.approx(exact, rel=0.05)


def test_old_formulas_are_off_where_the_exact_model_is_not():
    """The replaced forms: base/(1+q_bar) misses the random-delay fluctuation (+9% at n = 8,
    q_max = 4, leading order); 1 + gamma L q_bar overstates the delta-rule increment by
    L tr(C)/tr(HC) (1.8x for H = diag(1, 0.1), C = I)."""
    assert bd.staleness_model_factor(4, 1 / 8) * (1 + 2) == pytest.approx(12 / 11, rel=1e-6)
    Hd, C = np.diag([1.0, 0.1]), np.eye(2)
    gamma = 0.001
    base = bd.staleness_floor_exact(gamma, Hd, C, 0, W, rule="delta")
    increment = bd.staleness_floor_exact(gamma, Hd, C, 8, W, rule="delta") / base - 1
    assert gamma * bd.noise_curvature(Hd, C) * 4 / increment == pytest.approx(1.0, rel=0.01)
    assert gamma * 1.0 * 4 / increment == pytest.approx(1.0 / 0.55, rel=0.01)


@pytest.mark.parametrize("w2", [0.0, 0.1, 1 / 3, 1.0])
def test_model_rule_leading_order_closed_form(w2):
    """For eta_g = 1 and uniform delays: floor(q)/floor(0) -> 1 / (1 + q_bar (1 - sum w_i^2))."""
    for q in (1, 2, 5, 8):
        assert bd.staleness_model_factor(q, w2) == pytest.approx(1 / (1 + q / 2 * (1 - w2)), rel=1e-6)


def test_leading_order_forms_are_the_small_step_limit_of_the_exact_model():
    C = C_CLIENT * (W @ W)
    gamma = 1e-4                                     # corrections are O(gamma h q_max)
    base = bd.staleness_floor_exact(gamma, H, C, 0, W)
    assert base == pytest.approx(bd.sgd_noise_floor(gamma, np.trace(C)), rel=1e-3)
    for q in (2, 6):
        model = bd.staleness_floor(gamma, q, base, None, rule="model_average", sum_w2=W @ W)
        delta = bd.staleness_floor(gamma, q, base, bd.noise_curvature(H, C), rule="delta")
        assert bd.staleness_floor_exact(gamma, H, C, q, W, rule="model_average") == pytest.approx(model, rel=1e-3)
        assert bd.staleness_floor_exact(gamma, H, C, q, W, rule="delta") == pytest.approx(delta, rel=1e-4)


def test_equal_delays_decouple_and_instability_is_reported():
    C = C_CLIENT * (W @ W)
    base = bd.staleness_floor_exact(0.2, H, C, 0, W)
    assert bd.staleness_floor_exact(0.2, H, C, 5, W, delay="max") == pytest.approx(base, rel=1e-9)
    assert bd.staleness_model_factor(5, 1 / 8, delay="max") == pytest.approx(1.0, rel=1e-9)
    # delta rule, fixed delay 2: stable only for gamma h < 2 sin(pi/10) = 0.618
    assert np.isfinite(bd.staleness_floor_exact(0.6, H, C, 2, W, rule="delta", delay="max"))
    assert bd.staleness_floor_exact(0.64, H, C, 2, W, rule="delta", delay="max") == np.inf


def test_lag_weight_moments_match_sampling():
    rng = np.random.default_rng(1)
    w = np.array([0.5, 0.3, 0.2])
    p, cov = bd.lag_weight_moments(3, w)
    d = rng.integers(0, 4, size=(200_000, 3))
    pi = np.stack([(w * (d == j)).sum(1) for j in range(4)], 1)
    assert np.allclose(pi.mean(0), p, atol=3e-3)
    assert np.allclose(np.cov(pi.T), cov, atol=3e-3)
