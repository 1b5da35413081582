"""Topologies and mixing matrices: properties, closed-form spectra, validation errors."""

import json

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory_lab.errors import ConfigError
from theory_lab.topology import (
    NAMES, Spectrum, Topology, TopologyConfig, build_graph, describe, draw, make_topology, mixing_matrix,
    spectrum, validate_mixing,
)


def topo(name, n, **kw) -> Topology:
    return make_topology(TopologyConfig(name=name, **kw), n)


def assert_doubly_stochastic(W, symmetric=True):
    assert W.dtype == np.float64 and (W >= 0).all()
    np.testing.assert_allclose(W.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(W.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    if symmetric:
        np.testing.assert_allclose(W, W.T, rtol=0, atol=1e-15)


# ---- mixing-matrix properties on random graphs -------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 30), er_p=st.floats(0.02, 1.0), seed=st.integers(0, 10_000),
       rule=st.sampled_from(["metropolis", "max_degree"]))
def test_mixing_matrix_properties_on_random_graphs(n, er_p, seed, rule):
    g = nx.erdos_renyi_graph(n, er_p, seed=seed)  # possibly disconnected, on purpose
    W = mixing_matrix(g, rule)
    assert_doubly_stochastic(W)
    assert (np.diag(W) > 0).all()  # aperiodic: no eigenvalue -1 can appear
    assert ((W - np.diag(np.diag(W)) > 0) == nx.to_numpy_array(g, nodelist=range(n)).astype(bool)).all()
    rho = spectrum(W).rho
    if nx.is_connected(g):
        assert rho < 1 - 1e-12
    else:
        assert rho > 1 - 1e-9


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 24), er_p=st.floats(0.3, 1.0), seed=st.integers(0, 10_000))
def test_erdos_renyi_topology_is_connected_and_neighbors_match_W(n, er_p, seed):
    t = topo("erdos_renyi", n, er_p=er_p, graph_seed=seed)
    assert nx.is_connected(t.graph) and t.graph.graph["seed"] >= seed
    W = t.W()
    assert_doubly_stochastic(W)
    assert t.spectrum().rho < 1
    check_neighbors(t, 0)


def check_neighbors(t: Topology, round_):
    W = t.W(round_)
    nbrs = t.neighbors(round_)
    assert len(nbrs) == t.n
    rebuilt = np.diag(np.diag(W))
    for i, row in enumerate(nbrs):
        for j, w in row:
            assert j != i and w != 0
            rebuilt[i, j] = w
    np.testing.assert_array_equal(rebuilt, W)
    assert sum(map(len, nbrs)) == t.messages_per_round(round_)


@pytest.mark.parametrize("name", ["ring", "star", "torus", "hypercube", "one_peer_exponential", "geometric"])
def test_neighbors_consistent_with_W(name):
    t = topo(name, 16)
    for r in range(t.period):
        check_neighbors(t, r)


# ---- closed-form spectra ------------------------------------------------------------------------

@pytest.mark.parametrize("n", [3, 4, 5, 8, 13, 32])
def test_ring_spectrum_closed_form(n):
    s = topo("ring", n).spectrum()
    expected = np.sort(1 / 3 + 2 / 3 * np.cos(2 * np.pi * np.arange(n) / n))[::-1]
    np.testing.assert_allclose(s.eigenvalues, expected, atol=1e-12)
    rho = max(abs(expected[1]), abs(expected[-1]))
    assert s.rho == pytest.approx(rho, abs=1e-12)
    assert s.delta == pytest.approx(1 - rho) and s.p == pytest.approx(1 - rho**2)


@pytest.mark.parametrize("n", [2, 5, 16])
def test_complete_metropolis_is_uniform_average(n):
    t = topo("complete", n)
    np.testing.assert_allclose(t.W(), np.full((n, n), 1 / n), atol=1e-15)
    s = t.spectrum()
    assert s.rho == pytest.approx(0, abs=1e-12) and s.p == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("a", [0.05, 0.3, 0.5, 1.0])
