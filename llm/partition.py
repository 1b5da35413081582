"""Split preference pairs over clients: IID, or label/topic skew with a Dirichlet(α) per client.

The Dirichlet scheme is the standard label-skew partition (Hsu et al. 2019): client i draws a
distribution q_i ~ Dir(α·1) over the `group` values and then samples its pairs without replacement
from the groups in those proportions. Small α gives each client few groups (high skew); large α
gives every client the global mix. The natural (one data set per client) scheme needs several data
sets and lives in `llm.data.client_data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, TypeVar

import numpy as np

from theory_lab.errors import ConfigError


class _Grouped(Protocol):
    source: str
    group: str


P = TypeVar("P", bound=_Grouped)
SCHEMES = ("iid", "dirichlet")


def partition(pairs: Sequence[P], n_clients: int, scheme: str, *, alpha: float = 0.5,
              sizes: int | Sequence[int] | None = None, seed: int | Sequence[int] = 0) -> list[list[P]]:
    """`n_clients` disjoint lists of pairs. `sizes`: pairs per client (an int for all, one per
    client, or None to share out every pair equally). Deterministic given `seed`; each client's
    list is in random order, so any prefix of it is a random sample of its distribution."""
    if scheme == "natural":
        raise ConfigError("llm.partition", "the natural partition gives each client its own data set: "
                          "set llm.datasets and use llm.data.client_data")
    if scheme not in SCHEMES:
        raise ConfigError("llm.partition", f"must be one of iid, dirichlet, natural, got {scheme!r}")
    if scheme == "dirichlet" and not alpha > 0:
        raise ConfigError("llm.dirichlet_alpha", f"must be > 0, got {alpha}")
    counts = _client_sizes(len(pairs), n_clients, sizes)
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        order = rng.permutation(len(pairs))
        ends = np.cumsum(counts)
        chosen = [order[end - m:end] for m, end in zip(counts, ends)]
    else:
        chosen = _dirichlet(pairs, counts, alpha, rng)
    for i, idx in enumerate(chosen):
        if len(idx) == 0:
            raise ConfigError("llm.pairs_per_client",
                              f"client {i} of {n_clients} gets no pairs ({len(pairs)} pairs in all): "
                              "use fewer clients (llm.n_clients) or more data")
    return [[pairs[j] for j in idx] for idx in chosen]


def _client_sizes(n_pairs: int, n_clients: int, sizes) -> list[int]:
    if n_clients < 1:
        raise ConfigError("llm.n_clients", f"must be >= 1, got {n_clients}")
    if sizes is None:   # share out everything; the first n_pairs % n_clients clients get one more
        return [n_pairs // n_clients + (i < n_pairs % n_clients) for i in range(n_clients)]
    counts = [int(sizes)] * n_clients if np.isscalar(sizes) else [int(s) for s in sizes]
    if len(counts) != n_clients:
        raise ConfigError("llm.n_clients", f"{len(counts)} client sizes given for {n_clients} clients")
    if min(counts) < 0:
        raise ConfigError("llm.pairs_per_client", f"client sizes must be >= 0, got {counts}")
    if sum(counts) > n_pairs:
        raise ConfigError("llm.pairs_per_client",
                          f"{n_clients} clients need {sum(counts)} pairs (train + held-out) but the data "
                          f"has {n_pairs}: lower llm.pairs_per_client / llm.heldout_per_client or llm.n_clients")
    return counts


def _dirichlet(pairs: Sequence[P], counts: list[int], alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    # groups of different data sets never merge: key on (source, group)
    keys = sorted({(p.source, p.group) for p in pairs})
    index = {k: g for g, k in enumerate(keys)}
    label = np.array([index[(p.source, p.group)] for p in pairs], dtype=np.int64)
    pools = [rng.permutation(np.flatnonzero(label == g)) for g in range(len(keys))]
    left = np.array([len(pool) for pool in pools])
    taken = np.zeros(len(keys), dtype=np.int64)
    clients = []
    for m in counts:
        q = np.nan_to_num(rng.dirichlet(np.full(len(keys), alpha)))
        want = np.zeros(len(keys), dtype=np.int64)
        need = m
        while need > 0:   # a group that runs dry hands its share to the client's other groups
            avail = left - want
            w = q * (avail > 0)
            if w.sum() <= 0:   # every favoured group is empty (or q underflowed at tiny α)
                w = (avail > 0).astype(float)
            draw = np.minimum(rng.multinomial(need, w / w.sum()), avail)
            want += draw
            need -= int(draw.sum())
        idx = np.concatenate([pools[g][taken[g]:taken[g] + want[g]] for g in range(len(keys))] + [np.zeros(0, np.int64)])
        taken += want
        left -= want
        clients.append(rng.permutation(idx))
    return clients


def opposed_clients(n_clients: int, seed) -> list[int]:
    """The ⌊N/2⌋ clients whose preferences the conflict knob reverses: a seeded draw of its own,
    so the knob never changes which pairs a client holds."""
    rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 0x5EED])   # not the partition's stream
    return sorted(rng.permutation(n_clients)[: n_clients // 2].tolist())


def preference_conflict(clients: list[list[P]], conflict: float, opposed: Sequence[int], seed) -> list[list[P]]:
    """Each opposed client has round(conflict · n) of its n pairs reversed (chosen and rejected
    swapped), a seeded choice per client; the others keep theirs. conflict = 0: the partition
    unchanged; 1: the opposed half of the federation prefers exactly the reverse of every pair
    it holds (on IMDb, the negative continuation). Apply it to the training and the held-out
    pairs alike, so held-out accuracy is measured against each client's own preference.

    >>> from llm.data import PreferencePair
    >>> pairs = [[PreferencePair("p", "good", "bad", "s", "g")], [PreferencePair("p", "good", "bad", "s", "g")]]
    >>> [c[0].chosen for c in preference_conflict(pairs, 1.0, [1], seed=0)]
    ['good', 'bad']
    """
    if not 0.0 <= conflict <= 1.0:
        raise ConfigError("llm.conflict", f"must be in [0, 1], got {conflict}")
    out = [list(c) for c in clients]
    for i in opposed:
        n = len(out[i])
        k = int(round(conflict * n))
        rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 0xC0F1, i])
        for j in rng.permutation(n)[:k]:
            p = out[i][j]
            out[i][j] = replace(p, chosen=p.rejected, rejected=p.chosen)
    return out

