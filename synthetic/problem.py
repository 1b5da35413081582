"""Synthetic preference problems: contextual bandit (horizon 1) and tabular MDP (horizon H > 1).

Both are stored as generalized log-linear DPO pairs (docs/architecture.md): per pair only the
feature-sum difference ``dphi`` and the state-visit difference ``visits``, with the Bradley-Terry
label already folded in (chosen minus rejected).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import torch

from theory_lab.choices import check_choices
from theory_lab.errors import ConfigError

DTYPE = torch.float64


@dataclass
class ProblemConfig:
    """TOML section ``[problem]``."""

    horizon: int = 1
    n_clients: int = 10
    dim: int = 8                      # d
    n_contexts: int = 20              # m: contexts (H=1) or states (H>1)
    n_actions: int = 5                # k
    pairs_per_client: int = 200
    client_sizes: list[int] | None = None  # per-client pair counts; overrides pairs_per_client
    heldout_pairs: int = 200          # per client
    heterogeneity: float = 0.0        # preference heterogeneity: spread of the users' θ*_i
    dirichlet_alpha: float = 0.0      # covariate heterogeneity; 0 = IID uniform contexts
    beta: float = 1.0
    l2: float = 0.0                   # (l2/2)‖θ‖² added to every client's loss
    feature_bound: float = 1.0        # B: every ‖φ(x, y)‖ = B
    reward_scale: float = 2.0         # ‖θ̄*‖
    behaviour: Literal["uniform", "reference"] = "uniform"   # actions drawn uniformly or from π_ref
    ref_scale: float = 0.0            # ‖θ_ref‖
    init: Literal["reference", "zero", "optimum"] = "reference"   # θ_0 = θ_ref, 0, or θ* (measures floors
                                      # without the transient)
    shared_data: bool = False         # every client holds client 0's pairs: ζ² = 0 exactly
    lora_rank: int = 0                # r > 0: train θ = θ_ref + vec(s·B A), B [lora_rows, r], A [r, d/lora_rows]
    lora_rows: int = 0                # m: rows of the reshaped θ (must divide dim)
    seed: int = 0

    def validate(self) -> None:
        check_choices(self, "problem.")
        def need(ok: bool, field: str, msg: str, value) -> None:
            if not ok:
                raise ConfigError(f"problem.{field}", f"{msg}, got {value!r}")

        for field in ("horizon", "n_clients", "dim", "n_contexts", "pairs_per_client",
                      "heldout_pairs"):
            need(getattr(self, field) >= 1, field, "must be >= 1", getattr(self, field))
        need(self.n_actions >= 2, "n_actions", "must be >= 2 (a pair needs two actions)",
             self.n_actions)
        if self.client_sizes is not None:
            need(len(self.client_sizes) == self.n_clients, "client_sizes",
                 f"must list one size per client ({self.n_clients})", self.client_sizes)
            need(all(n >= 1 for n in self.client_sizes), "client_sizes",
                 "every size must be >= 1", self.client_sizes)
        for field in ("heterogeneity", "dirichlet_alpha", "l2", "reward_scale", "ref_scale"):
            need(getattr(self, field) >= 0, field, "must be >= 0", getattr(self, field))
        need(self.beta > 0, "beta", "must be > 0", self.beta)
        need(self.feature_bound > 0, "feature_bound", "must be > 0", self.feature_bound)
        if self.lora_rank or self.lora_rows:
            need(self.lora_rows >= 1 and self.dim % self.lora_rows == 0, "lora_rows",
                 f"must divide dim = {self.dim} when lora_rank > 0", self.lora_rows)
            cols = self.dim // self.lora_rows
            need(1 <= self.lora_rank <= min(self.lora_rows, cols), "lora_rank",
                 f"must be in 1..{min(self.lora_rows, cols)} (θ reshaped to {self.lora_rows}×{cols})", self.lora_rank)
            need(self.init == "reference", "init", "a factorised policy starts at θ_ref (B = 0)", self.init)
        if self.shared_data:
            need(len(set(self.sizes())) == 1, "client_sizes",
                 "shared_data needs equal client sizes", self.client_sizes)

    def sizes(self) -> list[int]:
        return list(self.client_sizes) if self.client_sizes is not None \
            else [self.pairs_per_client] * self.n_clients


@dataclass
class SyntheticProblem:
    """S replicas of one problem; every tensor is float64 with the replica dimension first."""

    features: torch.Tensor           # [S, m, k, d]  φ(x, y), ‖φ‖ = B
    dphi: torch.Tensor               # [S, N, n_max, d]  chosen minus rejected; 0 on padding
    visits: torch.Tensor | None      # [S, N, n_max, m]  visit-count difference; None for H = 1
    pair_weight: torch.Tensor        # [S, N, n_max]  1/n_i on valid pairs, 0 on padding
    sizes: torch.Tensor              # [N] long  n_i
    client_weights: torch.Tensor     # [S, N]  w_i = n_i / Σ n
    eval_dphi: torch.Tensor          # [S, N, n_eval, d]  held-out pairs
    eval_visits: torch.Tensor | None  # [S, N, n_eval, m]
    theta_ref: torch.Tensor          # [S, d]
    theta0: torch.Tensor             # [S, d]
    theta_user: torch.Tensor         # [S, N, d]  θ*_i, the users' true reward parameters
    transitions: torch.Tensor | None  # [S, m, k, m]  P(s' | s, a); None for H = 1
    beta: float
    l2: float
    horizon: int
    feature_bound: float

    @property
    def n_seeds(self) -> int:
        return self.features.shape[0]

    @property
    def n_clients(self) -> int:
        return self.dphi.shape[1]

    @property
    def dim(self) -> int:
        return self.features.shape[-1]


def replica_seed(problem_seed: int, seed: int) -> int:
    """Generator seed of one replica: a hash of (problem.seed, seed) alone, so a replica's data do
    not depend on which other seeds run beside it, and nearby pairs do not collide."""
    digest = hashlib.sha256(f"{problem_seed}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def _dirichlet(alpha: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # torch.distributions cannot take a Generator; _standard_gamma can.
    x = torch._standard_gamma(alpha, generator=g)
    return x / x.sum(-1, keepdim=True)


def _categorical(probs: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One draw per row of probs [..., c] (inverse CDF, so it works for any batch shape)."""
    u = torch.rand(probs.shape[:-1] + (1,), generator=g, dtype=DTYPE)
    cdf = probs.cumsum(-1)
    return torch.searchsorted(cdf, u * cdf[..., -1:]).squeeze(-1).clamp_max(probs.shape[-1] - 1)


