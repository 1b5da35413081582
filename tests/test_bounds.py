"""Tests of theory_lab.bounds: hand-computed values, monotonicity, and the leading-order floors
against direct simulations / exact second-moment recursions of tiny quadratic problems."""

import dataclasses
import math

import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov

from theory_lab import bounds as bd
from theory_lab.bounds import Constants
from theory_lab.errors import ConfigError

C0 = Constants(L=1.0, mu=0.5, sigma2=2.0, zeta2=1.0, F0=1.0, n=2, D2=4.0)


def ring(n):
    """Metropolis-Hastings weights of a ring: 1/3 on self and both neighbours."""
    W = np.eye(n) / 3
    for i in range(n):
        W[i, (i + 1) % n] = W[i, (i - 1) % n] = 1 / 3
    return W


def random_spd(rng, d, lo=0.5, hi=2.0):
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return Q @ np.diag(rng.uniform(lo, hi, d)) @ Q.T


# ------------------------------------------------------------------ hand-computed instances


def test_floors_hand_computed():
    # noise: eta sigma2 / (4 n b) = 0.1 * 2 / (4*5*4) = 0.2/80
    assert bd.noise_floor(0.1, 2.0, 4, 5) == pytest.approx(0.0025)
    # with eta_g = 2: doubles
    assert bd.noise_floor(0.1, 2.0, 4, 5, eta_g=2.0) == pytest.approx(0.005)
    # grad-norm: eta L sigma2/(2 n b) = 0.1*3*2/(2*20) = 0.015
    # dist2: eta sigma2/(2 mu n b) = 0.2/(2*0.5*20) = 0.01
    assert bd.noise_floor(0.1, 2.0, 4, 5, L=3.0, metric="grad_norm_sq") == pytest.approx(0.015)
    assert bd.noise_floor(0.1, 2.0, 4, 5, mu=0.5, metric="dist2") == pytest.approx(0.01)
    # participation: eta zeta2 (n-S) / (4 S (n-1)) = 0.1*3*3/(4*2*4) = 0.9/32
    assert bd.participation_floor(0.1, 2, 5, 3.0) == pytest.approx(0.028125)
    # with E = 2: doubles ; S = n: zero
    assert bd.participation_floor(0.1, 2, 5, 3.0, E=2) == pytest.approx(0.05625)
    assert bd.participation_floor(0.1, 5, 5, 3.0) == 0.0
    # drift: eta^2 (E-1)^2 L zeta2 / 8 = 0.01*4*4*2/8
    assert bd.drift_floor(0.1, 3, 2.0, 4.0) == pytest.approx(0.04)
    # grad-norm: 0.01*4*16*2/4 = 0.32 ; dist2: 0.01*4*4*2/(4*0.5) = 0.16
    assert bd.drift_floor(0.1, 3, 2.0, 4.0, metric="grad_norm_sq") == pytest.approx(0.32)
    assert bd.drift_floor(0.1, 3, 2.0, 4.0, 0.5, metric="dist2") == pytest.approx(0.16)
    assert bd.drift_floor(0.1, 1, 2.0, 4.0) == 0.0
    # sgd_noise_floor: gamma trC / 4
    assert bd.sgd_noise_floor(0.2, 3.0) == pytest.approx(0.15)


def test_drift_floor_exact_hand_computed():
    # d = 1, two clients w = 1/2: A = (1, 3), c = (0, 1): H = 2, theta* = (0 + 3)/4 = 0.75,
    # g = (0.75, -0.75), v = (1*0.75 + 3*(-0.75))/2 = -0.75; eta (E-1) = 0.1*2 = 0.2
    A, g = np.array([[[1.0]], [[3.0]]]), np.array([[0.75], [-0.75]])
    assert bd.drift_floor_exact(0.1, 3, A, g) == pytest.approx(0.04 * 0.5625 / 2 / 8)        # v^2/H/8
    assert bd.drift_floor_exact(0.1, 3, A, g, metric="grad_norm_sq") == pytest.approx(0.04 * 0.5625 / 4)
    assert bd.drift_floor_exact(0.1, 3, A, g, metric="dist2") == pytest.approx(0.04 * 0.375**2 / 4)
    # exact fixed point: M^3 = (0.729, 0.343): x = (0.657/2) / (1 - (0.729 + 0.343)/2) = 0.3285/0.464
    x = bd.drift_fixed_point_quadratic(0.1, 3, A, np.array([[0.0], [1.0]]))
    assert x[0] == pytest.approx(0.3285 / 0.464)