def test_lazy_complete_rho_is_one_minus_a(a):
    t = topo("lazy_complete", 10, lazy=a)
    assert_doubly_stochastic(t.W())
    assert t.spectrum().rho == pytest.approx(1 - a, abs=1e-12)


def test_gap_ordering_n16():
    p = {name: topo(name, 16).spectrum().p for name in ["complete", "exponential", "torus", "ring", "path"]}
    assert p["complete"] > p["exponential"] > p["torus"] > p["ring"] > p["path"] > 0


def test_gossip_with_uniform_W_averages_exactly():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 5))
    for t in (topo("complete", 8), topo("lazy_complete", 8, lazy=1.0)):
        mixed = t.W() @ X
        np.testing.assert_allclose(mixed, np.broadcast_to(X.mean(axis=0), X.shape), rtol=0, atol=1e-14)


# ---- one-peer exponential (time-varying) -------------------------------------------------------

@pytest.mark.parametrize("n", [8, 16])
def test_one_peer_exponential_period_product_is_exact_average(n):
    t = topo("one_peer_exponential", n)
    assert t.time_varying and t.period == int(np.log2(n))
    product = np.eye(n)
    for r in range(t.period):
        W = t.W(r)
        assert_doubly_stochastic(W, symmetric=False)
        assert t.messages_per_round(r) == n  # one peer each
        product = W @ product
    np.testing.assert_array_equal(product, np.full((n, n), 1 / n))  # exact, not approximate
    np.testing.assert_array_equal(t.W(t.period), t.W(0))  # periodic in t
    assert t.period_product_spectrum().rho == pytest.approx(0, abs=1e-12)
    s0 = t.spectrum(0)  # hop 1: one cycle, singular values |cos(pi j / n)|
    assert s0.kind == "singular_values" and s0.rho == pytest.approx(np.cos(np.pi / n), abs=1e-12)
    assert t.spectrum(1).rho == pytest.approx(1)  # hop 2 alone: two disjoint cycles
    assert nx.is_connected(t.graph)
    d = describe(t)
    assert d["period"] == t.period and d["period_product_rho"] == pytest.approx(0, abs=1e-12)


# ---- graphs and describe ------------------------------------------------------------------------

@pytest.mark.parametrize("name", [x for x in NAMES if x != "custom"])
def test_every_generated_topology_is_valid(name):
    n = 16
    t = topo(name, n)
    assert sorted(t.graph.nodes) == list(range(n)) and nx.is_connected(t.graph)
    for r in range(t.period):
        assert_doubly_stochastic(t.W(r), symmetric=not t.time_varying)
    json.dumps(describe(t))  # JSON-friendly


def test_graph_shapes():
    assert build_graph("star", 6).number_of_nodes() == 6
    assert dict(build_graph("star", 6).degree())[0] == 5
    assert build_graph("torus", 12).number_of_edges() == 24  # 3 x 4, degree 4
    assert {d for _, d in build_graph("exponential", 16).degree()} == {7}  # +-1, +-2, +-4, 8
    cube = build_graph("hypercube", 8)
    assert all(bin(i ^ j).count("1") == 1 for i, j in cube.edges)


@pytest.mark.parametrize("name", NAMES)
def test_single_client_is_trivial(name):
    t = topo(name, 1)
    np.testing.assert_array_equal(t.W(0), [[1.0]])
    assert t.messages_per_round() == 0 and t.neighbors(0) == [[]]
    assert t.spectrum().rho == 0


def test_max_degree_rule_on_star():
    W = topo("star", 5, mixing="max_degree").W()
    assert W[1, 0] == pytest.approx(1 / 5) and W[1, 1] == pytest.approx(4 / 5)


def test_custom_weights_list_and_file(tmp_path):
    W = np.array([[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.0, 0.25, 0.75]])
    t = topo("custom", 3, weights=W.tolist())
    np.testing.assert_array_equal(t.W(), W)
    assert set(t.graph.edges) == {(0, 1), (1, 2)}
    for suffix, save in [(".npy", lambda p: np.save(p, W)), (".csv", lambda p: np.savetxt(p, W, delimiter=",")),
                         (".txt", lambda p: np.savetxt(p, W))]:
        path = tmp_path / f"w{suffix}"
        save(path)
        np.testing.assert_allclose(topo("custom", 3, weights_file=str(path)).W(), W)


