"""The methods table of preference conflict on real data (docs/llm_conflict.md): held-out preference
accuracy at the last round for each method and knob value, over run seeds, read from the folder of
a sweep of configs/conflict/imdb_table.toml. Only finished points are read, so a sweep that is
still running (or was interrupted, to be resumed) gives a partial table whose `seeds` column says
how many runs each row averages.

    python -m paper_figures.llm_conflict_table runs/conflict_table

Per run: the accuracy of each client on its own held-out pairs with the model it uses (the implicit
reward for FedDPO, FedProx, SCAFFOLD and local DPO; FedPDPO's personalised prediction; FedSA's
client at its own B factors, `personal_pref_acc_client{i}`), pooled over the kept and the
opposed clients (equal held-out sizes: the mean of the clients'), and the worst client. A row is
the mean over its seeds, ± the seeds' standard deviation (the spread a reader sees between reruns;
one client's 48 pairs add a binomial standard error near 0.06 per client)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from llm.partition import opposed_clients

COLUMNS = {"all": "all clients", "kept": "kept clients", "opposed": "opposed clients", "worst": "worst client"}


def load(folder: str | Path) -> pd.DataFrame:
    """One row per finished point of the sweep in `folder`: method, knob, run seed, each client's
    accuracy at the last round, the reference model's, the train loss and the wall time."""
    rows = []
    for point in sorted(Path(folder).glob("points/[0-9][0-9][0-9]")):
        if not (point / "results.csv").is_file():
            continue   # the point that is running, or was interrupted
        manifest = json.loads((point / "manifest.json").read_text())
        cfg = manifest["config"]
        table = pd.read_csv(point / "results.csv")
        last = table[table["round"] == table["round"].max()].iloc[-1]
        n = cfg["llm"]["n_clients"]
        own = "personal_pref_acc_client" if f"personal_pref_acc_client{n - 1}" in last else "eval_pref_acc_client"
        rows.append({"method": cfg["llm"]["personal"]["variant"], "conflict": cfg["llm"]["conflict"],
                     "seed": cfg["run"]["seed"], "opposed": tuple(opposed_clients(n, cfg["llm"]["seed"])),
                     "acc": np.array([last[f"{own}{i}"] for i in range(n)]),
                     "reference": np.array(manifest["reference_pref_acc"]["per_client"]),
                     "train_loss": last["train_loss"], "wall_s": manifest["wall_s"]})
    return pd.DataFrame(rows)


def per_run(runs: pd.DataFrame) -> pd.DataFrame:
    """The pooled accuracies of each run: all, kept and opposed clients, and the worst client."""
    def pooled(r):
        opposed = np.zeros(len(r.acc), bool)
        opposed[list(r.opposed)] = True
        return pd.Series({"all": r.acc.mean(), "kept": r.acc[~opposed].mean(), "opposed": r.acc[opposed].mean(),
                          "worst": r.acc.min()})
    return pd.concat([runs[["method", "conflict", "seed", "train_loss"]], runs.apply(pooled, axis=1)], axis=1)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and seed standard deviation per (method, knob), in the order the sweep runs them."""
    scores = per_run(runs)
    order = list(dict.fromkeys(zip(scores["method"], scores["conflict"])))
    g = scores.groupby(["method", "conflict"], sort=False)
    out = g[list(COLUMNS) + ["train_loss"]].mean().join(g[list(COLUMNS)].std(ddof=1).add_suffix("_sd"))
    out["seeds"] = g.size()
    out["per_client"] = runs.groupby(["method", "conflict"], sort=False)["acc"].apply(lambda a: np.mean(list(a), 0))
    return out.loc[order]


def markdown(summary: pd.DataFrame, runs: pd.DataFrame) -> str:
    """The table as markdown, the reference model's accuracy first (one row per knob value)."""
    def cell(row, key):
        sd = row[f"{key}_sd"]
        return f"{row[key]:.3f}" + (f" ± {sd:.3f}" if np.isfinite(sd) else "")

    head = ["method", "c", "seeds", *COLUMNS.values(), "per client (seed mean)", "train loss"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c, ref in runs.groupby("conflict").first().iterrows():   # the knob relabels its held-out pairs
        opposed = np.zeros(len(ref.reference), bool)
        opposed[list(ref.opposed)] = True
        r = ref.reference
        lines.append(f"| reference model | {c:g} | — | {r.mean():.3f} | {r[~opposed].mean():.3f} | "
                     f"{r[opposed].mean():.3f} | {r.min():.3f} | " + " / ".join(f"{a:.3f}" for a in r) + " | — |")
    for (method, c), row in summary.iterrows():
        lines.append(f"| {method} | {c:g} | {row['seeds']} | " + " | ".join(cell(row, k) for k in COLUMNS)
                     + " | " + " / ".join(f"{a:.3f}" for a in row["per_client"]) + f" | {row['train_loss']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m paper_figures.llm_conflict_table SWEEP_FOLDER", file=sys.stderr)
        return 2
    runs = load(argv[0])
    if runs.empty:
        print(f"error: {argv[0]}: no finished point of a sweep (points/NNN/results.csv)", file=sys.stderr)
        return 2
    print(markdown(summarise(runs), runs))
    print(f"\n{len(runs)} runs, opposed clients {list(runs.iloc[0].opposed)}, "
          f"{runs['wall_s'].sum() / 60:.1f} min of runs in all.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
