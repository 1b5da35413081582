"""FedPDPO table as a figure: per method (FedPDPO, its ablations and the baselines of
configs/fedpdpo/*.toml, the table's `variant` column), the final held-out preference accuracy of
each client (points) and its mean over clients (bar; with several result dirs of one federation,
e.g. seeds, the mean over them with a 95% interval), one panel per federation (data set, clients,
partition), the reference model's own accuracy and chance marked. Darker bars: FedPDPO and its
ablations; lighter: baselines.

Drawn only from sweep results (`theory-lab figures --fedpdpo DIR`, repeatable, DIR the --out of
`theory-lab sweep --config configs/fedpdpo/<name>.toml`; of a sweep still running, its finished
points); without them the figure is skipped.

The same numbers as the markdown table of docs/fedpdpo.md: `python -m paper_figures.fedpdpo DIR...`
(one federation; DIRs = its seeds, or parts of one sweep split over processes)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from paper_figures import style
from paper_figures.experiments import Lab
from paper_figures.llm_common import MODELS, client_columns, last
from theory_lab.results import read_results

NAME = "fedpdpo"
SKIP = "no FedPDPO results: pass --fedpdpo DIR (the --out of theory-lab sweep --config configs/fedpdpo/*.toml)"
FEDERATION = ["dataset", "n_clients", "partition", "model"]
# the methods of configs/fedpdpo/*.toml in their order there; other names follow in table order
METHODS = ["fedpdpo", "fedpdpo-no-head", "fedpdpo-no-reward", "fedpdpo-no-bottleneck", "fedpdpo-no-sharing",
           "local-dpo", "feddpo", "fedprox", "feddpo-sgd", "scaffold"]


def _seeds(manifest: dict) -> str:
    """The seeds a run used ("run.seed/llm.seed"): the table's `seed` column is run.seeds."""
    cfg = manifest.get("config", {})
    return f"{cfg.get('run', {}).get('seed', 0)}/{cfg.get('llm', {}).get('seed', 0)}"


def _reference(manifest: dict) -> float:
    ref = (manifest.get("reference_pref_acc") or {}).get("weighted")
    return math.nan if ref is None else float(ref)


def read(path) -> pd.DataFrame:
    """One sweep's results table (DIR/results.csv or the file itself), with its reference accuracy
    as a column. A sweep still running or interrupted has no results.csv yet: its finished points
    (DIR/points/NNN/) are read instead, the variant taken from each point's config."""
    path = Path(path)
    d = path.parent if path.suffix == ".csv" else path
    points = sorted(d.glob("points/[0-9]*/results.csv"))
    if path.suffix == ".csv" or (d / "results.csv").is_file() or not points:
        table, manifest = read_results(d)
        return table.assign(reference_pref_acc=_reference(manifest), seeds_used=_seeds(manifest))
    tables = []
    for csv in points:
        table, manifest = read_results(csv.parent)
        personal = manifest.get("config", {}).get("llm", {}).get("personal", {})
        tables.append(table.assign(run_id=int(csv.parent.name), variant=personal.get("variant") or table["algorithm"],
                                   reference_pref_acc=_reference(manifest), seeds_used=_seeds(manifest)))
    return pd.concat(tables, ignore_index=True)


def prepare(lab: Lab) -> pd.DataFrame | None:
    if not lab.fedpdpo:
        return None
    return pd.concat([read(p).assign(source=k) for k, p in enumerate(lab.fedpdpo)], ignore_index=True)


