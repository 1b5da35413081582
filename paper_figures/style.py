"""House style for every figure: conference column widths, a greyscale-safe palette (black and
greys told apart by line style and marker, never by hue alone), small fonts, no LaTeX (mathtext
only), and `save` writing PDF + PNG (8-bit greyscale) atomically.

    fig, ax = figure("single", height=2.3)
    mean_band(ax, table, y="subopt", by="algorithm")
    save(fig, out_dir, "comparative")        # -> [out_dir/comparative.pdf, out_dir/comparative.png]
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # headless; later use() would close a caller's figures
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import stats  # noqa: E402

from theory_lab.results import atomic_write  # noqa: E402

# ICML / NeurIPS-style column widths, inches
SINGLE = 3.25
DOUBLE = 6.75
WIDTHS = {"single": SINGLE, "double": DOUBLE}
PRINT_DPI = 300   # print resolution; the PNG records its dpi (pHYs)
PNG_DPI = int(os.environ.get("FIGURES_DPI", PRINT_DPI))

# greyscale-safe cycle: grey level, line style, marker go together
GREYS = ("0.0", "0.45", "0.25", "0.6", "0.1", "0.5", "0.3", "0.7")
LINES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (7, 2)), (0, (3, 1, 3, 3)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

RC = {
    "text.usetex": False,
    "font.family": "DejaVu Sans",
    "mathtext.fontset": "dejavusans",
    "font.size": 7.5,
    "axes.titlesize": 8,
    "axes.labelsize": 7.5,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6.5,
    "legend.frameon": False,
    "legend.handlelength": 2.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "grid.linewidth": 0.4,
    "grid.color": "0.88",
    "axes.grid": True,
    "axes.axisbelow": True,
    "pdf.fonttype": 42,  # embed TrueType: editable text, accepted by conference checkers
    "figure.constrained_layout.h_pad": 0.03,  # constrained layout fits everything: no "tight" re-draw
    "figure.constrained_layout.w_pad": 0.03,
}
plt.rcParams.update(RC)


def styled(i: int) -> dict:
    """Line keyword arguments of the i-th series: colour (grey), line style and marker."""
    return {"color": GREYS[i % len(GREYS)], "linestyle": LINES[i % len(LINES)], "marker": MARKERS[i % len(MARKERS)]}


def figure(width: str = "single", height: float = 2.2, nrows: int = 1, ncols: int = 1, **kw):
    """A figure of a conference column width ("single" or "double"), constrained layout."""
    return plt.subplots(nrows, ncols, figsize=(WIDTHS[width], height), layout="constrained", **kw)


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    """Write `name`.pdf and `name`.png (PNG_DPI) under out_dir, each atomically; close the figure."""
    out = Path(out_dir)
    pdf, png = out / f"{name}.pdf", out / f"{name}.png"
    # lay out for the PNG first: Agg measures text a little wider than the PDF backend, so a layout
    # made for the PDF can clip long tick labels in the PNG, while this one fits both
    atomic_write(png, lambda tmp: _grey_png(fig, tmp))
    fig.set_layout_engine("none")  # keep that layout: positions are figure-relative, any backend
    atomic_write(pdf, lambda tmp: fig.savefig(tmp, format="pdf"))
    plt.close(fig)
    return [pdf, png]


def single(out_dir: str | Path, name: str, panel, height: float = 2.6) -> list[Path]:
    """The figure's key panel alone at single-column width, saved as `name`_single."""
    fig, ax = figure("single", height)
    panel(ax)
    return save(fig, out_dir, f"{name}_single")


