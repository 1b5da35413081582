"""Communication graphs, mixing matrices and their spectra (static and time-varying).

Conventions (shared/DESIGN.md): W is doubly stochastic, x_i <- sum_j W_ij x_j, so W_ij != 0 means
client j sends its vector to client i. rho = max(|lambda_2|, |lambda_n|), delta = 1 - rho and the
spectral gap p = 1 - rho**2. Graphs come from networkx generators, eigenproblems from scipy.
"""

import math
import os
import sys
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import networkx as nx
import numpy as np
import scipy.linalg
import scipy.sparse.csgraph

from theory_lab.choices import check_choices
from theory_lab.errors import ConfigError
from theory_lab.results import atomic_write

NAMES = ("complete", "ring", "path", "star", "torus", "hypercube", "exponential",
         "one_peer_exponential", "erdos_renyi", "geometric", "lazy_complete", "custom")
RULES = ("metropolis", "max_degree")
_MAX_TRIES = 100  # resamples of a random graph before giving up on connectivity
_TOL = 1e-10


@dataclass
class TopologyConfig:
    """The `[topology]` config section; plain annotations so the generic TOML loader can type-check.

    Parameters
    ----------
    name : str, one of `NAMES`
        The graph: "complete", "ring", "path", "star", "torus" (r x c grid with wrap-around,
        r, c >= 3), "hypercube" (n a power of 2), "exponential" (i ~ i + 2^k mod n for all
        2^k < n), "one_peer_exponential" (time-varying, n a power of 2), "erdos_renyi",
        "geometric", "lazy_complete" (W = (1 - lazy) I + lazy J/n) or "custom" (W given).
    mixing : str, one of `RULES`
        How W is built from the graph: "metropolis" (W_ij = 1 / (1 + max(d_i, d_j))) or
        "max_degree" (W_ij = 1 / (1 + d_max)). Ignored by lazy_complete, one_peer_exponential
        and custom.
    er_p : float
        Edge probability of "erdos_renyi", in (0, 1].
    radius : float
        Connection radius of "geometric" (nodes uniform in the unit square), > 0.
    graph_seed : int
        First seed of a random graph; resampled with seed + 1, + 2, ... (at most 100 tries)
        until the graph is connected.
    lazy : float
        Weight a of J/n in "lazy_complete", in (0, 1]; rho = 1 - a.
    weights : list of list of float or None
        The n x n mixing matrix of "custom": symmetric, doubly stochastic, connected support.
    weights_file : str or None
        Alternatively, a file holding it (.npy, .csv, or whitespace-separated text).

    Examples
    --------
    >>> cfg = TopologyConfig(name="erdos_renyi", er_p=0.5)
    >>> cfg.validate()
    >>> TopologyConfig(name="ring", lazy=0.0).validate()
    Traceback (most recent call last):
        ...
    theory_lab.errors.ConfigError: topology.lazy: must be in (0, 1], got 0.0
    """

    name: Literal[NAMES] = "complete"
    mixing: Literal[RULES] = "metropolis"  # ignored by lazy_complete, one_peer_exponential and custom
    er_p: float = 0.3
    radius: float = 0.5
    graph_seed: int = 0
    lazy: float = 0.5
    weights: list[list[float]] | None = None
    weights_file: str | None = None

    def validate(self) -> None:
        """Check the fields' ranges and choices.

        Raises
        ------
        ConfigError
            Naming the field: an unknown `name` or `mixing`, `er_p` outside (0, 1], `radius`
            <= 0, `lazy` outside (0, 1], or both `weights` and `weights_file` given.

        Examples
        --------
        >>> TopologyConfig(name="custom", weights=[[1.0]], weights_file="w.npy").validate()
        Traceback (most recent call last):
            ...
        theory_lab.errors.ConfigError: topology.weights: give weights or weights_file, not both
        """
        check_choices(self, "topology.")
        if not 0 < self.er_p <= 1:
            raise ConfigError("topology.er_p", f"must be in (0, 1], got {self.er_p}")
        if not self.radius > 0:
            raise ConfigError("topology.radius", f"must be > 0, got {self.radius}")
        if not 0 < self.lazy <= 1:
            raise ConfigError("topology.lazy", f"must be in (0, 1], got {self.lazy}")
        if self.weights is not None and self.weights_file is not None:
            raise ConfigError("topology.weights", "give weights or weights_file, not both")


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError("n_clients", f"must be an integer >= 1, got {n!r}")
    return int(n)


