"""Every shipped config, at every point of its sweep, is a valid configuration (the registered
algorithms refuse settings they do not read, so a stale config fails here, not in a user's run)."""

from pathlib import Path

import pytest

from theory_lab.config import build_config, read_toml, toml_value
from theory_lab.sweep import grid_points

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.parent.name + "/" + p.name for p in CONFIGS])
def test_every_point_of_every_shipped_config_validates(path):
    data = read_toml(path)
    for point in grid_points(data):
        build_config(data, [f"{k}={toml_value(v)}" for k, v in point.items()])
