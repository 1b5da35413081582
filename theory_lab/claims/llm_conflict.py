"""Claims on real preference conflict (issue 18, item 3): the `llm.conflict` knob on IMDb.

With half the clients opposed (llm.conflict = c reverses a fraction c of their pairs, held-out
included), an opposed client's mean preference gradient is (1 − 2c) m against the kept clients' m,
so the federation's mean is (1 − c) m (docs/llm_conflict.md): at c = 1 FedDPO's single model has no
shared preference left to learn, and the opposed clients, who held a's worth of accuracy at c = 0,
fall towards chance or below. Personal parts that never leave a client (FedPDPO's heads and
bottleneck, FedSA's B factors, local DPO's whole adapter) are not averaged away, so their advantage
over FedDPO on the opposed clients should grow with c.

  llm-conflict-fedavg           drop of FedDPO's held-out accuracy on the opposed clients, c=0 → 1
  llm-conflict-personalization  growth of (FedPDPO − FedDPO) on the opposed clients, c=0 → 1
  llm-conflict-local-dpo        the same for local DPO (each client alone)
  llm-conflict-fedsa            the same for FedSA (A averaged, B personal; each client at its own B)

The claims share their runs (cached per model, data directory and sizes within a process):
FedDPO with run seeds 0, 1, 2, each personalised method with the same seeds, and FedDPO with run
seeds 3, 4, 5 (the control), each at c ∈ {0, 1}: six runs per arm. `verify --runs DIR` takes the
finished ones from a sweep folder instead (configs/conflict/imdb_table.toml runs all of them),
matched by the trajectory their config decides. CIs are bootstraps over held-out pairs: every (run, client)'s pairs
are resampled with replacement, which, for 0/1 outcomes, is a binomial redraw of its count of
correct pairs (the run seeds are held fixed: three are too few to resample; the control's seeds
measure what another draw of them does).

One judge for both claims and their controls, with δ = the claim's tolerance (a material effect):
confirmed when the CI excludes 0 and the estimate is at least δ; refuted when the whole CI lies
below δ (the data exclude an effect of the predicted size); inconclusive otherwise. A null
control is refuted only when its CI is narrow enough to exclude δ, so noise cannot confirm a claim.

Opt-in (`theory-lab verify --track llm`): SmolLM2 runs take minutes each on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis import Verdict
from theory_lab import tracks
from theory_lab.checkpoint import config_hash
from theory_lab.claims.base import Claim, Context, Control, Outcome, ci_text, claim
from theory_lab.config import apply_override, build_config, to_dict
from theory_lab.errors import ConfigError, LabError
from theory_lab.results import own_client_accuracies, read_results
from theory_lab.runner import run

# The setting of configs/conflict/imdb_4clients.toml, with 48 held-out pairs per client (not 16):
# held-out evaluation is forward-only and cheap next to training, and it narrows every CI by √3.
SETTING = {"clients": 4, "pairs": 24, "heldout": 48, "rounds": 8, "E": 2, "b": 4, "lr": 1e-3,
           "max_length": 64, "conflicts": (0.0, 1.0), "seeds": (0, 1, 2), "control_seeds": (3, 4, 5),
           "delta": 0.25}
REGIME = ("SmolLM2-135M-Instruct + LoRA r=8 (q,v), IMDb counterfactual pairs, {clients} IID clients × {pairs} train "
          "+ {heldout} held-out pairs, half of them opposed, max length {max_length}, E={E}, b={b}, AdamW {lr:g}, "
          "{rounds} rounds, c ∈ {conflicts}; held-out accuracy at the last round")
# `--llm-model tiny` (tests): a random model that cannot learn IMDb sentiment, so only the mechanics
# are checked there, at sizes that run in seconds; the report's "sizes run" says which were used.
TINY = {"pairs": 4, "heldout": 8, "rounds": 2, "max_length": 32}
N_BOOT = 4000

_RUNS: dict = {}   # (model, data_dir, method, seed, c) -> summary of the run: shared by the claims

# What each method sets on top of the shared setting: the variants of configs/conflict/imdb_table.toml,
# so that `verify --runs` finds their points in that sweep's folder.
METHODS = {
    "feddpo": {},
    "fedpdpo": {"llm.personal.enabled": True},
    "local-dpo": {"llm.personal.enabled": True, "llm.personal.share_lora": False, "llm.personal.personal_head": False,
                  "llm.personal.reward_head": False, "llm.personal.bottleneck": False},
    "fedsa": {"algorithm.lora_aggregation": "fedsa"},
}


def _setting(ctx: Context) -> dict:
    return {**SETTING, **(TINY if ctx.llm_model == "tiny" else {})}


def _base(ctx: Context) -> dict:
    s = _setting(ctx)
    return {
        "track": "llm",
        "run": {"rounds": s["rounds"], "log_every": s["rounds"], "seeds": [0]},
        "llm": {"model": ctx.llm_model, "dataset": "imdb-cad", "n_clients": s["clients"],
                "pairs_per_client": s["pairs"], "heldout_per_client": s["heldout"], "partition": "iid", "beta": 0.2,
                "max_length": s["max_length"], "max_prompt_length": 24, "eval_batch_size": 8,
                "personal": {"head_rank": 4, "bottleneck_dim": 16, "lr": s["lr"]},
                **({"data_dir": ctx.data_dir} if ctx.data_dir else {})},
        "algorithm": {"name": "feddpo", "local_steps": s["E"], "batch_size": s["b"], "optimizer": "adamw",
                      "lr": s["lr"]},
    }


def _summary(table, manifest: dict, sizes: list[int]) -> dict:
    """What the claims read from a finished run: correct held-out pairs per client with the model
    the client uses (implicit reward for FedDPO and local DPO, the personalised prediction for
    FedPDPO, the client's own B factors for FedSA), the reference model's, and the loss.
    Accuracies that are not counts out of `sizes` (a run with other held-out sizes) are refused."""
    last = table[table["round"] == table["round"].max()].iloc[-1]
    n = np.asarray(sizes)
    acc = own_client_accuracies(last, len(n))
    if np.abs(acc * n - np.rint(acc * n)).max() > 1e-6:
        raise LabError(f"the held-out accuracies {acc.tolist()} are not counts out of {sizes} pairs")
    ref = np.asarray(manifest["reference_pref_acc"]["per_client"])
    return {"n": n, "correct": np.rint(acc * n).astype(int), "ref_correct": np.rint(ref * n).astype(int),
            "opposed": manifest.get("opposed_clients"), "train_loss": float(last["train_loss"])}


def _trajectory_key(config: dict) -> str:
    """The hash of what decides a run's trajectory: the config less its logging cadence, its free
    `llm.personal.variant` label, and the spelling of its data directory (resolved)."""
    cfg = build_config(config)
    data = to_dict(cfg)
    data["llm"]["data_dir"] = str(cfg.llm.resolved_data_dir().resolve())
    data["llm"]["personal"]["variant"] = ""
    return config_hash(data)


def _finished(folder: str) -> dict[str, Path]:
    """The finished runs under `folder` (a run's folder, or a sweep's points/NNN), by trajectory."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError("--runs", f"{folder}: not a folder")
    found = {}
    for manifest in [root / "manifest.json", *sorted(root.glob("points/[0-9][0-9][0-9]/manifest.json"))]:
        if manifest.is_file() and (manifest.parent / "results.csv").is_file():
            found[_trajectory_key(json.loads(manifest.read_text())["config"])] = manifest.parent
    return found


def _from_folder(path: Path, cfg) -> dict:
    """A finished run's summary from its folder, with the config's held-out sizes."""
    return _summary(*read_results(path), [cfg.llm.heldout_per_client] * cfg.llm.n_clients)


def _runs(ctx: Context, wanted: list[tuple[str, int, float]]) -> dict:
    """The summaries of runs (method, seed, c): from the cache, then from ctx.runs_dir, running
    the rest (one model load for all)."""
    key = (ctx.llm_model, ctx.data_dir, repr(_setting(ctx)))
    configs = {w: build_config(_config(ctx, *w)) for w in wanted if (*key, *w) not in _RUNS}
    finished = _finished(ctx.runs_dir) if ctx.runs_dir and configs else {}
    for w, cfg in list(configs.items()):
        path = finished.get(_trajectory_key(to_dict(cfg)))
        if path is not None:
            _RUNS[(*key, *w)] = _from_folder(path, cfg)
            del configs[w]
    if configs:
        with tracks.get("llm").sweep_context():
            for w, cfg in configs.items():
                result = run(cfg, progress=False)
                _RUNS[(*key, *w)] = _summary(result.table, result.manifest, [tp.n_pairs for tp in result.oracle.heldout])
                ctx.runs += 1
    return {w: _RUNS[(*key, *w)] for w in wanted}


def _config(ctx: Context, method: str, seed: int, c: float) -> dict:
    data = _base(ctx)
    data["run"]["seed"] = seed   # the algorithm's noise (minibatches); the data stay fixed
    data["llm"]["conflict"] = c
    for key, value in METHODS[method].items():
        apply_override(data, key.split("."), value)
    return data


def _opposed(runs: dict) -> list[int]:
    """The opposed clients: recorded by the runs with conflict > 0 (a seeded draw of the data seed)."""
    found = {tuple(r["opposed"]) for r in runs.values() if r["opposed"]}
    if len(found) != 1:
        raise ValueError(f"the runs disagree on the opposed clients: {found}")
    return list(found.pop())


def _estimate(terms: list[tuple[float, dict, str]], clients: list[int], seed: int = 0):
    """Σ_t w_t · acc_t, acc_t = run t's pooled held-out accuracy over `clients` (its correct
    counts `field`), with a 95% percentile CI by resampling every (run, client)'s pairs."""
    rng = np.random.default_rng(seed)
    value, boot = 0.0, np.zeros(N_BOOT)
    for w, r, field in terms:
        k, n = r[field][clients], r["n"][clients]
        value += w * k.sum() / n.sum()
        boot += w * rng.binomial(n, k / n, size=(N_BOOT, len(clients))).sum(1) / n.sum()
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(value), (float(lo), float(hi))


def _judge(value: float, ci: tuple[float, float], delta: float, what: str) -> Verdict:
    """Predicted: an effect of at least δ. Refuted when the whole CI lies below δ; confirmed when
    the CI excludes 0 and the estimate reaches δ; otherwise not resolved."""
    desc = f"{what} {ci_text(value, ci)} (95% CI over held-out pairs)"
    if ci[1] < delta:
        return Verdict("refuted", f"{desc} lies entirely below the material effect δ = {delta:g}.")
    if ci[0] > 0 and value >= delta:
        return Verdict("confirmed", f"{desc} excludes 0 and the estimate reaches δ = {delta:g}.")
    return Verdict("inconclusive", f"{desc}: does not exclude 0, or excludes 0 below δ = {delta:g}; not resolved.")


def _acc(r: dict, clients: list[int], field: str = "correct") -> float:
    return round(float(r[field][clients].sum() / r["n"][clients].sum()), 4)


@claim("llm-conflict-fedavg", track="llm", statement="On real preference data, FedDPO's held-out accuracy on the "
       "opposed clients falls as the conflict knob grows: the federation's mean preference gradient (1 − c) m "
       "vanishes at c = 1, so one averaged model cannot keep the opposed clients' preference",
       source="issue 18; docs/llm_conflict.md (ζ̃² = sampling + c²‖m‖²)",
       metric="acc_opposed(c=0) − acc_opposed(c=1), FedDPO, mean over run seeds {seeds}".format(**SETTING),
       regime=REGIME + "; FedDPO run seeds {seeds}", params=SETTING,
       predicted="a drop > 0, at least δ = {delta} (CI excludes 0)".format(**SETTING), tolerance=SETTING["delta"],
       controls=[Control("reference model", "setting", "the untrained reference model under the same statistic: the "
                         "knob only relabels its opposed pairs (drop 2a − 1 for its accuracy a, ≈ 0 near chance); "
                         "with no training there is no averaged-away preference, so the drop must be refuted")])
def llm_conflict_fedavg(ctx: Context, c: Claim) -> Outcome:
    p = c.params
    lo_c, hi_c = min(p["conflicts"]), max(p["conflicts"])
    runs = _runs(ctx, [("feddpo", s, k) for s in p["seeds"] for k in (lo_c, hi_c)])
    opposed = _opposed(runs)
    kept = [i for i in range(len(runs[("feddpo", p["seeds"][0], lo_c)]["n"])) if i not in opposed]
    w = 1.0 / len(p["seeds"])

    def drop(clients, field="correct"):
        return _estimate([(s * w, runs[("feddpo", seed, k)], field) for seed in p["seeds"]
                          for s, k in ((1.0, lo_c), (-1.0, hi_c))], clients)

    value, ci = drop(opposed)
    ref, ref_ci = drop(opposed, "ref_correct")
    kept_drop, kept_ci = drop(kept)
    details = {"sizes run": _setting(ctx), "opposed clients": opposed,
               "FedDPO accuracy on the opposed clients per (seed, c)": {
                   f"{s}, {k:g}": _acc(runs[("feddpo", s, k)], opposed) for s in p["seeds"] for k in (lo_c, hi_c)},
               "reference accuracy on the opposed clients per c": {
                   f"{k:g}": _acc(runs[("feddpo", p["seeds"][0], k)], opposed, "ref_correct") for k in (lo_c, hi_c)},
               "drop on the kept clients (not a null: their mean gradient (1 − c) m vanishes too)":
                   ci_text(kept_drop, kept_ci),
               # the floor statement, reported not judged: 8 rounds reach no stationary floor
               "FedDPO train loss (fixed eval batch, last round) per (seed, c)": {
                   f"{s}, {k:g}": round(runs[("feddpo", s, k)]["train_loss"], 4) for s in p["seeds"]
                   for k in (lo_c, hi_c)}}
    out = Outcome(value, ci, _judge(value, ci, c.tolerance, "FedDPO's drop on the opposed clients"), c.tolerance,
                  details=details)
    return out.control("reference model", f"drop {ci_text(ref, ref_ci)}",
                       _judge(ref, ref_ci, c.tolerance, "the reference model's drop"))


def _advantage_growth(ctx: Context, c: Claim, method: str, label: str) -> Outcome:
    """[method − FedDPO](c = 1) − [method − FedDPO](c = 0) on the opposed clients, mean over paired
    seeds, judged against the same statistic of FedDPO with other seeds in the method's place."""
    p = c.params
    lo_c, hi_c = min(p["conflicts"]), max(p["conflicts"])
    arms = (("feddpo", p["seeds"]), (method, p["seeds"]), ("feddpo", p["control_seeds"]))
    runs = _runs(ctx, [(m, s, k) for m, seeds in arms for s in seeds for k in (lo_c, hi_c)])
    opposed = _opposed(runs)
    w = 1.0 / len(p["seeds"])

    def growth(method, seeds):
        """Mean over paired seeds of [method − FedDPO](c = 1) − [method − FedDPO](c = 0)."""
        return _estimate([(sign * w, runs[(m, s, k)], "correct")
                          for mine, base in zip(seeds, p["seeds"])
                          for sign, m, s, k in ((1, method, mine, hi_c), (-1, "feddpo", base, hi_c),
                                                (-1, method, mine, lo_c), (1, "feddpo", base, lo_c))], opposed)

    value, ci = growth(method, p["seeds"])
    null, null_ci = growth("feddpo", p["control_seeds"])
    details = {"sizes run": _setting(ctx), "opposed clients": opposed,
               "accuracy on the opposed clients per (method, seed, c)": {
                   f"{m}, {s}, {k:g}": _acc(runs[(m, s, k)], opposed) for m, seeds in arms for s in seeds
                   for k in (lo_c, hi_c)}}
    out = Outcome(value, ci, _judge(value, ci, c.tolerance, f"{label}'s advantage growth"), c.tolerance,
                  details=details)
    return out.control("FedDPO, other seeds", f"growth {ci_text(null, null_ci)}",
                       _judge(null, null_ci, c.tolerance, "FedDPO (other seeds)'s advantage growth"))


def _personalization_claim(cid: str, method: str, label: str, why: str, source: str, regime: str) -> None:
    """Register the advantage-growth claim of one personalised method (METHODS[method])."""
    acc = f"acc_{label.replace(' ', '_')}"

    @claim(cid, track="llm", statement=f"On real preference data, personalization keeps per-client accuracy: "
           f"{label}'s advantage over FedDPO on the opposed clients grows with the conflict knob, because {why}",
           source=source, metric=f"[{acc} − acc_FedDPO](c=1) − [{acc} − acc_FedDPO](c=0) on the opposed clients, "
                                 "mean over run seeds {seeds}".format(**SETTING),
           regime=REGIME + f"; {regime} and FedDPO, run seeds {{seeds}}", params=SETTING,
           predicted="growth > 0, at least δ = {delta} (CI excludes 0)".format(**SETTING), tolerance=SETTING["delta"],
           controls=[Control("FedDPO, other seeds", "algorithm", f"FedDPO with run seeds {SETTING['control_seeds']} "
                             f"in {label}'s place: no personal parts, so its advantage over FedDPO cannot grow with the "
                             "knob; the same check must refute it")])
    def check(ctx: Context, c: Claim) -> Outcome:
        return _advantage_growth(ctx, c, method, label)


_personalization_claim("llm-conflict-personalization", "fedpdpo", "FedPDPO",
                       "its personal head, reward head and bottleneck are never averaged with the other clients'",
                       "issue 18; Zhu et al. (FedPDPO, arXiv:2603.19741)",
                       "FedPDPO (personal head r=4, reward head, bottleneck 16)")
_personalization_claim("llm-conflict-local-dpo", "local-dpo", "local DPO",
                       "each client trains its own adapter alone: nothing averages its preference away (nor shares "
                       "the others' pairs with it)", "issue 18", "local DPO (each client's own LoRA, no communication)")
_personalization_claim("llm-conflict-fedsa", "fedsa", "FedSA",
                       "its B factors stay on each client (only A is averaged), and each client predicts with its own B",
                       "issue 18; issue 13 (LoRA-aware aggregation); Guo et al. (FedSA-LoRA)",
                       "FedSA (A averaged, B personal; accuracy at each client's own B)")