def _need_pow2(name: str, n: int) -> None:
    if n & (n - 1):
        raise ConfigError("topology.name", f"{name} needs n_clients a power of 2, got {n}")


def _torus_shape(n: int) -> tuple[int, int]:
    """The most square r x c = n with r, c >= 3 (smaller sides would create duplicate edges)."""
    for r in range(math.isqrt(n), 2, -1):
        if n % r == 0 and n // r >= 3:
            return r, n // r
    raise ConfigError("topology.name", f"torus needs n_clients = r*c with r, c >= 3, got {n}")


def _random_connected(make, n: int, seed: int, field: str, what: str) -> nx.Graph:
    for s in range(seed, seed + _MAX_TRIES):
        if nx.is_connected(g := make(s)):
            g.graph["seed"] = s  # record which resample was used, for the manifest
            return g
    raise ConfigError(field, f"{what} with n={n} was disconnected for graph_seed {seed}..{seed + _MAX_TRIES - 1};"
                             f" increase {field.split('.')[-1]}")


def build_graph(name: str, n: int, *, er_p: float = 0.3, radius: float = 0.5, seed: int = 0) -> nx.Graph:
    """Undirected graph on nodes 0..n-1 (one_peer_exponential: union over a period; lazy_complete: K_n).

    Graphs come from networkx generators, relabelled to the integers 0..n-1 (torus: node i at
    row i // c, column i % c; hypercube: neighbours differ in one bit of i). Self-loops are
    removed. A single node (n = 1) gives the one-node graph whatever the name.

    Parameters
    ----------
    name : str
        One of `NAMES` except "custom" (which has no generator).
    n : int
        Number of nodes, >= 1.
    er_p : float, optional
        Edge probability of "erdos_renyi".
    radius : float, optional
        Connection radius of "geometric".
    seed : int, optional
        First seed of a random graph; it is resampled with seed + 1, seed + 2, ... (at most
        100 tries) until connected, and the seed used is stored in ``graph.graph["seed"]``.

    Returns
    -------
    networkx.Graph
        Simple undirected graph on nodes 0..n-1; a torus also carries ``graph.graph["shape"]``
        = (r, c), a geometric graph its node positions in the node attribute "pos".

    Raises
    ------
    ConfigError
        Unknown name or "custom"; n not an integer >= 1; n not a power of 2 (hypercube,
        one_peer_exponential) or not r * c with r, c >= 3 (torus); a random graph still
        disconnected after 100 seeds.

    Examples
    --------
    >>> g = build_graph("ring", 4)
    >>> sorted(g.edges())
    [(0, 1), (0, 3), (1, 2), (2, 3)]
    >>> build_graph("torus", 9).graph["shape"], build_graph("hypercube", 8).number_of_edges()
    ((3, 3), 12)
    """
    n = _check_n(n)
    if name not in NAMES:
        raise ConfigError("topology.name", f"unknown topology {name!r}; known: {', '.join(NAMES)}")
    if n == 1:
        g = nx.empty_graph(1)
    elif name in ("complete", "lazy_complete"):
        g = nx.complete_graph(n)
    elif name == "ring":
        g = nx.cycle_graph(n)
    elif name == "path":
        g = nx.path_graph(n)
    elif name == "star":
        g = nx.star_graph(n - 1)  # star_graph(k) has k leaves plus the centre 0
    elif name == "torus":
        r, c = _torus_shape(n)
        # sorted (row, col) labels -> row-major integers, so node i sits at (i // c, i % c)
        g = nx.convert_node_labels_to_integers(nx.grid_2d_graph(r, c, periodic=True), ordering="sorted")
        g.graph["shape"] = (r, c)
    elif name == "hypercube":
        _need_pow2(name, n)
        # sorted bit tuples -> their binary value, so neighbours differ in exactly one bit
        g = nx.convert_node_labels_to_integers(nx.hypercube_graph(n.bit_length() - 1), ordering="sorted")
    elif name in ("exponential", "one_peer_exponential"):
        if name == "one_peer_exponential":
            _need_pow2(name, n)
        g = nx.empty_graph(n)
        hops = [2**k for k in range((n - 1).bit_length())]  # all 2^k < n
        g.add_edges_from((i, (i + h) % n) for i in range(n) for h in hops)
    elif name == "erdos_renyi":
        g = _random_connected(lambda s: nx.erdos_renyi_graph(n, er_p, seed=s), n, seed,
                              "topology.er_p", f"erdos_renyi graph (er_p={er_p})")
    elif name == "geometric":
        g = _random_connected(lambda s: nx.random_geometric_graph(n, radius, seed=s), n, seed,
                              "topology.radius", f"geometric graph (radius={radius})")
    else:
        raise ConfigError("topology.name", "custom has no generator; give topology.weights or weights_file")
    g.remove_edges_from(list(nx.selfloop_edges(g)))
    return g