def _pairs(cfg, n, ctx, behaviour, transitions, features, theta_user, g):
    """n preference pairs per client: returns dphi [N, n, d], visits [N, n, m]."""
    N, m = ctx.shape
    states = _categorical(ctx[:, None, :].expand(N, n, m), g)          # shared initial state
    s = torch.stack([states, states], -1)                               # [N, n, 2]
    # First actions are distinct, so the pair is informative even at H = 1 (y ≠ y').
    a_w = _categorical(behaviour[states], g)
    p_l = behaviour[states].scatter(-1, a_w[..., None], 0.0)
    a = torch.stack([a_w, _categorical(p_l, g)], -1)
    phi_sum = torch.zeros(N, n, 2, cfg.dim, dtype=DTYPE)
    counts = torch.zeros(N, n, 2, m, dtype=DTYPE)
    for h in range(cfg.horizon):                                        # setup only: fine
        if h > 0:
            s = _categorical(transitions[s_prev, a_prev], g)
            a = _categorical(behaviour[s], g)
        phi_sum += features[s, a]
        counts += torch.nn.functional.one_hot(s, m).to(DTYPE)
        s_prev, a_prev = s, a
    returns = torch.einsum("nptd,nd->npt", phi_sum, theta_user)
    p_first = torch.sigmoid(returns[..., 0] - returns[..., 1])          # Bradley-Terry
    sign = torch.where(torch.rand(N, n, generator=g, dtype=DTYPE) < p_first, 1.0, -1.0)
    dphi = sign[..., None] * (phi_sum[..., 0, :] - phi_sum[..., 1, :])
    visits = sign[..., None] * (counts[..., 0, :] - counts[..., 1, :])
    return dphi, visits


