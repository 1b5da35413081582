"""Preference conflict on real data: the knob reverses exactly the opposed clients' pairs (train
and held-out), leaves the partition alone, and raises the heterogeneity constant ζ̃² where the
clients share a preference direction."""

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from llm.config import LLMConfig  # noqa: E402
from llm.data import client_data  # noqa: E402
from llm.partition import opposed_clients, preference_conflict  # noqa: E402
from theory_lab.cli import main  # noqa: E402
from theory_lab.config import build_config  # noqa: E402
from theory_lab.errors import ConfigError  # noqa: E402
from theory_lab.estimate import heterogeneity  # noqa: E402
from theory_lab.runner import make_oracle  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared data not found")


def cfg(conflict, **kw):
    return LLMConfig(dataset="imdb-cad", n_clients=4, pairs_per_client=10, heldout_per_client=4, partition="dirichlet",
                     dirichlet_alpha=0.5, data_dir=str(DATA), seed=3, conflict=conflict, **kw)


def unordered(clients):
    return [[(p.prompt, frozenset((p.chosen, p.rejected)), p.source, p.group) for p in c] for c in clients]


@needs_data
def test_knob_zero_is_todays_partition_and_the_knob_never_moves_pairs():
    today = client_data(cfg(0.0))
    assert client_data(LLMConfig(**{**cfg(0.0).__dict__, "conflict": 0.0})) == today
    for knob in (0.25, 0.5, 1.0):
        train, heldout = client_data(cfg(knob))
        assert unordered(train) == unordered(today[0]) and unordered(heldout) == unordered(today[1])


@needs_data
def test_knob_one_reverses_exactly_the_opposed_clients_pairs_held_out_included():
    (train0, held0), (train1, held1) = client_data(cfg(0.0)), client_data(cfg(1.0))
    opposed = opposed_clients(4, 3)
    assert len(opposed) == 2
    for i in range(4):
        for before, after in ((train0[i], train1[i]), (held0[i], held1[i])):
            if i in opposed:
                assert [(p.chosen, p.rejected) for p in after] == [(p.rejected, p.chosen) for p in before]
            else:
                assert after == before


def test_half_knob_reverses_half_of_each_opposed_clients_pairs():
    from llm.data import PreferencePair

    clients = [[PreferencePair(f"p{j}", "good", "bad", "s", "g") for j in range(10)] for _ in range(4)]
    out = preference_conflict(clients, 0.5, [0, 2], seed=7)
    assert [sum(p.chosen == "bad" for p in c) for c in out] == [5, 0, 5, 0]
    assert out == preference_conflict(clients, 0.5, [0, 2], seed=7)            # seeded
    with pytest.raises(ConfigError, match="llm.conflict"):
        preference_conflict(clients, 1.5, [0], seed=0)


def test_heterogeneity_grows_with_the_knob_when_clients_share_a_preference(tmp_path):
    """Every pair prefers the same ending: the clients' gradients at θ0 share a direction, which the
    knob flips on the opposed half, so ζ̃² must grow (from near 0), as c² (docs/llm_conflict.md). It
    could fail: on pairs with no common direction (the tiny random model on IMDb) it barely moves."""
    lines = [json.dumps({"prompt": f"review {j}: the film was", "chosen": " wonderful, moving and bright.",
                         "rejected": " dull, tiresome and grey."}) for j in range(40)]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    zeta2 = {}
    for knob in (0.0, 0.5, 1.0):
        data = {"track": "llm", "run": {"rounds": 1},
                "llm": {"model": "tiny", "dataset": f"jsonl:{tmp_path / 'pairs.jsonl'}", "n_clients": 4,
                        "pairs_per_client": 6, "heldout_per_client": 2, "max_length": 48, "max_prompt_length": 24,
                        "conflict": knob},
                "algorithm": {"name": "feddpo", "batch_size": 0}}
        oracle = make_oracle(build_config(data))
        zeta2[knob] = float(heterogeneity(oracle, oracle.init_params())[0])
    assert zeta2[0.5] > 10 * zeta2[0.0] and zeta2[1.0] > zeta2[0.5], zeta2
    # identical clients, half of them opposed: client means (1 − 2c)g, so ζ̃²(c) = c²‖g‖² (+ ζ̃²(0))
    assert (zeta2[1.0] - zeta2[0.0]) / (zeta2[0.5] - zeta2[0.0]) == pytest.approx(4.0, rel=0.1)


@needs_data
def test_the_manifest_records_the_knob_and_the_opposed_clients(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f"""track = "llm"
[run]
rounds = 1
[llm]
model = "tiny"
data_dir = "{DATA}"
dataset = "imdb-cad"
n_clients = 4
pairs_per_client = 4
heldout_per_client = 2
max_length = 32
max_prompt_length = 12
conflict = 1.0
[algorithm]
batch_size = 2
""")
    assert main(["llm", "--config", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["config"]["llm"]["conflict"] == 1.0 and manifest["opposed_clients"] == opposed_clients(4, 0)
