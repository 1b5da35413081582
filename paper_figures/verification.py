"""The verification figure: for each claim of the registry, the fitted value with its 95% CI
against the predicted one and the claim's tolerance band, marked by verdict. Left: exponent claims
(slopes of log-log fits). Right: ratio claims (bound tightness, spectral prediction, ordering
margin), on a log axis around 1. Claims measured otherwise are listed under the figure.

Input: a `theory-lab verify` report.json (a path or the parsed dict). Without one, `prepare`
runs `theory_lab.verify.verify(the synthetic claims, quick=True, seeds=3)` once and caches its
report."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np

from paper_figures import style
from paper_figures.experiments import Lab, config_hash
from theory_lab import verify as checks

NAME = "verification"
# predicted exponents, where the report row has no numeric `predicted_value`
EXPONENTS = {"drift-floor": 2.0, "participation-floor": 1.0, "noise-floor": -1.0, "rate-in-T": -1.0,
             "consensus-heterogeneity": -2.0, "consensus-noise": -1.0, "staleness-model-average": 1.0,
             "staleness-delta": 1.0, "scaffold-no-drift": 0.0, "gt-no-heterogeneity": 0.0,
             "smoothness-horizon": 1.0}
UPPER: set[str] = set()  # claims whose prediction is an upper bound on the exponent (none today)
# ratio claims: the value the ratio is judged against and whether it is a lower bound
RATIOS = {"bound-validity": (1.0, "bound/empirical ≥ 1"), "consensus-spectral": (1.0, "observed/spectral = 1"),
          "topology-order": (1.0, "min neighbour error ratio > 1"),
          "staleness-exact-model-average": (1.0, "observed/exact floor = 1"),
          "staleness-exact-delta": (1.0, "observed/exact floor = 1")}
VERDICT = {"confirmed": dict(marker="o", mfc="0.0", mec="0.0"),
           "inconclusive": dict(marker="s", mfc="white", mec="0.35"),
           "refuted": dict(marker="X", mfc="0.0", mec="0.0"),
           "outside regime": dict(marker="D", mfc="white", mec="0.0")}


def prepare(lab: Lab) -> dict:
    if lab.report is not None:
        return json.loads(Path(lab.report).read_text())
    # the synthetic claims only: the LLM ones are opt-in (`theory-lab verify --track llm`, minutes each)
    ids = checks.select(None, "synthetic") if lab.size != "tiny" else ["full-participation", "noise-floor"]
    out = lab.cache_dir / f"verify-{config_hash({'ids': ids, 'quick': True, 'seeds': 3})[:16]}"
    report = out / "report.json"
    if report.is_file():
        lab.hits += 1
    else:
        lab.runs += 1
        progress = (lambda line: lab.log(f"  {line}")) if lab.log else None
        checks.verify(ids, quick=True, seeds=3, out=out, progress=progress)
    return json.loads(report.read_text())


def predicted_exponent(row: dict) -> float | None:
    """The row's numeric prediction: `predicted_value` when the report has it, else the table
    above, else the first 'slope N' in the predicted text."""
    value = row.get("predicted_value")
    if isinstance(value, int | float) and np.isfinite(value):
        return float(value)
    if row["claim"] in EXPONENTS:
        return EXPONENTS[row["claim"]]
    m = re.search(r"slopes?\s+([−-]?\d+(?:\.\d+)?(?:/\d+)?)", str(row.get("predicted", "")))
    if not m:
        return None
    text = m.group(1).replace("−", "-")
    num, _, den = text.partition("/")
    return float(num) / float(den) if den else float(num)


def _num(v) -> float:
    return float(v) if isinstance(v, int | float) and v is not None else np.nan


def _draw_rows(ax, rows, predicted, log: bool) -> None:
    ys = np.arange(len(rows))[::-1]
    for y, row, (pred, tol) in zip(ys, rows, predicted):
        v, lo, hi = _num(row.get("value")), _num(row.get("ci_low")), _num(row.get("ci_high"))
        if tol is not None:
            left = pred - tol if row["claim"] not in UPPER else pred - 10 * max(tol, 1)
            ax.fill_betweenx([y - 0.32, y + 0.32], left, pred + tol, color="0.88", lw=0, zorder=0)
        ax.plot([pred], [y], marker="|", ms=9, mew=1.5, color="0.45", zorder=2, ls="none")
        kw = VERDICT.get(row.get("verdict"), VERDICT["inconclusive"])
        if np.isfinite(v):
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], "-", color="0.15", lw=1.2, zorder=3, solid_capstyle="butt")
            ax.plot([v], [y], ls="none", ms=4.5, zorder=4, **kw)
        else:
            ax.annotate(f"n/a ({row.get('verdict', '?')})", (pred, y), xytext=(6, -2.5), textcoords="offset points",
                        fontsize=6, color="0.2")
    ax.set_yticks(ys)
    ax.set_yticklabels([r["claim"] for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="y", visible=False)


def draw(report, out_dir) -> list[Path]:
    if isinstance(report, str | Path):
        report = json.loads(Path(report).read_text())
    rows = report["claims"] if isinstance(report, dict) else list(report)
    exp_rows, ratio_rows, other = [], [], []
    for r in rows:
        if r["claim"] in RATIOS:
            ratio_rows.append(r)
        elif predicted_exponent(r) is not None:
            exp_rows.append(r)
        else:
            other.append(r)
    ncols = 2 if ratio_rows and exp_rows else 1
    height = 0.75 + 0.19 * max(len(exp_rows), len(ratio_rows), 1)
    fig, axes = style.figure("double", height, 1, ncols, width_ratios=[2.2, 1] if ncols == 2 else None)
    axes = np.atleast_1d(axes)
    k = 0
    if exp_rows:
        ax = axes[k]
        _draw_rows(ax, exp_rows, [(predicted_exponent(r), _num(r.get("tolerance"))) for r in exp_rows], log=False)
        ax.set_xlabel("exponent: fitted (95% CI) | predicted ± tolerance")
        style.panel_label(ax, "(a)", "exponent claims")
        lo = min(min(predicted_exponent(r) - _num(r.get("tolerance")) for r in exp_rows),
                 np.nanmin([_num(r.get("ci_low")) for r in exp_rows] + [np.inf]))
        hi = max(max(predicted_exponent(r) + _num(r.get("tolerance")) for r in exp_rows),
                 np.nanmax([_num(r.get("ci_high")) for r in exp_rows] + [-np.inf]))
        ax.set_xlim(lo - 0.3, hi + 0.3)
        k += 1
    if ratio_rows:
        ax = axes[k]
        _draw_rows(ax, ratio_rows, [(RATIOS[r["claim"]][0], None) for r in ratio_rows], log=True)
        ax.set_xscale("log")
        ax.axvline(1.0, color="0.6", lw=0.8, zorder=1)
        for y, r in zip(np.arange(len(ratio_rows))[::-1], ratio_rows):
            ax.annotate(RATIOS[r["claim"]][1], (1.0, y), xytext=(0, 6.5), textcoords="offset points",
                        fontsize=5.5, color="0.3", ha="left")
        ax.set_xlabel("ratio (range) | target")
        style.panel_label(ax, f"({'ab'[k]})", "ratio claims")
    handles = [style.plt.Line2D([], [], ls="none", ms=4.5, label=v, **kw) for v, kw in VERDICT.items()]
    handles.append(style.plt.Line2D([], [], ls="none", marker="|", ms=9, mew=1.5, color="0.45", label="predicted"))
    handles.append(style.plt.matplotlib.patches.Patch(color="0.88", label="tolerance"))
    meta = report.get("meta", {}) if isinstance(report, dict) else {}
    suite = f"{'quick' if meta.get('quick') else 'full'} suite, {meta.get('seeds', '?')} seeds" if meta else ""
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
               title=(suite + ("; not drawn: " + ", ".join(f"{r['claim']} ({r.get('verdict')})" for r in other)
                               if other else "")) or None, title_fontsize=6)
    paths = style.save(fig, out_dir, NAME)

    return paths + style.single(out_dir, NAME, lambda ax: panel_exponents(ax, {"claims": rows}), height=3.0)


def panel_exponents(ax, report: dict) -> None:
    # exponent claims with a point prediction (not the upper-bound ones, not the ratios)
    rows = [r for r in report["claims"] if r["claim"] not in RATIOS and r["claim"] not in UPPER]
    for r in rows:
        pred = predicted_exponent(r)
        v = _num(r.get("value"))
        if pred is None or not np.isfinite(v):
            continue
        lo, hi = _num(r.get("ci_low")), _num(r.get("ci_high"))
        kw = VERDICT.get(r.get("verdict"), VERDICT["inconclusive"])
        jitter = (zlib.crc32(r["claim"].encode()) % 7 - 3) * 0.06  # claims sharing a predicted value stay apart
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([pred + jitter] * 2, [lo, hi], "-", color="0.2", lw=1)
        ax.plot([pred + jitter], [v], ls="none", ms=4, **kw)
    lims = np.array([-2.6, 2.6])
    ax.plot(lims, lims, "-", color="0.6", lw=0.8, zorder=0)
    ax.fill_between(lims, lims - 0.3, lims + 0.3, color="0.9", lw=0, zorder=0)
    ax.set_xlim(*lims)
    ax.set_ylim(*lims)
    ax.set_xlabel("predicted exponent")
    ax.set_ylabel("fitted exponent (95% CI)")
    handles = [style.plt.Line2D([], [], ls="none", ms=4, label=k, **kw) for k, kw in VERDICT.items()]
    ax.legend(handles=handles, loc="upper left", handletextpad=0.2, handlelength=1.0)