def test_spectrum_of_non_symmetric_uses_singular_values():
    P = np.roll(np.eye(4), 1, axis=1)
    s = spectrum((np.eye(4) + P) / 2)
    assert isinstance(s, Spectrum) and s.kind == "singular_values"
    np.testing.assert_allclose(s.eigenvalues, np.sort(np.abs(np.cos(np.pi * np.arange(4) / 4)))[::-1], atol=1e-12)


def test_draw_writes_png(tmp_path):
    for name in ["ring", "torus", "geometric"]:
        path = tmp_path / f"{name}.png"
        draw(topo(name, 9), path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


# ---- validation errors --------------------------------------------------------------------------

def raises(field, fn, match=None):
    with pytest.raises(ConfigError) as info:
        fn()
    assert str(info.value).startswith(field + ": ") and info.value.field == field
    assert "\n" not in str(info.value)
    if match:
        assert match in str(info.value), str(info.value)


GOOD = [[0.5, 0.5], [0.5, 0.5]]


@pytest.mark.parametrize("W, match", [
    ([[0.5, 0.4], [0.5, 0.5]], "row 0 sums to 0.9"),
    ([[0.6, 0.4], [0.5, 0.5]], "column 0 sums to 1.1"),
    ([[np.nan, 0.5], [0.5, 0.5]], "contains NaN at (0, 0)"),
    ([[0.5, 0.5], [0.5, np.inf]], "contains inf at (1, 1)"),
    ([[1.5, -0.5], [-0.5, 1.5]], "negative entry"),
    ([[1.0, 0.0], [0.0, 1.0]], "disconnected (2 components)"),
    ([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], "square"),
    ([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]], "not symmetric"),
])
def test_validate_mixing_errors(W, match):
    raises("topology.weights", lambda: validate_mixing(W), match)
    raises("topology.weights", lambda: topo("custom", len(W), weights=W), match)


def test_validate_mixing_accepts_non_symmetric_when_allowed():
    W = [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]]
    assert validate_mixing(W, symmetric=False).dtype == np.float64


@pytest.mark.parametrize("field, kw, n, match", [
    ("topology.name", dict(name="mesh"), 4, "'complete', 'ring'"),
    ("topology.mixing", dict(mixing="uniform"), 4, "metropolis"),
    ("topology.er_p", dict(er_p=0.0), 4, "(0, 1]"),
    ("topology.er_p", dict(er_p=1.5), 4, "(0, 1]"),
    ("topology.radius", dict(radius=0.0), 4, "> 0"),
    ("topology.lazy", dict(lazy=0.0), 4, "(0, 1]"),
    ("topology.name", dict(name="hypercube"), 12, "hypercube needs n_clients a power of 2, got 12"),
    ("topology.name", dict(name="one_peer_exponential"), 12, "power of 2"),
    ("topology.name", dict(name="torus"), 8, "r*c"),
    ("topology.name", dict(name="torus"), 7, "r*c"),
    ("topology.er_p", dict(name="erdos_renyi", er_p=0.01), 30, "disconnected"),
    ("topology.radius", dict(name="geometric", radius=0.01), 30, "disconnected"),
    ("topology.weights", dict(name="custom"), 3, "needs weights"),
    ("topology.weights", dict(name="custom", weights=GOOD), 3, "must be 3 x 3"),
    ("topology.weights_file", dict(name="custom", weights_file="/nonexistent/w.npy"), 2, "not found"),
    ("n_clients", dict(name="ring"), 0, ">= 1"),
])
def test_config_errors_name_the_field(field, kw, n, match):
    raises(field, lambda: make_topology(TopologyConfig(**kw), n), match)


def test_unreadable_weights_file(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("0.5,abc\n0.5,0.5\n")
    raises("topology.weights_file", lambda: topo("custom", 2, weights_file=str(path)), "cannot read")