def mixing_matrix(graph: nx.Graph, rule: str = "metropolis") -> np.ndarray:
    """Symmetric doubly stochastic W on graph's support; the diagonal takes what the edges leave.

    Parameters
    ----------
    graph : networkx.Graph
        Undirected graph on nodes 0..n-1 (self-loops and edge weights are ignored).
    rule : {"metropolis", "max_degree"}, optional
        Off-diagonal weight of an edge (i, j): 1 / (1 + max(d_i, d_j)) (Metropolis-Hastings)
        or 1 / (1 + d_max) with d_max the largest degree of the graph.

    Returns
    -------
    numpy.ndarray
        W, shape [n, n], float64: W_ij > 0 exactly on the edges and on the diagonal,
        W_ii = 1 - sum_{j != i} W_ij.

    Raises
    ------
    ConfigError
        Unknown rule.

    Examples
    --------
    >>> W = mixing_matrix(build_graph("path", 3))
    >>> W.round(4)
    array([[0.6667, 0.3333, 0.    ],
           [0.3333, 0.3333, 0.3333],
           [0.    , 0.3333, 0.6667]])
    >>> bool(np.allclose(W.sum(axis=0), 1) and np.allclose(W, W.T))
    True
    """
    n = graph.number_of_nodes()
    A = nx.to_numpy_array(graph, nodelist=range(n), weight=None, dtype=np.float64)
    np.fill_diagonal(A, 0.0)
    deg = A.sum(axis=1)
    if rule == "metropolis":
        W = A / (1.0 + np.maximum.outer(deg, deg))
    elif rule == "max_degree":
        W = A / (1.0 + (deg.max() if n else 0.0))
    else:
        raise ConfigError("topology.mixing", f"unknown rule {rule!r}; known: {', '.join(RULES)}")
    np.fill_diagonal(W, 1.0 - W.sum(axis=1))
    return W