def test_staleness_hand_computed():
    assert bd.mean_delay(4) == 2.0 and bd.mean_delay(4, "max") == 4.0
    # delta: 0.01 * (1 + eta E kappa qbar) = 0.01 * (1 + 0.1*1*2*2) ; model: 0.01 / (1 + 2) with many
    # clients, 0.01 / (1 + 2 (1 - 1/4)) with 4 equal ones (random-delay fluctuation)
    assert bd.staleness_floor(0.1, 4, 0.01, 2.0) == pytest.approx(0.014)
    assert bd.staleness_floor(0.1, 4, 0.01, 2.0, rule="model_average") == pytest.approx(0.01 / 3)
    assert bd.staleness_floor(0.1, 4, 0.01, 2.0, rule="model_average", sum_w2=0.25) == pytest.approx(0.01 / 2.5)
    assert bd.staleness_floor(0.1, 4, 0.01, 2.0, rule="model_average", delay="max") == pytest.approx(0.01)
    assert bd.staleness_floor(0.1, 0, 0.01, 2.0) == pytest.approx(0.01)
    # stability limit: 2 sin(pi/2)/L = 2/L at q = 0 ; 2 sin(pi/6)/L = 1/L at q = 1
    assert bd.delayed_step_limit(2.0, 0) == pytest.approx(1.0)
    assert bd.delayed_step_limit(2.0, 1) == pytest.approx(0.5)


def test_feddpo_floor_is_sum_of_parts():
    c = Constants(L=2.0, mu=0.5, sigma2=1.0, zeta2=0.5, F0=1.0, n=8)
    # drift 0.02^2 * 2 * 0.5 / 8 = 5e-5, noise 0.01/(4*4*2), participation 0.01*3*0.5*4/(4*4*7),
    # staleness factor 1 + eta E L qbar = 1 + 0.01*3*2*2
    expected = 5e-5 + (0.01 / 32 + 0.06 / 112) * 1.12
    assert bd.feddpo_floor(0.01, c, E=3, S=4, b=2, q_max=4) == pytest.approx(expected)


def test_consensus_hand_computed():
    # p = 0.75 -> rho = 0.5, rho^2/(1-rho)^2 = 1: eta^2 tau^2 zeta2 = 0.01*4*2
    assert bd.consensus_heterogeneity(0.1, 2.0, 0.75, tau=2) == pytest.approx(0.08)
    # eta^2 tau sigma2 rho^2/(b p) = 0.01*2*2*0.25/(4*0.75)
    assert bd.consensus_noise(0.1, 2.0, 4, 0.75, tau=2) == pytest.approx(0.01 / 3)
    assert bd.consensus_noise(0.1, 2.0, 4, 0.75, tau=2, n=4) == pytest.approx(0.0025)
    assert bd.consensus_heterogeneity(0.1, 2.0, 1.0) == 0.0          # complete graph
    assert bd.consensus_heterogeneity(0.1, 2.0, 0.0) == math.inf     # disconnected
    assert bd.jiang_consensus_scaling(0.1, 0.5, 3.0) == pytest.approx(0.06)


def test_spectral_consensus_hand_computed():
    # n = 2, lambda_2 = 0.5, v_2 = (1,-1)/sqrt2, G = [[1,2],[-1,-2]]: ||v_2^T G||^2 = 2*5 = 10
    W = np.array([[0.75, 0.25], [0.25, 0.75]])
    G = np.array([[1.0, 2.0], [-1.0, -2.0]])
    # post: eta^2/n * lam^2/(1-lam)^2 * 10 = 0.01/2 * 1 * 10
    assert bd.spectral_consensus(0.1, W, G) == pytest.approx(0.05)
    # pre: 0.01/2 * 1/0.25 * 10
    assert bd.spectral_consensus(0.1, W, G, when="pre") == pytest.approx(0.2)
    # noise s_i = 0.4 -> s_2 = 0.4: + 0.01/2 * 0.25 * 0.4/0.75
    noise = 0.01 / 2 * 0.25 * 0.4 / 0.75
    assert bd.spectral_consensus(0.1, W, G, noise_traces=0.4) == pytest.approx(0.05 + noise)
    # tau = 2: heterogeneity x4, noise x2
    assert bd.spectral_consensus(0.1, W, G, tau=2, noise_traces=0.4) == pytest.approx(0.2 + 2 * noise)
    # disconnected W with heterogeneity: infinite
    assert bd.spectral_consensus(0.1, np.eye(2), G) == math.inf


