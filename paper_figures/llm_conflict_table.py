"""The methods table of preference conflict on real data (docs/llm_conflict.md): held-out preference
accuracy at the last round for each method and knob value, over run seeds, read from the folder of
a sweep of configs/conflict/imdb_table.toml. Only finished points are read, so a sweep that is
still running (or was interrupted, to be resumed) gives a partial table whose `seeds` column says
how many runs each row averages.

    python -m paper_figures.llm_conflict_table runs/conflict_table [MORE_SOURCES...] [--save runs.csv]
    python -m paper_figures.llm_conflict_table docs/data/llm_conflict_runs.csv --by-knob opposed

Sources are sweep folders or CSV files of runs that `--save` wrote (one row per run: each client's
accuracy, the reference model's, the train loss): a table filled over several sittings, from
folders that are gone, stays reproducible from its committed record (docs/data/llm_conflict_runs.csv).
A run found in two sources (the same method, knob and seed) is read from the first.

Per run: the accuracy of each client on its own held-out pairs with the model it uses (the implicit
reward for FedDPO, FedProx, SCAFFOLD and local DPO; FedPDPO's personalised prediction; FedSA's
client at its own B factors, `personal_pref_acc_client{i}`), pooled over the kept and the
opposed clients (equal held-out sizes: the mean of the clients'), and the worst client. A row is
the mean over its seeds, ± the seeds' standard deviation (the spread a reader sees between reruns;
one client's 48 pairs add a binomial standard error near 0.06 per client)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from llm.partition import opposed_clients
from theory_lab.results import own_client_accuracies

COLUMNS = {"all": "all clients", "kept": "kept clients", "opposed": "opposed clients", "worst": "worst client"}
# Rows: the shared-model methods, then the personalised ones and FedPDPO's ablations; a method not
# listed follows, in the order it first appears.
METHOD_ORDER = ("feddpo", "feddpo-control", "fedprox", "feddpo-sgd", "scaffold-sgd", "local-dpo", "fedsa", "fedpdpo",
                "fedpdpo-no-personal-head", "fedpdpo-no-reward-head", "fedpdpo-no-bottleneck")


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
        rows.append({"method": cfg["llm"]["personal"]["variant"], "conflict": cfg["llm"]["conflict"],
                     "seed": cfg["run"]["seed"], "opposed": tuple(opposed_clients(n, cfg["llm"]["seed"])),
                     "acc": own_client_accuracies(last, n),
                     "reference": np.array(manifest["reference_pref_acc"]["per_client"]),
                     "train_loss": last["train_loss"], "wall_s": manifest["wall_s"]})
    return pd.DataFrame(rows)


KEY = ["method", "conflict", "seed"]


def save(runs: pd.DataFrame, path: str | Path) -> None:
    """The runs as CSV, one row each, the per-client arrays as columns acc_client{i} and
    reference_client{i}, the opposed clients space-separated: what `read` reads back."""
    flat = runs[KEY + ["train_loss", "wall_s"]].copy()
    flat.insert(3, "opposed", [" ".join(map(str, o)) for o in runs["opposed"]])
    for name in ("acc", "reference"):
        arrays = np.stack(runs[name].to_list())
        for i in range(arrays.shape[1]):
            flat[f"{name}_client{i}"] = arrays[:, i]
    flat.to_csv(path, index=False, float_format="%.6g")


def read(source: str | Path) -> pd.DataFrame:
    """The runs of one source: a sweep folder (load) or a CSV file that `save` wrote."""
    if Path(source).is_dir():
        return load(source)
    flat = pd.read_csv(source, dtype={"opposed": str})
    n = sum(c.startswith("acc_client") for c in flat.columns)
    runs = flat[KEY + ["train_loss", "wall_s"]].copy()
    runs["opposed"] = [tuple(int(i) for i in str(o).split()) for o in flat["opposed"]]
    for name in ("acc", "reference"):
        runs[name] = list(flat[[f"{name}_client{i}" for i in range(n)]].to_numpy())
    return runs


def gather(sources: list[str]) -> pd.DataFrame:
    """The runs of every source, each (method, knob, seed) once: from the first source that has it."""
    frames = [r for r in map(read, sources) if not r.empty]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).drop_duplicates(KEY, keep="first").reset_index(drop=True)


def pooled(acc, opposed) -> dict:
    """Per-client accuracies pooled as COLUMNS: all, kept and opposed clients (equal held-out sizes:
    the mean of the clients'), and the worst client."""
    acc, mask = np.asarray(acc, float), np.zeros(len(acc), bool)
    mask[list(opposed)] = True
    return {"all": acc.mean(), "kept": acc[~mask].mean(), "opposed": acc[mask].mean(), "worst": acc.min()}


def per_run(runs: pd.DataFrame) -> pd.DataFrame:
    """The pooled accuracies of each run: all, kept and opposed clients, and the worst client."""
    scores = runs.apply(lambda r: pd.Series(pooled(r.acc, r.opposed)), axis=1)
    return pd.concat([runs[["method", "conflict", "seed", "train_loss"]], scores], axis=1)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and seed standard deviation per (method, knob): methods in METHOD_ORDER (others in the
    order they first appear), each method's knob values in increasing order."""
    scores = per_run(runs)
    methods = list(dict.fromkeys([*(m for m in METHOD_ORDER if m in set(scores["method"])), *scores["method"]]))
    order = sorted(dict.fromkeys(zip(scores["method"], scores["conflict"])), key=lambda k: (methods.index(k[0]), k[1]))
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
        pools = pooled(ref.reference, ref.opposed)
        lines.append(f"| reference model | {c:g} | — | " + " | ".join(f"{pools[k]:.3f}" for k in COLUMNS) + " | "
                     + " / ".join(f"{a:.3f}" for a in ref.reference) + " | — |")
    for (method, c), row in summary.iterrows():
        lines.append(f"| {method} | {c:g} | {row['seeds']} | " + " | ".join(cell(row, k) for k in COLUMNS)
                     + " | " + " / ".join(f"{a:.3f}" for a in row["per_client"]) + f" | {row['train_loss']:.3f} |")
    return "\n".join(lines)


def by_knob(summary: pd.DataFrame, key: str) -> str:
    """One column of the table as markdown, methods down and knob values across: where the methods
    separate, at a glance. A cell is the seed mean ± sd, with the number of seeds when not 3."""
    knobs = sorted(summary.index.get_level_values("conflict").unique())
    lines = [f"| method ({COLUMNS[key]}) | " + " | ".join(f"c = {c:g}" for c in knobs) + " |",
             "|" + "---|" * (len(knobs) + 1)]
    for method in dict.fromkeys(summary.index.get_level_values("method")):
        cells = []
        for c in knobs:
            if (method, c) not in summary.index:
                cells.append("—")
                continue
            row = summary.loc[(method, c)]
            sd = f" ± {row[f'{key}_sd']:.3f}" if np.isfinite(row[f"{key}_sd"]) else ""
            n = int(row["seeds"])
            cells.append(f"{row[key]:.3f}{sd}" + ("" if n == 3 else f" ({n} seed{'s' if n > 1 else ''})"))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paper_figures.llm_conflict_table",
                                     description="The conflict methods table from sweep folders and saved runs.")
    parser.add_argument("sources", nargs="+", help="sweep folders (points/NNN) or CSV files of runs (--save)")
    parser.add_argument("--save", metavar="CSV", help="write every run read, one row each, to this CSV")
    parser.add_argument("--by-knob", choices=list(COLUMNS), metavar="|".join(COLUMNS),
                        help="print only this column, methods down and knob values across")
    args = parser.parse_args(argv)
    missing = [s for s in args.sources if not Path(s).exists()]
    runs = pd.DataFrame() if missing else gather(args.sources)
    if missing or runs.empty:
        why = ("no such sweep folder or CSV file of runs" if missing
               else "no finished point of a sweep (points/NNN/results.csv)")
        print(f"error: {', '.join(missing or args.sources)}: {why}", file=sys.stderr)
        return 2
    if args.save:
        save(runs, args.save)
    print(by_knob(summarise(runs), args.by_knob) if args.by_knob else markdown(summarise(runs), runs))
    print(f"\n{len(runs)} runs, opposed clients {list(runs.iloc[0].opposed)}, "
          f"{runs['wall_s'].sum() / 60:.1f} min of runs in all.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
