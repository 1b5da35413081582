"""`theory-lab verify`: run claims of the registry and write report.md / report.json plus one
diagnostic figure per claim."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from theory_lab.claims import REGISTRY, Context
from analysis.verdict import STATUSES
from theory_lab.claims.base import ci_text
from theory_lab.errors import ConfigError
from theory_lab.results import atomic_write_text, provenance


TRACKS = ("synthetic", "llm", "all")


def select(ids: str | None, track: str = "synthetic") -> list[str]:
    """The claims named in `ids`, else every claim of `track` (the LLM ones are opt-in)."""
    if track not in TRACKS:
        raise ConfigError("--track", f"must be one of {', '.join(TRACKS)}, got {track!r}")
    if not ids:
        return [cid for cid, c in REGISTRY.items() if track in ("all", c.track)]
    chosen = [c.strip() for c in ids.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in REGISTRY]
    if unknown:
        raise ConfigError("--claims", f"unknown claim {unknown[0]!r}; known: {', '.join(REGISTRY)}")
    return chosen


def verify(ids: list[str], quick: bool, seeds: int, out: Path | None, progress=print, **llm) -> list[dict]:
    """Run the claims `ids`; `llm` sets the LLM-track claims' llm_model, llm_lr, data_dir, runs_dir."""
    ctx = Context(quick=quick, seeds=seeds, figure_dir=(Path(out) / "figures") if out else None, **llm)
    rows = []
    for cid in ids:
        c = REGISTRY[cid]
        start = time.perf_counter()
        o = c.run(ctx)
        command = f"theory-lab verify --claims {cid} --seeds {seeds}" + (" --quick" if quick else "")
        if c.track == "llm":   # the options the claim reads, no others (--runs only spares reruns)
            command = (f"theory-lab verify --claims {cid} --llm-model {ctx.llm_model}"
                       + (f" --llm-lr {ctx.llm_lr:g}" if "llm_lr" in c.reads else "")
                       + (f" --data-dir {ctx.data_dir}" if ctx.data_dir else ""))
        rows.append({
            "claim": cid, "statement": c.statement, "source": c.source, "metric": c.metric,
            "regime": c.regime, "predicted": c.predicted, "tolerance": c.tolerance,
            "fitted": ci_text(o.fitted, o.ci), "value": o.fitted, "ci_low": o.ci[0], "ci_high": o.ci[1],
            "predicted_value": o.predicted_value,
            "verdict": o.verdict.status, "reason": o.verdict.reason, "should_hold": c.should_hold,
            "prediction_verdict": o.prediction.status if o.prediction else None,
            "coefficient": _plain(_coefficient(c, o)), "controls": _plain(_controls(c, o)),
            "small": _plain(_small(c, o)),
            "tightness": o.tightness, "details": _plain(o.details), "figure": o.figure,
            "command": command, "seconds": round(time.perf_counter() - start, 2),
        })
        if progress:
            progress(f"{cid:<28} {rows[-1]['verdict']:<13} {rows[-1]['fitted']:<32} {rows[-1]['seconds']:6.1f}s")
    if out:
        meta = {"quick": quick, "seeds": seeds, **provenance()}
        atomic_write_text(Path(out) / "report.json", json.dumps({"meta": meta, "claims": rows}, indent=2) + "\n")
        atomic_write_text(Path(out) / "report.md", markdown(rows, meta))
    return rows


def _coefficient(c, o) -> dict | None:
    """observed/predicted [CI] against the declared band, or None where no exact coefficient exists."""
    if o.coefficient is None:
        return None
    f = o.coefficient
    return {"ratio": f.ratio, "ci_low": f.ci_low, "ci_high": f.ci_high, "band": list(c.band),
            "text": ci_text(f.ratio, (f.ci_low, f.ci_high)), "range": [f.min, f.max],
            "verdict": o.coefficient_verdict.status, "reason": o.coefficient_verdict.reason}


def _controls(c, o) -> list[dict]:
    """Each declared control, its fit under the claim's check, and that check's verdict on it."""
    rows = []
    for k in c.controls:
        got = o.controls.get(k.name)
        rows.append({"name": k.name, "kind": k.kind, "what": k.what,
                     "fitted": got.fitted if got else None,
                     "verdict": got.verdict.status if got else "not run",
                     "reason": got.verdict.reason if got else "the check did not run this control"})
    return rows


def _small(c, o) -> dict | None:
    if c.small is None:
        return None
    return {"name": c.small.name, "value": o.small, "limit": c.small.limit}


def table(rows: list[dict]) -> str:
    lines = ["| claim | predicted | fitted [95% CI] | obs/pred [95% CI] | controls refuted | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        coef = r.get("coefficient")
        ctl = r.get("controls") or []
        refuted = f"{sum(k['verdict'] == 'refuted' for k in ctl)}/{len(ctl)}" if ctl else "none declared"
        lines.append(f"| {r['claim']} | {r['predicted']} | {r['fitted']} | {coef['text'] if coef else '—'} | "
                     f"{refuted} | **{r['verdict']}** |")
    return "\n".join(lines)


def markdown(rows: list[dict], meta: dict) -> str:
    counts = {s: sum(r["verdict"] == s for r in rows) for s in STATUSES}
    parts = [
        "# Verification report", "",
        f"{len(rows)} claims ({'quick' if meta['quick'] else 'full'} suite, {meta['seeds']} seeds): "
        + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".",
        f"torch {meta['torch']}, git {meta.get('git_revision') or 'unknown'}.", "", table(rows), "",
    ]
    for r in rows:
        parts += [f"## {r['claim']}", "", r["statement"] + ".", "",
                  f"- source: {r['source']}", f"- metric: {r['metric']}", f"- regime: {r['regime']}",
                  f"- predicted: {r['predicted']} (tolerance {r['tolerance']:g})",
                  f"- fitted: {r['fitted']}"]
        parts += _judged_lines(r)
        parts.append(f"- verdict: **{r['verdict']}**: {r['reason']}")
        if r["tightness"] is not None:
            parts.append(f"- tightness (bound / empirical): {r['tightness']:.3g}")
        for key, value in r["details"].items():
            parts.append(f"- {key}: {_detail_text(value)}")
        parts.append(f"- reproduce: `{r['command']}`")
        if r["figure"]:
            parts.append(f"\n![{r['claim']}](figures/{Path(r['figure']).name})")
        parts.append("")
    return "\n".join(parts)


def _judged_lines(r: dict) -> list[str]:
    """The parts the verdict is built from: coefficient, small parameter, controls."""
    out = []
    coef, small = r.get("coefficient"), r.get("small")
    if coef:
        lo, hi = coef["band"]
        out.append(f"- coefficient observed/predicted: {coef['text']} (band [{lo:g}, {hi:g}]): {coef['verdict']}")
    if small:
        value = "not measured" if small["value"] is None else f"{small['value']:.3g}"
        out.append(f"- small parameter {small['name']}: {value} (declared limit {small['limit']:g})")
    for k in r.get("controls") or []:
        fitted = f" {k['fitted']}" if k["fitted"] else ""
        out.append(f"- control {k['name']} ({k['kind']}: {k['what']}):{fitted} → **{k['verdict']}**"
                   + (f" ({k['reason']})" if k["verdict"] != "refuted" else ""))
    return out


def _detail_text(value) -> str:
    if isinstance(value, dict) and "slope" in value:
        return f"slope {ci_text(value['slope'], (value['ci_low'], value['ci_high']))}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plain(value):
    """Details as JSON-friendly values (fit results become dicts)."""
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