def test_smoothness_hand_computed():
    # beta^2/4 * 3 + 0.1 with beta = 2
    assert bd.bandit_smoothness(2.0, 3.0, 0.1) == pytest.approx(3.1)
    # 4 * 0.25 * 4 * 1 + 2 * 0.5 * 2 * 1 = 4 + 2
    assert bd.trajectory_smoothness_bound(0.5, 1.0, 2) == pytest.approx(6.0)
    assert bd.trajectory_smoothness_bound(0.5, 1.0, 2, l2=0.5) == pytest.approx(6.5)
    assert bd.trajectory_gradient_bound(0.5, 1.0, 2) == pytest.approx(4.0)


def test_rate_bounds_hand_computed():
    c = C0  # L=1, mu=0.5, sigma2=2, zeta2=1, F0=1, n=2, D2=4
    # Koloskova tuned, strongly convex, T=10, tau=p=b=1: X = 1*(1 + 2) = 3, sn = 1
    #   L D2 e^{-mu T} + sn/(mu T) + L X/(mu^2 T^2) = 4 e^-5 + 0.2 + 3/25
    assert bd.koloskova_bound(10, c) == pytest.approx(4 * math.exp(-5) + 0.2 + 0.12)
    # nonconvex, constant eta = 0.1 (inside p/(c tau L) with c = 10): 2 F0/(eta T) + eta L sn + L^2 eta^2 X
    #   = 2 + 0.1 + 0.03; with the theorem's c = 96 sqrt(3) the step is outside: NaN
    assert bd.koloskova_bound(10, c, eta=0.1, regime="nonconvex", c_step=10) == pytest.approx(2.13)
    assert math.isnan(bd.koloskova_bound(10, c, eta=0.1, regime="nonconvex"))
    # strongly convex constant step: mu D2 / (2((1 - 0.025)^-10 - 1)) + 0.1 + 0.03
    assert bd.koloskova_bound(10, c, eta=0.1, c_step=10) == pytest.approx(2.0 / (2 * (0.975**-10 - 1)) + 0.13)
    # minibatch nonconvex, R=4: L F0/R + sqrt(L F0 s/(n R)) = 0.25 + 0.5
    assert bd.minibatch_sgd_bound(4, c, regime="nonconvex") == pytest.approx(0.75)
    # Li et al.: E=2, R=5 (T=10), G2 = 1+2 = 3, Gamma = 1, kappa = 2, gamma = 16,
    #   B = 2/2 + 6 + 8*3 = 31, C = 0: 2/25 * (2*31/0.5 + 0.5*16*4/2) = 0.08 * 140
    assert bd.fedavg_li_bound(5, c, E=2) == pytest.approx(11.2)
    # SCAFFOLD strongly convex R=10, E=2, S=1: 2/(0.5*10*2) + 2 exp(-min(1/60, 0.5/162)*10)
    assert bd.scaffold_bound(10, c, E=2, S=1) == pytest.approx(0.2 + 2 * math.exp(-0.5 / 162 * 10))
    # GT strongly convex R=10, p=0.5: 4 e^{-2.5} + 2/(2*0.5*10) + 2/(0.25*0.5*100)
    assert bd.gradient_tracking_bound(10, c, p=0.5) == pytest.approx(4 * math.exp(-2.5) + 0.2 + 0.16)
    # Woodworth local, strongly convex R=10, E=2:
    #   4 e^-10 + 2/(0.5*2*2*10) + 2/(0.25*2*100) + 1/(0.25*100)
    assert bd.local_sgd_woodworth_bound(10, c, E=2) == pytest.approx(4 * math.exp(-10) + 0.1 + 0.04 + 0.04)
    # DecDPO: R gossip rounds of tau steps = Koloskova with T = R tau
    assert bd.decdpo_bound(5, c, p=0.3, tau=2) == pytest.approx(bd.koloskova_bound(10, c, p=0.3, tau=2))