def _grey_png(fig, path) -> None:
    """The PNG as 8-bit greyscale: what a greyscale print shows, and a third of the RGB size."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI)
    buf.seek(0)
    Image.open(buf).convert("L").save(path, format="PNG", optimize=True, dpi=(PNG_DPI, PNG_DPI))


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and a Student-t confidence interval of the mean (the interval is the mean itself
    for one value)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half


def seed_stats(table: pd.DataFrame, x: str, y: str, level: float = 0.95, log: bool = False) -> pd.DataFrame:
    """Per value of x: the mean over seeds of y and its t-interval (columns x, mean, low, high, n).
    log=True: the mean and interval of log y, mapped back (geometric mean; on a log axis the
    band of an arithmetic mean would reach below zero)."""
    rows = []
    for xv, g in table.groupby(x, sort=True):
        v = g[y].to_numpy(float)
        if log:
            v = np.log(v[v > 0])
            m, lo, hi = (float(np.exp(t)) if np.isfinite(t) else np.nan for t in t_interval(v, level))
        else:
            m, lo, hi = t_interval(v, level)
        rows.append({x: xv, "mean": m, "low": lo, "high": hi, "n": int(np.isfinite(v).sum())})
    return pd.DataFrame(rows, columns=[x, "mean", "low", "high", "n"])


def geometric_bins(table: pd.DataFrame, x: str, y: str, bins: int) -> pd.DataFrame:
    """Per seed, means of y over geometric bins of x >= 1 (x = bin's geometric centre): smooths
    minibatch noise on a log-x axis without biasing the level."""
    t = table[table[x] >= 1]
    if t.empty:
        return t[["seed", x, y]]
    edges = np.unique(np.geomspace(t[x].min(), t[x].max() + 1, bins + 1).round().astype(int))
    idx = np.clip(np.searchsorted(edges, t[x].to_numpy(), side="right") - 1, 0, len(edges) - 2)
    centre = np.sqrt(edges[idx] * np.maximum(edges[idx + 1] - 1, edges[idx]))
    return (t.assign(**{x: centre})[["seed", x, y]].groupby(["seed", x], as_index=False)[y].mean())


def mean_band(ax, table: pd.DataFrame, x: str = "round", y: str = "subopt", by: str | None = None,
              labels: dict | None = None, order: list | None = None, level: float = 0.95, log: bool = True,
              logx: bool = False, bins: int | None = None, start: int = 0, styles: dict | None = None) -> list:
    """Plot the multi-seed mean of y against x, one line per value of `by`, with a `level`
    t-interval band (geometric mean and interval on a log y axis). logx: log x axis from x = 1
    with `bins` geometric bins (default 40) of per-seed means. styles: {group: style index}, to
    keep a group's look across panels that show different subsets. Returns the lines."""
    groups = [(None, table)] if by is None else list(table.groupby(by, sort=True))
    if order is not None and by is not None:
        found = dict(groups)
        groups = [(o, found[o]) for o in order if o in found]
    lines = []
    for i, (key, g) in enumerate(groups):
        g = g[g[x] >= max(start, 1 if logx else start)]
        if logx:
            g = geometric_bins(g, x, y, bins or 40)
        s = seed_stats(g, x, y, level, log=log).dropna(subset=["mean"])
        if s.empty:
            continue
        label = (labels or {}).get(key, str(key)) if by is not None else (labels or {}).get(None, y)
        kw = styled(styles[key] if styles and key in styles else i)
        me = max(len(s) // 5, 1)
        (line,) = ax.plot(s[x], s["mean"], label=label, markevery=((i * me) // max(len(groups), 1), me),
                          markerfacecolor="white", **kw)
        # the band's edges in the series' own dash style: overlapping grey bands stay tellable apart
        ax.fill_between(s[x], s["low"], s["high"], color=kw["color"], alpha=0.12, linewidth=0)
        for edge in ("low", "high"):
            ax.plot(s[x], s[edge], color=kw["color"], linestyle=kw["linestyle"], lw=0.4, alpha=0.7)
        lines.append(line)
    if log:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    return lines


def floor_figure(table: pd.DataFrame, extra_regime: str, by: str, paper_values, label, title):
    """The layout the floor figures share: (a) the mean subopt curves per `by` (only the paper's
    `paper_values` when present), then room for (b) the floor of the "paper" regime and (c) that of
    `extra_regime` when the table has it. `label(value, paper)` names a curve and `title(paper)`
    panel (a), from the paper regime's table `paper`.
    Returns (fig, axes, the paper regime's table, the extra regime's table)."""
    extra = table[table["regime"] == extra_regime] if "regime" in table else table.iloc[:0]
    table = table[table["regime"] == "paper"] if "regime" in table else table
    fig, axes = figure("double", 2.6, 1, 3 if len(extra) else 2)
    curves = table[table[by].isin(paper_values)]
    curves = table if curves.empty else curves
    mean_band(axes[0], curves, y="subopt", by=by, logx=True, labels={v: label(v, table) for v in curves[by].unique()})
    axes[0].set_xlabel("round")
    axes[0].set_ylabel(r"$f(\bar\theta) - f^\star$")
    legend_below(axes[0], 1)
    panel_label(axes[0], "(a)", title(table))
    return fig, axes, table, extra


def panel_label(ax, label: str, title: str = "") -> None:
    """"(a) title" as the left-aligned axes title (the label in bold)."""
    ax.set_title(label, loc="left", fontsize=8, fontweight="bold")
    if title:
        ax.set_title(title, loc="right", fontsize=7)


def legend_below(ax, ncols: int = 1, gap: float = 27.0, **kw):
    """A legend `gap` points under the axes (below the tick labels and x label, out of the data's
    way); constrained layout makes room for it."""
    where = offset_copy(ax.transAxes, fig=ax.figure, y=-gap, units="points")
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=where, ncols=ncols,
                     borderaxespad=0, **kw)


def log_ticks(ax, values, axis: str = "x", fmt: str = "{:g}") -> None:
    """Label a log axis at the given values only (no crowded minor labels)."""
    a = ax.xaxis if axis == "x" else ax.yaxis
    values = sorted({float(v) for v in values if np.isfinite(v) and v > 0})
    a.set_major_locator(FixedLocator(values))
    a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())
    (ax.set_xticklabels if axis == "x" else ax.set_yticklabels)([fmt.format(v) for v in values])


def nice_log_ticks(ax, values, axis: str = "x") -> None:
    """log_ticks at the 1-2-5 values inside the range of `values` (at least two of them)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return
    lo, hi = v.min(), v.max()
    cands = [m * 10.0**k for k in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
             for m in (1, 2, 5)]
    inside = [c for c in cands if lo / 1.05 <= c <= hi * 1.05]
    if len(inside) < 2:
        inside = [max([c for c in cands if c <= lo], default=lo), min([c for c in cands if c >= hi], default=hi)]
    log_ticks(ax, inside, axis)


def auto_log(ax, values, ratio: float = 8.0) -> None:
    """Log y axis only when the values span more than `ratio`."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size and v.max() / v.min() > ratio:
        ax.set_yscale("log")


def errorbars(ax, stats_df: pd.DataFrame, x: str, i: int = 0, label: str | None = None, **kw):
    """Means with t-interval error bars (the multi-seed summary of a floor)."""
    st = styled(i)
    yerr = np.vstack([stats_df["mean"] - stats_df["low"], stats_df["high"] - stats_df["mean"]])
    return ax.errorbar(stats_df[x], stats_df["mean"], yerr=np.nan_to_num(yerr), color=st["color"],
                       marker=st["marker"], linestyle="none", capsize=2, markerfacecolor="white",
                       label=label, zorder=3, **kw)


def seed_points(ax, x, y, i: int = 0, label: str | None = None) -> None:
    """One small point per seed (behind the mean)."""
    ax.plot(x, y, linestyle="none", marker=MARKERS[i % len(MARKERS)], ms=2.2, color="0.7", label=label, zorder=2)