def _replica(cfg: ProblemConfig, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(replica_seed(cfg.seed, seed))
    N, m, k, d = cfg.n_clients, cfg.n_contexts, cfg.n_actions, cfg.dim
    features = cfg.feature_bound * _unit(torch.randn(m, k, d, generator=g, dtype=DTYPE))
    theta_bar = cfg.reward_scale * _unit(torch.randn(d, generator=g, dtype=DTYPE))
    # Centring the directions keeps the users' mean preference at θ̄*, so the knob spreads the
    # users around one population without moving it; rescaled to RMS norm 1 so heterogeneity is
    # the typical distance ‖θ*_i − θ̄*‖ (for N = 2 the two directions are exact opposites).
    u = torch.randn(N, d, generator=g, dtype=DTYPE)
    u = u - u.mean(0)
    rms = u.pow(2).sum(-1).mean().sqrt()
    u = u / rms if rms > 0 else u
    theta_user = theta_bar + cfg.heterogeneity * u
    theta_ref = cfg.ref_scale * _unit(torch.randn(d, generator=g, dtype=DTYPE))
    if cfg.dirichlet_alpha > 0:
        ctx = _dirichlet(torch.full((N, m), cfg.dirichlet_alpha, dtype=DTYPE), g)
    else:
        ctx = torch.full((N, m), 1.0 / m, dtype=DTYPE)
    transitions = None
    if cfg.horizon > 1:
        transitions = _dirichlet(torch.ones(m, k, m, dtype=DTYPE), g)
    if cfg.behaviour == "reference":
        behaviour = torch.softmax(features @ theta_ref, -1)             # π_ref(a | s)
    else:
        behaviour = torch.full((m, k), 1.0 / k, dtype=DTYPE)
    sizes = cfg.sizes()
    n_max = max(sizes)
    dphi, visits = _pairs(cfg, n_max, ctx, behaviour, transitions, features, theta_user, g)
    if cfg.shared_data:  # client 0's pairs everywhere: identical client losses
        dphi, visits = dphi[:1].expand_as(dphi).clone(), visits[:1].expand_as(visits).clone()
    mask = torch.arange(n_max)[None, :] < torch.tensor(sizes)[:, None]  # [N, n_max]
    eval_dphi, eval_visits = _pairs(cfg, cfg.heldout_pairs, ctx, behaviour, transitions,
                                    features, theta_user, g)
    return dict(features=features, dphi=dphi * mask[..., None], visits=visits * mask[..., None],
                eval_dphi=eval_dphi, eval_visits=eval_visits, theta_ref=theta_ref,
                theta_user=theta_user, transitions=transitions)


def build_problem(cfg: ProblemConfig, seeds: list[int]) -> SyntheticProblem:
    """Generate one replica per entry of ``seeds`` (replica s depends on (cfg.seed, seeds[s]))."""
    cfg.validate()
    reps = [_replica(cfg, s) for s in seeds]

    def stack(key):
        return None if reps[0][key] is None else torch.stack([r[key] for r in reps])

    S = len(seeds)
    sizes = torch.tensor(cfg.sizes(), dtype=torch.long)
    mask = torch.arange(int(sizes.max()))[None, :] < sizes[:, None]
    pair_weight = (mask.to(DTYPE) / sizes[:, None].to(DTYPE)).expand(S, -1, -1).clone()
    client_weights = (sizes.to(DTYPE) / sizes.sum()).expand(S, -1).clone()
    theta_ref = stack("theta_ref")
    horizon1 = cfg.horizon == 1   # both responses share the context: visits are identically 0
    return SyntheticProblem(
        features=stack("features"), dphi=stack("dphi"),
        visits=None if horizon1 else stack("visits"), pair_weight=pair_weight, sizes=sizes,
        client_weights=client_weights, eval_dphi=stack("eval_dphi"),
        eval_visits=None if horizon1 else stack("eval_visits"), theta_ref=theta_ref,
        theta0=theta_ref.clone() if cfg.init != "zero" else torch.zeros_like(theta_ref),
        theta_user=stack("theta_user"), transitions=stack("transitions"), beta=float(cfg.beta),
        l2=float(cfg.l2), horizon=cfg.horizon, feature_bound=float(cfg.feature_bound))


def example_problem(seeds=(0, 1)) -> SyntheticProblem:
    """A 2-client, 3-parameter problem for examples and demos.

    The horizon-1 problem with n_clients=2, dim=3, pairs_per_client=20, heldout_pairs=5,
    heterogeneity=1.0 and l2=0.1 (the rest as `ProblemConfig`'s defaults), one replica per seed.

    Parameters
    ----------
    seeds : sequence of int, optional
        The replicas' seeds (`build_problem`); S = len(seeds).

    Returns
    -------
    SyntheticProblem
        S replicas, N = 2 clients, P = 3 parameters; wrap it in `synthetic.SyntheticOracle` for an
        oracle (`theory_lab.estimate`'s examples do).

    Examples
    --------
    >>> p = example_problem()
    >>> p.n_seeds, p.n_clients, p.dim, p.l2
    (2, 2, 3, 0.1)
    """
    cfg = ProblemConfig(n_clients=2, dim=3, pairs_per_client=20, heldout_pairs=5, heterogeneity=1.0, l2=0.1)
    return build_problem(cfg, seeds=list(seeds))


def problem_from_features(chosen, rejected, eval_chosen, eval_rejected, beta: float, l2: float) -> SyntheticProblem:
    """A horizon-1 problem (one replica) from given response features: client i's training pairs
    have features chosen[i], rejected[i] [n_i, d] (the preferred response first), its held-out
    pairs eval_chosen[i], eval_rejected[i] [m, d] (the same m for every client). Each pair is a
    context with its two responses as the actions; θ_ref = θ0 = 0 (the reference prefers neither);
    the users' reward parameters θ*_i are unknown (NaN). llm.features gives such features of real
    pairs from a frozen language model.

    Parameters
    ----------
    chosen, rejected, eval_chosen, eval_rejected : sequences of tensors
        One [n, d] tensor per client each.
    beta, l2 : float
        The DPO temperature and the (l2/2)‖θ‖² term (> 0 keeps θ* finite on separable pairs).

    Returns
    -------
    SyntheticProblem
        S = 1 replica; wrap it in `synthetic.SyntheticOracle`.

    Examples
    --------
    >>> e = torch.eye(2, dtype=DTYPE)
    >>> p = problem_from_features([e[:1], e[1:]], [e[1:], e[:1]], [e[:1], e[1:]], [e[1:], e[:1]], 1.0, 0.1)
    >>> p.n_clients, p.dim, p.dphi[0, :, 0].tolist()
    (2, 2, [[1.0, -1.0], [-1.0, 1.0]])
    """
    if not (len(chosen) == len(rejected) == len(eval_chosen) == len(eval_rejected) >= 1):
        raise ValueError("need the same number (>= 1) of clients in chosen, rejected, eval_chosen and eval_rejected")
    if len({e.shape[0] for e in eval_chosen}) != 1:
        raise ValueError(f"every client needs the same number of held-out pairs, "
                         f"got {[e.shape[0] for e in eval_chosen]}")
    if not (beta > 0 and l2 >= 0):
        raise ValueError(f"need beta > 0 and l2 >= 0, got beta={beta}, l2={l2}")
    N, d = len(chosen), chosen[0].shape[1]
    sizes = torch.tensor([c.shape[0] for c in chosen], dtype=torch.long)
    n_max = int(sizes.max())
    dphi = torch.zeros(1, N, n_max, d, dtype=DTYPE)
    for i, (c, r) in enumerate(zip(chosen, rejected)):
        dphi[0, i, :c.shape[0]] = (c - r).to(DTYPE)
    mask = torch.arange(n_max)[None, :] < sizes[:, None]
    eval_dphi = torch.stack([(c - r).to(DTYPE) for c, r in zip(eval_chosen, eval_rejected)])[None]
    features = torch.stack([torch.cat(list(chosen)), torch.cat(list(rejected))], 1)[None].to(DTYPE)   # [1, Σn, 2, d]
    zero = torch.zeros(1, d, dtype=DTYPE)
    return SyntheticProblem(
        features=features, dphi=dphi, visits=None, pair_weight=(mask.to(DTYPE) / sizes[:, None])[None],
        sizes=sizes, client_weights=(sizes.to(DTYPE) / sizes.sum())[None], eval_dphi=eval_dphi, eval_visits=None,
        theta_ref=zero, theta0=zero.clone(), theta_user=torch.full((1, N, d), float("nan"), dtype=DTYPE),
        transitions=None, beta=float(beta), l2=float(l2), horizon=1,
        feature_bound=float(features.norm(dim=-1).max()))