def test_crossover_hand_computed():
    # strongly convex, sigma2 = 0: z_c = mu^2 R^2 / L * L D2 (e^{-mu R/L} - e^{-mu E R/L})
    #                                 = 25 * 4 (e^-5 - e^-10)
    zc = 25 * 4 * (math.exp(-5) - math.exp(-10))
    out = bd.local_vs_minibatch_crossover(np.array([0.5, 1.0]), 0.0, 1.0, 10, 2, 2, mu=0.5, D2=4.0)
    assert out["zeta2_crossover"] == pytest.approx(zc)
    assert list(out["better"]) == ["local", "minibatch"]
    # convex, sigma2 = 0: z_c = R^2 (L D2 (1 - 1/E)/R)^3 / (L D2^2) = 100 * 0.05^3 = 0.0125
    out = bd.local_vs_minibatch_crossover(0.001, 0.0, 1.0, 10, 2, 2, D2=1.0)
    assert out["zeta2_crossover"] == pytest.approx(0.0125) and out["better"] == "local"


def test_rounds_to_epsilon():
    c = C0
    # minibatch nonconvex: 1/R + sqrt(1/R) = eps -> sqrt(1/R) = (sqrt(1 + 4 eps) - 1)/2
    x = (math.sqrt(1 + 0.4) - 1) / 2
    assert bd.rounds_to_epsilon("centralized", 0.1, c, regime="nonconvex") == math.ceil(1 / x**2)
    r = bd.rounds_to_epsilon("feddpo", np.array([1e-1, 1e-2, 1e-3]), c, E=2)
    assert np.all(np.diff(r) > 0)
    # constant step: below the floor eta sn (=0.05 here) it is unreachable
    assert bd.rounds_to_epsilon("feddpo", 0.01, c, E=1, eta=0.1) == math.inf
    # time to epsilon grows as the gap shrinks
    assert bd.rounds_to_epsilon("decdpo", 0.01, c, p=0.05) > bd.rounds_to_epsilon("decdpo", 0.01, c, p=0.5)
    for alg, kw in [("scaffold", dict(E=2, S=1)), ("gradient_tracking", dict(p=0.3)),
                    ("fedavg_li", dict(E=2)), ("local_sgd_woodworth", dict(E=2))]:
        assert 1 <= bd.rounds_to_epsilon(alg, 0.05, c, **kw) < math.inf
    with pytest.raises(ConfigError):
        bd.rounds_to_epsilon("nope", 0.1, c)


def test_constants_validation():
    assert Constants(L=1.0, mu=0.5, sigma2=0.0, zeta2=0.0, F0=2.0, n=3).dist2 == pytest.approx(8.0)
    assert Constants(L=1.0, mu=0.0, sigma2=0.0, zeta2=0.0, F0=2.0, n=3).dist2 == math.inf
    assert Constants(L=1.0, mu=0.0, sigma2=0.0, zeta2=0.0, F0=2.0, n=3, L_max=3.0).l_max == 3.0
    with pytest.raises(ConfigError, match="constants.mu"):
        Constants(L=1.0, mu=2.0, sigma2=0.0, zeta2=0.0, F0=1.0, n=3)
    with pytest.raises(ConfigError, match="constants.sigma2"):
        Constants(L=1.0, mu=0.0, sigma2=-1.0, zeta2=0.0, F0=1.0, n=3)
    with pytest.raises(ConfigError, match="participation"):
        bd.participation_floor(0.1, 6, 5, 1.0)
    with pytest.raises(ConfigError, match="metric"):
        bd.noise_floor(0.1, 1.0, 1, 1, metric="loss")


# ------------------------------------------------------------------ monotonicity and vectorisation