def _final(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The last logged round of every run (run ids told apart across sources) and the column that
    names the method."""
    key = "variant" if "variant" in table and table["variant"].notna().all() else "algorithm"
    if "source" not in table:
        table = table.assign(source=0)
    return last(table.assign(run_id=table["source"].astype(str) + "/" + table["run_id"].astype(str))), key


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant (in table order): mean, interval over sources of the client-mean accuracy, and
    each client's accuracy (mean over sources) as a list."""
    f, key = _final(table)
    rows = []
    for name, g in f.groupby(key, sort=False):
        clients = g[client_columns(g)].dropna(axis=1, how="all")
        m, lo, hi = style.t_interval(clients.mean(axis=1))
        lo, hi = max(lo, 0.0), min(hi, 1.0)  # an accuracy: the interval clipped to [0, 1] (2 seeds: t = 12.7)
        rows.append({"variant": str(name), "mean": m, "low": lo, "high": hi, "n": len(g),
                     "clients": clients.mean(axis=0).dropna().tolist()})
    rank = {name: k for k, name in enumerate(METHODS)}
    return pd.DataFrame(sorted(rows, key=lambda r: rank.get(r["variant"], len(METHODS))))


def markdown(table: pd.DataFrame) -> str:
    """Per method: the client-mean held-out accuracy (mean ± sd over seeds), its implicit and
    explicit parts, each client's accuracy (only for one seed: another seed draws another
    partition, so client k is another client), MB sent per client, the number of seeds; then the
    reference model's own accuracy."""
    s = summary(table).set_index("variant")
    f, key = _final(table)
    cols = ["eval_pref_acc", "eval_pref_acc_implicit", "eval_pref_acc_explicit"]

    def cell(v: pd.Series) -> str:
        v = v.dropna()
        return "–" if v.empty else f"{v.mean():.3f}" + (f" ± {v.std():.3f}" if len(v) > 1 else "")

    rows = ["| method | accuracy | implicit | explicit | per client | MB sent / client | seeds |", "|---" * 7 + "|"]
    groups = {str(name): g for name, g in f.groupby(key, sort=False)}
    for name, r in s.iterrows():
        g = groups[name]
        mb = (g["comm_bytes"] / g["n_clients"]).mean() / 1e6
        one_seed = g.get("seeds_used", pd.Series(dtype=float)).nunique() <= 1
        clients = " / ".join(f"{a:.3f}" for a in r["clients"]) if one_seed else "–"
        rows.append(f"| {name} | " + " | ".join([*(cell(g[c]) if c in g else "–" for c in cols),
                                                 clients, f"{mb:.2f}", str(r["n"])]) + " |")
    if "reference_pref_acc" in f and f["reference_pref_acc"].notna().any():
        per_seed = f.groupby(f["seeds_used"] if "seeds_used" in f else 0)["reference_pref_acc"].first()
        rows.append(f"| reference model | {cell(per_seed)} | | | | | {len(per_seed)} |")
    return "\n".join(rows)


def panel(ax, table: pd.DataFrame, labels: bool = True) -> None:
    s = summary(table)
    y = np.arange(len(s))[::-1]
    shade = ["0.35" if v.startswith("fedpdpo") else "0.78" for v in s["variant"]]
    err = np.vstack([s["mean"] - s["low"], s["high"] - s["mean"]]) if (s["n"] > 1).any() else None
    ax.barh(y, s["mean"], height=0.7, color=shade, edgecolor="0.1", linewidth=0.5, zorder=2,
            xerr=err, error_kw={"ecolor": "0.1", "capsize": 1.5, "elinewidth": 0.7})
    rng = np.random.default_rng(0)
    for yi, accs in zip(y, s["clients"]):
        ax.plot(accs, yi + rng.uniform(-0.22, 0.22, len(accs)), "o", ms=2.2, mfc="white", mec="0.0", mew=0.5,
                ls="none", zorder=3)
    ax.axvline(0.5, color="0.55", ls=":", lw=0.8, zorder=1)
    ref = table["reference_pref_acc"].dropna() if "reference_pref_acc" in table else pd.Series(dtype=float)
    if len(ref):
        ax.axvline(float(ref.mean()), color="0.2", ls="--", lw=0.9, zorder=4)
    ax.set_yticks(y)
    ax.set_yticklabels(s["variant"] if labels else [])
    ax.set_xlim(0, 1.06)   # room for a client at 1.0 and its error bar's cap
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_ylim(-0.6, len(s) - 0.4)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("final held-out preference acc.")
    r = table.iloc[0]
    model = MODELS.get(str(r.get("model")), str(r.get("model")))
    seeds = int(s["n"].max())
    spread = "; bars: 95% CI over seeds" if seeds > 1 else " (no CI: one seed)"
    ax.set_title(f"{r['dataset'].replace(',', ', ')}, {int(r['n_clients'])} clients, {r['partition']}\n"
                 f"{model}; {seeds} seed{'s' * (seeds != 1)}{spread}", fontsize=6.5)


def legend(fig_or_ax, **kw) -> None:
    handles = [Patch(facecolor="0.35", edgecolor="0.1", label="FedPDPO and ablations: client mean"),
               Patch(facecolor="0.78", edgecolor="0.1", label="baselines: client mean"),
               Line2D([], [], marker="o", ms=2.5, mfc="white", mec="0.0", ls="none", label="each client"),
               Line2D([], [], color="0.2", ls="--", lw=0.9, label="reference model"),
               Line2D([], [], color="0.55", ls=":", lw=0.8, label="chance")]
    fig_or_ax.legend(handles=handles, **kw)


def draw(table: pd.DataFrame, out_dir) -> list[Path]:
    groups = [g for _, g in table.groupby(FEDERATION, sort=False)]
    n = len(groups)
    rows = max(len(summary(g)) for g in groups)
    fig, axes = style.figure("double", 1.1 + 0.17 * rows, 1, n, sharey=False)
    same = len({tuple(summary(g)["variant"]) for g in groups}) == 1  # tick labels on the first panel only
    for k, (ax, g) in enumerate(zip(np.atleast_1d(axes), groups)):
        panel(ax, g, labels=k == 0 or not same)
    legend(fig, loc="outside lower center", ncols=5, fontsize=6)
    paths = style.save(fig, out_dir, NAME)

    def key(ax):
        panel(ax, groups[0])
        legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=2, fontsize=5.5)
    return paths + style.single(out_dir, NAME, key, height=1.6 + 0.17 * len(summary(groups[0])))


if __name__ == "__main__":   # python -m paper_figures.fedpdpo DIR [DIR...]: the table of one federation
    import sys

    print(markdown(pd.concat([read(p).assign(source=k) for k, p in enumerate(sys.argv[1:])], ignore_index=True)))