def validate_mixing(W, field: str = "topology.weights", symmetric: bool = True) -> np.ndarray:
    """Check that W is a valid (symmetric) doubly stochastic mixing matrix over a connected graph.

    Parameters
    ----------
    W : array_like
        Candidate mixing matrix, shape [n, n] (nested lists or an array).
    field : str, optional
        Config field named in the error messages.
    symmetric : bool, optional
        Also require W = W^T (up to 1e-10).

    Returns
    -------
    numpy.ndarray
        W as a float64 array of shape [n, n].

    Raises
    ------
    ConfigError
        If W is not numeric, not a non-empty square matrix, has a NaN, inf or negative entry,
        a row or column sum differing from 1 by more than 1e-10, is not symmetric (when
        `symmetric`), or its support graph (W_ij > 0) is disconnected.

    Examples
    --------
    >>> validate_mixing([[0.5, 0.5], [0.5, 0.5]]).shape
    (2, 2)
    >>> validate_mixing(np.eye(2))
    Traceback (most recent call last):
        ...
    theory_lab.errors.ConfigError: topology.weights: support graph is disconnected (2 components); ...
    """
    try:
        W = np.array(W, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(field, f"not a numeric matrix ({str(e).splitlines()[0]})") from None
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.size == 0:
        raise ConfigError(field, f"must be a non-empty square matrix, got shape {W.shape}")
    for bad, test in (("NaN", np.isnan), ("inf", np.isinf)):
        if test(W).any():
            i, j = np.argwhere(test(W))[0]
            raise ConfigError(field, f"contains {bad} at ({i}, {j})")
    if (W < 0).any():
        i, j = np.argwhere(W < 0)[0]
        raise ConfigError(field, f"negative entry {W[i, j]:g} at ({i}, {j})")
    for axis, what in ((1, "row"), (0, "column")):
        sums = W.sum(axis=axis)
        bad = np.flatnonzero(np.abs(sums - 1.0) > _TOL)
        if bad.size:
            raise ConfigError(field, f"{what} {bad[0]} sums to {sums[bad[0]]:.12g}, not 1 (doubly stochastic needed)")
    if symmetric and not np.allclose(W, W.T, rtol=0.0, atol=_TOL):
        i, j = np.argwhere(np.abs(W - W.T) > _TOL)[0]
        raise ConfigError(field, f"not symmetric: W[{i}, {j}]={W[i, j]:g} but W[{j}, {i}]={W[j, i]:g}")
    # For a doubly stochastic W, weak connectivity of the support implies strong connectivity.
    k, _ = scipy.sparse.csgraph.connected_components(W > 0, directed=False)
    if k > 1:
        raise ConfigError(field, f"support graph is disconnected ({k} components); W must connect all clients")
    return W


@dataclass(frozen=True, eq=False)  # eq=False: ndarray fields make generated __eq__ ambiguous
class Spectrum:
    """The spectrum of one mixing matrix and its contraction factors (returned by `spectrum`).

    Attributes
    ----------
    eigenvalues : numpy.ndarray
        Shape [n], descending, read-only: eigenvalues of a symmetric W, or singular values of a
        non-symmetric W (then ``kind == "singular_values"``).
    rho : float
        max(|lambda_2|, |lambda_n|) (symmetric W) or sigma_2 (non-symmetric W), in [0, 1];
        0 for n = 1.
    delta : float
        1 - rho.
    p : float
        Spectral gap 1 - rho**2.
    kind : {"eigenvalues", "singular_values"}
        Which of the two `eigenvalues` holds.

    Examples
    --------
    >>> s = spectrum(np.full((2, 2), 0.5))
    >>> bool(np.allclose(s.eigenvalues, [1.0, 0.0])), s.rho < 1e-12, s.p, s.kind
    (True, True, 1.0, 'eigenvalues')
    """

    eigenvalues: np.ndarray  # descending; singular values when kind == "singular_values"
    rho: float
    delta: float
    p: float
    kind: str = "eigenvalues"


def spectrum(W) -> Spectrum:
    """Spectrum of a doubly stochastic W.

    Symmetric W: eigenvalues by scipy.linalg.eigvalsh and rho = max(|lambda_2|, |lambda_n|).
    Non-symmetric W (e.g. one one-peer exponential round): its eigenvalues are complex and do not
    bound contraction, so we use singular values instead and rho = sigma_2 = ||W - J/n||_2, the
    factor by which one application of W shrinks the distance to consensus; `kind` records which.

    Parameters
    ----------
    W : array_like
        Doubly stochastic matrix, shape [n, n] (not checked; see `validate_mixing`). It counts
        as symmetric when |W - W^T| <= 1e-10 entrywise, the tolerance `validate_mixing` accepts.

    Returns
    -------
    Spectrum
        The values (descending), rho (clipped to <= 1 against round-off, 0 when n = 1),
        delta = 1 - rho and p = 1 - rho**2.

    Examples
    --------
    >>> s = spectrum(mixing_matrix(build_graph("ring", 4)))
    >>> s.eigenvalues.round(4).tolist()
    [1.0, 0.3333, 0.3333, -0.3333]
    >>> round(s.rho, 4), round(s.delta, 4), round(s.p, 4), s.kind
    (0.3333, 0.6667, 0.8889, 'eigenvalues')
    """
    W = np.asarray(W, dtype=np.float64)
    n = W.shape[0]
    if np.allclose(W, W.T, rtol=0.0, atol=_TOL):   # what validate_mixing accepts as symmetric is symmetric here
        values, kind = scipy.linalg.eigvalsh((W + W.T) / 2)[::-1].copy(), "eigenvalues"
        rho = max(abs(values[1]), abs(values[-1])) if n > 1 else 0.0
    else:
        values, kind = scipy.linalg.svdvals(W), "singular_values"
        rho = values[1] if n > 1 else 0.0
    rho = min(float(rho), 1.0)  # rho <= 1 for doubly stochastic W; clip round-off so p >= 0
    values.setflags(write=False)
    return Spectrum(values, rho, 1.0 - rho, 1.0 - rho**2, kind)


class Topology:
    """A communication pattern: W(t) for every round t, periodic with `period` (1 when static).

    Usually built by `make_topology`.

    Parameters
    ----------
    name : str
        The topology's name (one of `NAMES`).
    n : int
        Number of nodes (clients).
    graph : networkx.Graph
        The communication graph on nodes 0..n-1 (for a time-varying pattern, the union of the
        rounds' graphs).
    matrices : list of array_like
        The mixing matrices of one period, each of shape [n, n]; round t uses
        ``matrices[t % len(matrices)]``.
    mixing : str or None, optional
        The mixing rule that built the matrices (None when they did not come from one).

    Attributes
    ----------
    period : int
        len(matrices).
    time_varying : bool
        period > 1.

    Common parameters
    -----------------
    t : int, optional
        Communication round (0-based) of the per-round methods; taken modulo the period.

    Examples
    --------
    >>> top = Topology("ring", 4, build_graph("ring", 4), [mixing_matrix(build_graph("ring", 4))])
    >>> top.period, top.time_varying, round(top.spectrum().p, 4)
    (1, False, 0.8889)
    """

    def __init__(self, name: str, n: int, graph: nx.Graph, matrices: list[np.ndarray], mixing: str | None = None):
        self.name, self.n, self.graph, self.mixing = name, n, graph, mixing
        self._W = [np.asarray(m, dtype=np.float64) for m in matrices]
        self.period = len(self._W)
        self.time_varying = self.period > 1
        self._spectra: dict[int, Spectrum] = {}

    def W(self, t: int = 0) -> np.ndarray:
        """Mixing matrix used at communication round t (a fresh copy, so callers may modify it).

        Parameters
        ----------
        t : int, optional
            The round (see Common parameters).

        Returns
        -------
        numpy.ndarray
            W(t), shape [n, n], float64.

        Examples
        --------
        >>> top = make_topology(TopologyConfig(name="complete"), 2)
        >>> top.W(5)
        array([[0.5, 0.5],
               [0.5, 0.5]])
        """
        return self._W[t % self.period].copy()

    def spectrum(self, t: int = 0) -> Spectrum:
        """Spectrum of the single-round W(t); for one_peer_exponential singular values, and rho = 1
        at rounds with hop 2^k > 1 since one such round alone leaves 2^k disconnected cycles.

        (The last one-peer round, hop n/2, is symmetric, so its spectrum holds eigenvalues; rho
        is 1 there as well for n > 2.) Computed once per round of the period, then cached.

        Parameters
        ----------
        t : int, optional
            The round whose W(t) is analysed (see Common parameters).

        Returns
        -------
        Spectrum
            See `spectrum`.

        Examples
        --------
        >>> top = make_topology(TopologyConfig(name="one_peer_exponential"), 8)
        >>> [(top.spectrum(t).kind, round(top.spectrum(t).rho, 4)) for t in range(3)]
        [('singular_values', 0.9239), ('singular_values', 1.0), ('eigenvalues', 1.0)]
        """
        k = t % self.period
        if k not in self._spectra:
            self._spectra[k] = spectrum(self._W[k])
        return self._spectra[k]

    def period_product_spectrum(self) -> Spectrum:
        """Spectrum of W(period-1) ... W(0): for one_peer_exponential with n = 2^m the product is
        exactly J/n (every node has then heard every other exactly once), so rho = 0.

        Returns
        -------
        Spectrum
            Spectrum of the product over one period (for a static topology, of W itself).

        Examples
        --------
        >>> top = make_topology(TopologyConfig(name="one_peer_exponential"), 8)
        >>> top.period, top.period_product_spectrum().rho < 1e-12
        (3, True)
        """
        product = np.eye(self.n)
        for M in self._W:
            product = M @ product
        return spectrum(product)

    def messages_per_round(self, t: int = 0) -> int:
        """Vectors sent in round t: one per nonzero off-diagonal W_ij (j sends to i).

        Parameters
        ----------
        t : int, optional
            The round whose messages are counted (see Common parameters).

        Returns
        -------
        int
            Number of nonzero off-diagonal entries of W(t) (twice the edges of a symmetric W).

        Examples
        --------
        >>> make_topology(TopologyConfig(name="ring"), 4).messages_per_round()
        8
        >>> make_topology(TopologyConfig(name="one_peer_exponential"), 4).messages_per_round(0)
        4
        """
        W = self._W[t % self.period]
        return int(np.count_nonzero(W) - np.count_nonzero(np.diag(W)))

    def neighbors(self, t: int = 0) -> list[list[tuple[int, float]]]:
        """For each node i, [(j, W_ij)] over j != i with W_ij != 0: whom i receives from, with weights.

        Parameters
        ----------
        t : int, optional
            The round whose receive lists are given (see Common parameters).

        Returns
        -------
        list of list of (int, float)
            Entry i lists (j, W_ij) in increasing j.

        Examples
        --------
        >>> nbrs = make_topology(TopologyConfig(name="ring"), 4).neighbors()
        >>> [(j, round(w, 4)) for j, w in nbrs[0]]
        [(1, 0.3333), (3, 0.3333)]
        """
        W = self._W[t % self.period]
        return [[(int(j), float(W[i, j])) for j in np.flatnonzero(W[i]) if j != i] for i in range(self.n)]


def _load_weights(path: str) -> np.ndarray:
    field = "topology.weights_file"
    if not Path(path).is_file():
        raise ConfigError(field, f"file not found: {path}")
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        return np.loadtxt(path, delimiter="," if path.endswith(".csv") else None, ndmin=2)
    except (OSError, ValueError) as e:
        raise ConfigError(field, f"cannot read {path}: {str(e).splitlines()[0]}") from None


def make_topology(cfg: TopologyConfig, n: int) -> Topology:
    """The communication graph of `n` nodes that `cfg` names, with its mixing matrices.

    Static graphs get the single matrix `mixing_matrix(graph, cfg.mixing)`; lazy_complete gets
    (1 - a) I + a J/n with a = cfg.lazy; one_peer_exponential gets log2(n) matrices
    W_k = (I + P_k) / 2, P_k the shift by 2^k (node i averages with node i + 2^k); custom
    gets the validated `cfg.weights` (or `cfg.weights_file`) and the graph of its support.
    A single client (n = 1) gets W = [[1]] whatever the topology.

    Parameters
    ----------
    cfg : TopologyConfig
        The graph's name and options (mixing rule, Erdős–Rényi probability, custom weights, ...).
    n : int
        Number of nodes (clients).

    Returns
    -------
    Topology
        The networkx graph, the (possibly time-varying) mixing matrices and their spectrum.

    Raises
    ------
    ConfigError
        An invalid `cfg` (see `TopologyConfig.validate`, `build_graph`, `validate_mixing`), a
        custom topology without weights or whose matrix is not n x n.

    Examples
    --------
    >>> ring = make_topology(TopologyConfig(name="ring"), 8)
    >>> ring.graph.number_of_edges(), round(ring.spectrum().p, 4)
    (8, 0.3524)
    >>> make_topology(TopologyConfig(name="complete"), 8).spectrum().p
    1.0
    """
    cfg.validate()
    n = _check_n(n)
    if n == 1:  # a single client: nothing to mix, whatever the topology
        return Topology(cfg.name, 1, nx.empty_graph(1), [np.ones((1, 1))])
    if cfg.name == "custom":
        if cfg.weights is None and cfg.weights_file is None:
            raise ConfigError("topology.weights", "custom topology needs weights or weights_file")
        field = "topology.weights" if cfg.weights is not None else "topology.weights_file"
        raw = cfg.weights if cfg.weights is not None else _load_weights(cfg.weights_file)
        # symmetric=True: the gossip analyses we verify assume a symmetric W
        W = validate_mixing(raw, field=field, symmetric=True)
        if W.shape != (n, n):
            raise ConfigError(field, f"must be {n} x {n} (n_clients), got {W.shape[0]} x {W.shape[1]}")
        graph = nx.empty_graph(n)
        graph.add_edges_from((int(i), int(j)) for i, j in np.argwhere(np.triu(W, 1) > 0))
        return Topology("custom", n, graph, [W])
    graph = build_graph(cfg.name, n, er_p=cfg.er_p, radius=cfg.radius, seed=cfg.graph_seed)
    if cfg.name == "lazy_complete":
        a = cfg.lazy
        return Topology(cfg.name, n, graph, [(1.0 - a) * np.eye(n) + a * np.full((n, n), 1.0 / n)])
    if cfg.name == "one_peer_exponential":
        # round t: node i averages with i + 2^(t mod log2 n); W_t = (I + P_t) / 2
        mats = [(np.eye(n) + np.roll(np.eye(n), 2**k, axis=1)) / 2 for k in range(n.bit_length() - 1)]
        return Topology(cfg.name, n, graph, mats)
    return Topology(cfg.name, n, graph, [mixing_matrix(graph, cfg.mixing)], mixing=cfg.mixing)


def describe(topology: Topology) -> dict:
    """JSON-friendly summary for manifests and result columns.

    Parameters
    ----------
    topology : Topology
        The topology to summarize.

    Returns
    -------
    dict
        name, n, time_varying, mixing, edges, degree (min, max), messages_per_round, rho,
        delta, p, spectrum_kind and eigenvalues, all of round 0; plus graph_seed_used for a
        random graph, and period and period_product_rho for a time-varying one.

    Examples
    --------
    >>> d = describe(make_topology(TopologyConfig(name="ring"), 4))
    >>> d["edges"], d["degree"], d["messages_per_round"], round(d["p"], 4)
    (4, {'min': 2, 'max': 2}, 8, 0.8889)
    >>> describe(make_topology(TopologyConfig(name="one_peer_exponential"), 4))["period"]
    2
    """
    s, degrees = topology.spectrum(0), [d for _, d in topology.graph.degree()]
    out = {
        "name": topology.name, "n": topology.n, "time_varying": topology.time_varying,
        "mixing": topology.mixing, "edges": topology.graph.number_of_edges(),
        "degree": {"min": int(min(degrees)), "max": int(max(degrees))},
        "messages_per_round": topology.messages_per_round(0),
        "rho": s.rho, "delta": s.delta, "p": s.p,
        "spectrum_kind": s.kind, "eigenvalues": [float(v) for v in s.eigenvalues],
    }
    if "seed" in topology.graph.graph:
        out["graph_seed_used"] = int(topology.graph.graph["seed"])
    if topology.time_varying:
        out.update(period=topology.period, period_product_rho=topology.period_product_spectrum().rho)
    return out


def draw(topology: Topology, path: str | os.PathLike) -> None:
    """Draw the graph to `path` (format from its extension: .png, .pdf, ...), written atomically.

    Layout: a geometric graph at its sampled positions, a torus on its grid (wrap-around edges
    as arcs), ring-like graphs on a circle, anything else by a spring layout with a fixed seed.
    The title gives the name, n and p = 1 - rho^2 of round 0. Uses matplotlib's Agg backend
    unless pyplot is already loaded, and no pyplot state.

    Parameters
    ----------
    topology : Topology
        The topology whose graph is drawn.
    path : str or os.PathLike
        Output file; its suffix picks the format (png when there is none).

    Returns
    -------
    None

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     draw(make_topology(TopologyConfig(name="ring"), 4), Path(d) / "ring.png")
    ...     (Path(d) / "ring.png").stat().st_size > 0
    True
    """
    import matplotlib   # lazy: the backend is chosen here, before pyplot loads, and only when drawing

    if "matplotlib.pyplot" not in sys.modules:  # later, use() would close the caller's open figures
        matplotlib.use("Agg")  # headless; must precede the pyplot import that networkx's drawing does
    from matplotlib.figure import Figure  # a bare Figure: no pyplot global state to touch

    g, name, curved = topology.graph, topology.name, []
    if name == "geometric" and all("pos" in d for _, d in g.nodes(data=True)):
        pos = nx.get_node_attributes(g, "pos")  # the sampled positions are the graph
    elif name == "torus" and "shape" in g.graph:
        c = g.graph["shape"][1]
        pos = {i: (i % c, -(i // c)) for i in g.nodes}
        # wrap-around edges would lie on top of their row/column: draw them as arcs instead
        curved = [(u, v) for u, v in g.edges if abs(pos[u][0] - pos[v][0]) + abs(pos[u][1] - pos[v][1]) > 1]
    elif name in ("ring", "path", "exponential", "complete", "lazy_complete", "star", "one_peer_exponential"):
        pos = nx.circular_layout(g)
    else:
        pos = nx.spring_layout(g, seed=0)  # fixed seed: the same figure every time
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    straight = [e for e in g.edges if e not in set(curved)]
    nx.draw_networkx(g, pos, ax=ax, edgelist=straight, node_size=220, font_size=7,
                     node_color="#8ab6d6", edge_color="#555555")
    if curved:
        nx.draw_networkx_edges(g, pos, ax=ax, edgelist=curved, edge_color="#555555", arrows=True,
                               arrowstyle="-", connectionstyle="arc3,rad=0.25", node_size=220)
    ax.set_title(f"{name}, n={topology.n}, p=1-rho^2={topology.spectrum(0).p:.4g}")
    ax.set_axis_off()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png",
                                               bbox_inches="tight"))