def test_monotonicity():
    eta = np.linspace(0.01, 0.1, 5)
    for y in (bd.noise_floor(eta, 1.0, 2, 4), bd.participation_floor(eta, 2, 8, 1.0),
              bd.drift_floor(eta, 3, 1.0, 2.0), bd.consensus_heterogeneity(eta, 1.0, 0.3),
              bd.consensus_noise(eta, 1.0, 2, 0.3)):
        assert np.all(np.diff(y) > 0)
    E = np.arange(2, 7)
    assert np.all(np.diff(bd.drift_floor(0.05, E, 1.0, 2.0)) > 0)
    assert np.all(np.diff(bd.participation_floor(0.05, 2, 8, 1.0, E=E)) > 0)
    z = np.linspace(0.1, 1.0, 5)
    for y in (bd.drift_floor(0.05, 3, z, 2.0), bd.participation_floor(0.05, 2, 8, z),
              bd.consensus_heterogeneity(0.05, z, 0.3)):
        assert np.all(np.diff(y) > 0)
    S = np.arange(1, 9)
    assert np.all(np.diff(bd.participation_floor(0.05, S, 8, 1.0)) < 0)
    assert np.all(np.diff(bd.noise_floor(0.05, 1.0, 2, S)) < 0)
    p = np.linspace(0.05, 0.95, 6)
    assert np.all(np.diff(bd.consensus_heterogeneity(0.05, 1.0, p)) < 0)
    assert np.all(np.diff(bd.consensus_noise(0.05, 1.0, 2, p)) < 0)
    q = np.arange(0, 6)
    assert np.all(np.diff(bd.staleness_floor(0.05, q, 0.01, 2.0)) > 0)
    assert np.all(np.diff(bd.staleness_floor(0.05, q, 0.01, 2.0, rule="model_average")) < 0)
    # asymptotics: consensus_heterogeneity ~ 4 eta^2 tau^2 zeta2 / p^2 as p -> 0
    assert bd.consensus_heterogeneity(0.1, 1.0, 1e-4) * 1e-8 / (4 * 0.01) == pytest.approx(1.0, rel=1e-3)


# ------------------------------------------------------------------ checks of the derivations


def test_spectral_consensus_matches_simulation_ring():
    """X <- W (X - eta grad F(X)), f_i = 1/2 ||x - c_i||^2, n = 6 ring: leading-order formula vs the
    simulated stationary consensus error (relative error O(eta / (1 - lambda_2)) = O(1%))."""
    rng = np.random.default_rng(1)
    n, d, eta = 6, 3, 0.003
    W, C = ring(n), rng.standard_normal((n, d))
    X = np.tile(C.mean(0), (n, 1))
    for _ in range(600):
        X = W @ (X - eta * (X - C))
    sim = np.mean(np.sum((X - X.mean(0)) ** 2, axis=1))
    pred = bd.spectral_consensus(eta, W, C.mean(0) - C)
    assert sim == pytest.approx(pred, rel=0.03)
    # heterogeneous curvatures a_i and tau = 2 local steps per gossip
    a = rng.uniform(0.5, 2.0, n)
    theta = (a[:, None] * C).sum(0) / a.sum()
    X = np.tile(theta, (n, 1))
    for _ in range(1500):
        for _ in range(2):
            X = X - eta * a[:, None] * (X - C)
        X = W @ X
    sim = np.mean(np.sum((X - X.mean(0)) ** 2, axis=1))
    pred = bd.spectral_consensus(eta, W, a[:, None] * (theta - C), tau=2)
    assert sim == pytest.approx(pred, rel=0.05)


def test_spectral_consensus_noise_matches_second_moments():
    """Exact mean/covariance recursion of x <- W((1-eta) x + eta c - eta xi), Var(xi_i) = s_i."""
    rng = np.random.default_rng(2)
    n, eta = 6, 0.003
    W, c, s = ring(n), rng.standard_normal(n), rng.uniform(0.5, 2.0, n)
    m, P = np.full(n, c.mean()), np.zeros((n, n))
    for _ in range(3000):
        m = W @ ((1 - eta) * m + eta * c)
        P = W @ ((1 - eta) ** 2 * P + eta**2 * np.diag(s)) @ W
    J = np.eye(n) - np.ones((n, n)) / n
    exact = (np.sum((J @ m) ** 2) + np.trace(J @ P @ J)) / n
    pred = bd.spectral_consensus(eta, W, (c.mean() - c)[:, None], noise_traces=s)
    assert exact == pytest.approx(pred, rel=0.03)


def test_lazy_complete_family_is_exact():
    rng = np.random.default_rng(3)
    n, a = 5, 0.6
    W = (1 - a) * np.eye(n) + a * np.ones((n, n)) / n          # lambda_k = 0.4 for k >= 2
    p = 1 - 0.4**2
    G = rng.standard_normal((n, 2))
    G -= G.mean(0)
    zeta2 = np.mean(np.sum(G**2, axis=1))
    het = bd.consensus_heterogeneity(0.05, zeta2, p)
    assert bd.spectral_consensus(0.05, W, G) == pytest.approx(het)
    assert bd.spectral_consensus(0.05, W, np.zeros((n, 2)), noise_traces=0.7) == pytest.approx(
        bd.consensus_noise(0.05, 0.7, 1, p, n=n))
    # the supremum bound holds on the ring for random heterogeneity
    Wr = ring(6)
    lam = np.sort(np.linalg.eigvalsh(Wr))
    pr = 1 - max(abs(lam[-2]), abs(lam[0])) ** 2
    Gr = rng.standard_normal((6, 2))
    Gr -= Gr.mean(0)
    sup = bd.consensus_heterogeneity(0.05, np.mean(np.sum(Gr**2, 1)), pr)
    assert bd.spectral_consensus(0.05, Wr, Gr) <= sup


