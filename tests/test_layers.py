"""Dependencies point one way: the core (theory_lab, but for the claim registry that sits above
both tracks) imports no track; the tracks import the core; analysis reads only results."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRACKS = {"synthetic", "llm"}
ABOVE_THE_TRACKS = {"theory_lab/claims"}   # the claims run experiments on both tracks


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports, at any depth (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def modules(package: str, skip=()):
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not any(rel.startswith(s) for s in skip):
            yield rel, path


@pytest.mark.parametrize("rel, path", list(modules("theory_lab", ABOVE_THE_TRACKS)), ids=lambda v: str(v))
def test_the_core_imports_no_track(rel, path):
    assert not imported_packages(path) & TRACKS, f"{rel} imports a track: register through theory_lab.tracks"


@pytest.mark.parametrize("rel, path", list(modules("analysis")), ids=lambda v: str(v))
def test_analysis_imports_neither_core_nor_tracks(rel, path):
    assert not imported_packages(path) & (TRACKS | {"theory_lab"}), rel


def test_the_synthetic_track_imports_no_llm():
    for rel, path in modules("synthetic"):
        assert "llm" not in imported_packages(path), rel


def test_the_tracks_register_what_configs_name():
    from theory_lab import tracks

    for name, module in tracks.BUILTIN.items():
        track = tracks.get(name)
        assert track.name == name and module.startswith(name + ".")


def import_graph():
    """Module -> project modules it imports (function-level imports included, `if TYPE_CHECKING:`
    blocks not: they never run)."""
    import networkx as nx

    mods = {}
    for pkg in ("theory_lab", "synthetic", "llm", "analysis", "paper_figures"):
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    graph = nx.DiGraph()
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
                for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t in mods and t != name)
    return graph


def test_no_import_cycles():
    import networkx as nx

    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, f"import cycles: {cycles[:3]}"