def _quadratic_clients(seed, n=4, d=3):
    rng = np.random.default_rng(seed)
    A = np.stack([random_spd(rng, d) for _ in range(n)])
    C = rng.standard_normal((n, d))
    theta = np.linalg.solve(A.mean(0), np.einsum("ijk,ik->j", A, C) / n)
    G = np.einsum("ijk,ik->ij", A, theta - C)
    return A, C, theta, G


def test_drift_floor_matches_local_gd_simulation():
    """FedAvg with E exact local GD steps on f_i = 1/2 (x-c_i)^T A_i (x-c_i) (heterogeneous A_i),
    started at theta*, run to its fixed point: suboptimality vs eta^2 (E-1)^2/8 v^T H^-1 v."""
    A, C, theta, G = _quadratic_clients(4)
    n = len(C)

    def f(x):
        return 0.5 * np.mean(np.einsum("ij,ijk,ik->i", x - C, A, x - C))

    eta = 0.002
    for E in (2, 5):
        x = theta.copy()
        for _ in range(int(40 / (eta * E))):
            X = np.tile(x, (n, 1))
            for _ in range(E):
                X = X - eta * np.einsum("ijk,ik->ij", A, X - C)
            x = X.mean(0)
        sim = f(x) - f(theta)
        pred = bd.drift_floor_exact(eta, E, A, G)
        assert sim == pytest.approx(pred, rel=0.02)
        assert f(bd.drift_fixed_point_quadratic(eta, E, A, C)) - f(theta) == pytest.approx(sim, rel=1e-6)
        # the L_max zeta2 bound is an upper bound on the leading-order floor
        zeta2 = np.mean(np.sum(G**2, axis=1))
        assert pred <= bd.drift_floor(eta, E, zeta2, np.linalg.eigvalsh(A).max())
    # identical Hessians: no drift at all (exact fixed point is theta*)
    A_same = np.stack([A[0]] * n)
    th = np.linalg.solve(A[0], A[0] @ C.mean(0))
    assert np.allclose(bd.drift_fixed_point_quadratic(0.05, 5, A_same, C), th)


def test_drift_bound_is_tight_for_crossed_hessians():
    eps = 1e-3
    A = np.stack([np.diag([1.0, eps]), np.diag([eps, 1.0])])
    g = np.array([[1.0, 0.0], [-1.0, 0.0]])
    ratio = bd.drift_floor_exact(0.01, 3, A, g) / bd.drift_floor(0.01, 3, 1.0, 1.0)
    assert 0.49 < ratio <= 0.5 + 1e-12          # v^T H^-1 v = L zeta2 / 2 here; sum_i w_i g_i^T A_i g_i = L/2


def test_noise_floor_matches_lyapunov():
    """Anisotropic H and noise covariance: stationary 1/2 tr(H P) vs gamma tr(C)/4."""
    rng = np.random.default_rng(5)
    H = random_spd(rng, 3, 0.3, 2.0)
    B = rng.standard_normal((3, 3))
    Cn = B @ B.T
    gamma = 0.002
    M = np.eye(3) - gamma * H
    P = solve_discrete_lyapunov(M, gamma**2 * Cn)
    assert 0.5 * np.trace(H @ P) == pytest.approx(bd.sgd_noise_floor(gamma, np.trace(Cn)), rel=0.01)
    L = np.linalg.eigvalsh(H).max()
    assert np.trace(H @ H @ P) == pytest.approx(gamma * np.trace(H @ Cn) / 2, rel=0.01)
    assert np.trace(H @ H @ P) <= bd.sgd_noise_floor(gamma, np.trace(Cn), L, metric="grad_norm_sq") * 1.01


def test_participation_floor_matches_exact_sampling():
    """Enumerate all S-subsets: the sampled mean's covariance has trace zeta2 (n-S)/(S(n-1)), and the
    exact stationary suboptimality of theta <- theta - gamma (theta - c_S) matches the floor."""
    from itertools import combinations

    rng = np.random.default_rng(6)
    n, S, d, gamma = 5, 2, 2, 0.004
    c = rng.standard_normal((n, d))
    means = np.array([c[list(s)].mean(0) for s in combinations(range(n), S)])
    Cp = np.cov(means.T, bias=True)
    zeta2 = np.mean(np.sum((c - c.mean(0)) ** 2, axis=1))      # ||grad f_i(theta*)||^2, H = I
    assert np.trace(Cp) == pytest.approx(zeta2 * (n - S) / (S * (n - 1)))
    P = solve_discrete_lyapunov((1 - gamma) * np.eye(d), gamma**2 * Cp)
    assert 0.5 * np.trace(P) == pytest.approx(bd.participation_floor(gamma, S, n, zeta2), rel=0.01)


def _delay_variance(coefs, gamma):
    """Stationary variance of x_{t+1} = sum_j coefs[j] x_{t-j} + gamma xi_t, Var(xi) = 1."""
    m = len(coefs)
    A = np.zeros((m, m))
    A[0, :] = coefs
    A[1:, :-1] = np.eye(m - 1)
    Q = np.zeros((m, m))
    Q[0, 0] = gamma**2
    return solve_discrete_lyapunov(A, Q)[0, 0]


def test_staleness_floor_matches_exact_delay_models():
    gamma, h = 0.002, 1.0
    base = bd.sgd_noise_floor(gamma, 1.0)
    F0 = h * _delay_variance(np.array([1 - gamma * h]), gamma) / 2
    for q in (1, 3, 6):
        # delta rule, fixed delay q: x_{t+1} = x_t - gamma h x_{t-q} - gamma xi
        coefs = np.zeros(q + 1)
        coefs[0] += 1.0
        coefs[q] -= gamma * h
        Fq = h * _delay_variance(coefs, gamma) / 2
        assert (Fq - F0) / (base * gamma * h * q) == pytest.approx(1.0, rel=0.05)
        assert Fq == pytest.approx(bd.staleness_floor(gamma, q, base, h, delay="max"), rel=0.01)
        assert Fq == pytest.approx(h / 2 * gamma**2 * bd.delayed_variance(1.0, -gamma * h, np.eye(q + 1)[q],
                                                                          np.zeros((q + 1, q + 1))), rel=1e-9)
        # model rule, half the clients fresh and half q rounds stale, a fixed pattern: the slow mode
        # relaxes 1 + q/2 times slower, so the floor is base / (1 + q/2) to leading order
        coefs = np.zeros(q + 1)
        coefs[0] += 0.5 * (1 - gamma * h)
        coefs[q] += 0.5 * (1 - gamma * h)
        Fm = h * _delay_variance(coefs, gamma) / 2
        assert Fm == pytest.approx(base / (1 + q / 2), rel=0.05)
        half = np.zeros(q + 1)
        half[[0, q]] = 0.5
        assert Fm == pytest.approx(h / 2 * gamma**2 * bd.delayed_variance(0.0, 1 - gamma * h, half, 0 * np.eye(q + 1)),
                                   rel=1e-9)
    # model rule with all clients equally stale: the q+1 interleaved chains decouple, no change
    coefs = np.zeros(4)
    coefs[3] = 1 - gamma * h
    assert h * _delay_variance(coefs, gamma) / 2 == pytest.approx(F0, rel=1e-9)


def test_constants_from_exact_duck_typed():
    from types import SimpleNamespace

    a = np.array
    ex = SimpleNamespace(L=a([2.0, 3.0]), mu=a([0.1, 0.2]), sigma2=a([1.0, 1.5]), zeta2=a([0.3, 0.4]),
                         F0=a([0.5, 0.6]), L_clients=a([[2.5, 1.0], [3.5, 4.0]]))
    c = Constants.from_exact(ex, replica=1)
    got = (c.L, c.mu, c.sigma2, c.zeta2, c.F0, c.n, c.l_max)
    assert got == pytest.approx((3.0, 0.2, 1.5, 0.4, 0.6, 2, 4.0))


# ------------------------------------------------------------------ theorem-faithful constants

# per-sample L_sample = 4 > client L_max = 2 > global L = 1; global mu_global = 0.1 < mu(theta*) = 0.5
C3 = Constants(L=1.0, mu=0.5, sigma2=2.0, zeta2=1.0, F0=1.0, n=2, D2=4.0, L_max=2.0, L_sample=4.0, mu_global=0.1)


def test_koloskova_uses_per_sample_L_global_mu_and_tau_over_p():
    # tuned strongly convex, T = 100, tau = 2, p = 0.5, b = 1: X = 2 (2 + 1) = 6, sn = 1
    #   (L tau/p) D2 exp(-mu p T/(L tau)) + sn/(mu T) + L X/(mu^2 p^2 T^2)
    #   = (4*2/0.5)*4*exp(-0.1*0.5*100/8) + 1/10 + 4*6/(0.01*0.25*1e4)
    want = 16 * 4 * math.exp(-0.625) + 0.1 + 24 / 25
    assert bd.koloskova_bound(100, C3, tau=2, p=0.5) == pytest.approx(want)
    # the tau/p factor multiplies the transient alone: x16 here against the former L D2 exp(.)
    no_noise = dataclasses.replace(C3, sigma2=0.0, zeta2=0.0)
    assert bd.koloskova_bound(100, no_noise, tau=2, p=0.5) / (4 * 4 * math.exp(-0.625)) == pytest.approx(4.0)
    # step condition with L_sample: p / (c tau L) = 0.5 / (c * 2 * 4)
    limit = 0.5 / (bd.KOLOSKOVA_C_STEP * 8)
    assert bd.koloskova_step_limit(C3, tau=2, p=0.5) == pytest.approx(limit)
    assert np.isfinite(bd.koloskova_bound(100, C3, tau=2, p=0.5, eta=limit))
    assert math.isnan(bd.koloskova_bound(100, C3, tau=2, p=0.5, eta=1.01 * limit))
    # constant step, strongly convex, with mu_global = 0.1 and L = 4: trans + eta sn + L eta^2 X / p^2
    eta = 1e-4
    trans = 0.1 * 4 / (2 * ((1 - 0.1 * eta / 2) ** -200 - 1))
    got = bd.koloskova_bound(200, C3, tau=2, p=0.5, eta=eta)
    assert got == pytest.approx(trans + eta * 1 + 4 * eta**2 * 6 / 0.25)


def test_li_uses_client_L_and_global_mu():
    # kappa = L_max / mu_global = 20, gamma = 160; E = 2, R = 5 (T = 10); G2 = 1 + 2 = 3,
    # Gamma = zeta2/(2 mu_g) = 5; B = 2/2 + 6*2*5 + 8*3 = 85, C = 0
    #   20/169 * (2*85/0.1 + 0.1*160*4/2)
    assert bd.fedavg_li_bound(5, C3, E=2) == pytest.approx(20 / 169 * (1700 + 32))


def test_other_bounds_use_the_constants_their_theorems_assume():
    # SCAFFOLD (client L, global mu): s/(mu R E S) + mu D2 exp(-min(S/(30n), mu/(162 L)) R)
    assert bd.scaffold_bound(10, C3, E=2, S=1) == pytest.approx(2 / (0.1 * 20) + 0.4 * math.exp(-0.1 / 324 * 10))
    # minibatch SGD (per-sample L, global mu): L D2 exp(-mu R/L) + s/(mu n E R)
    assert bd.minibatch_sgd_bound(10, C3) == pytest.approx(16 * math.exp(-0.25) + 2 / (0.1 * 2 * 10))
    # D2 defaults to 2 F0 / mu_global, the bound strong convexity gives everywhere
    assert dataclasses.replace(C3, D2=None).dist2 == pytest.approx(20.0)
    with pytest.raises(ConfigError):
        Constants(L=1.0, mu=0.5, sigma2=0.0, zeta2=0.0, F0=1.0, n=2, L_max=2.0, L_sample=1.5)
    with pytest.raises(ConfigError):
        Constants(L=1.0, mu=0.5, sigma2=0.0, zeta2=0.0, F0=1.0, n=2, mu_global=0.6)


def test_constants_from_manifest_carry_sample_L_and_global_mu():
    consts = {"L": [1.0], "mu": [0.5], "sigma2": [2.0], "zeta2": [1.0], "F0": [1.0],
              "L_clients": [[2.0, 1.5]], "L_sample": [4.0], "mu_global": [0.1]}
    c = Constants.from_exact(consts, 0, D2=4.0)
    assert (c.L, c.l_max, c.l_sample, c.mu, c.mu_g, c.n) == (1.0, 2.0, 4.0, 0.5, 0.1, 2)
