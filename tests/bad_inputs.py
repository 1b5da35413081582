"""The catalogue of bad inputs: each case is a command line (plus files it writes first) that
must end with exit status 2 and one `error:` line naming the field or file:line.

    python tests/bad_inputs.py > docs/reliability-catalogue.md   # regenerate the table in the docs
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

BASE = """
[run]
seeds = [0]
rounds = 3
[problem]
n_clients = 4
pairs_per_client = 20
heldout_pairs = 5
dim = 3
n_contexts = 5
[algorithm]
name = "feddpo"
lr = 0.5
[topology]
name = "ring"
"""

LLM = f"""track = "llm"
[run]
rounds = 1
[llm]
model = "tiny"
data_dir = "{DATA}"
dataset = "imdb-cad"
n_clients = 2
pairs_per_client = 4
heldout_per_client = 2
max_length = 40
max_prompt_length = 12
[algorithm]
batch_size = 2
"""


@dataclass
class Case:
    name: str
    args: list[str]           # after `theory-lab`; {cfg}, {out}, {tmp} are filled in
    expect: str               # must appear in the error line (the field or file:line)
    files: dict[str, str | bytes] = field(default_factory=dict)  # name -> content, written under tmp first
    needs_data: bool = False


def synthetic(*sets: str, expect: str, name: str, cfg: str = BASE) -> Case:
    return Case(name, ["synthetic", "--config", "{tmp}/cfg.toml", "--out", "{out}", "--quiet",
                       *[x for s in sets for x in ("--set", s)]], expect, {"cfg.toml": cfg})


def llm(*sets: str, expect: str, name: str) -> Case:
    return Case(name, ["llm", "--config", "{tmp}/cfg.toml", "--out", "{out}", "--quiet",
                       *[x for s in sets for x in ("--set", s)]], expect, {"cfg.toml": LLM}, needs_data=True)


CASES = [
    Case("malformed TOML", ["synthetic", "--config", "{tmp}/bad.toml", "--out", "{out}"], "line 3",
         {"bad.toml": "[run]\nrounds = 3\nseeds = [0,,]\n"}),
    Case("missing config file", ["synthetic", "--config", "{tmp}/nope.toml", "--out", "{out}"], "nope.toml"),
    synthetic("algorithm.learning_rate=0.1", expect="algorithm.learning_rate", name="unknown key"),
    synthetic("nonsense.x=1", expect="nonsense", name="unknown section"),
    synthetic('run.rounds="ten"', expect="run.rounds", name="wrong type (string for int)"),
    synthetic("algorithm.lr=true", expect="algorithm.lr", name="wrong type (bool for float)"),
    synthetic("run.seeds=3", expect="run.seeds", name="wrong type (int for list)"),
    synthetic("algorithm.lr=-0.1", expect="algorithm.lr", name="negative step size"),
    synthetic("algorithm.lr=nan", expect="algorithm.lr", name="NaN step size"),
    synthetic("run.rounds=0", expect="run.rounds", name="zero rounds"),
    synthetic("run.seeds=[0, 0]", expect="run.seeds", name="duplicate seeds"),
    synthetic("algorithm.participation=9", expect="algorithm.participation", name="S > N"),
    synthetic("algorithm.local_steps=0", expect="algorithm.local_steps", name="zero local steps"),
    synthetic("algorithm.batch_size=-1", expect="algorithm.batch_size", name="negative batch"),
    synthetic('algorithm.name="fedsgd"', expect="algorithm.name", name="unknown algorithm"),
    synthetic('algorithm.optimizer="lion"', expect="algorithm.optimizer", name="unknown optimizer"),
    synthetic('algorithm.schedule="step"', expect="algorithm.schedule", name="unknown schedule"),
    synthetic('algorithm.name="decdpo"', "algorithm.q_max=2", expect="algorithm.q_max",
              name="staleness on a decentralized algorithm"),
    synthetic('algorithm.name="gradient_tracking"', "algorithm.local_steps=3", expect="algorithm.local_steps",
              name="gradient tracking with local steps"),
    synthetic("algorithm.betas=[0.9]", expect="algorithm.betas", name="AdamW betas of the wrong length"),
    synthetic('algorithm.lora_aggregation="exact"', expect="algorithm.lora_aggregation",
              name="LoRA aggregation rule without factorised parameters"),
    synthetic('algorithm.lora_aggregation="mean"', "problem.lora_rank=1", "problem.lora_rows=3",
              expect="algorithm.lora_aggregation", name="unknown LoRA aggregation rule"),
    synthetic("problem.lora_rank=1", "problem.lora_rows=2", expect="problem.lora_rows",
              name="factorised rows that do not divide dim"),
    synthetic('algorithm.name="decdpo"', 'algorithm.lora_aggregation="fedsa"', "problem.lora_rank=1",
              "problem.lora_rows=3", expect="algorithm.lora_aggregation", name="LoRA rule the algorithm cannot gossip"),
    synthetic("problem.n_clients=0", expect="problem.n_clients", name="no clients"),
    synthetic("problem.n_actions=1", expect="problem.n_actions", name="one action (no pairs)"),
    synthetic("problem.beta=0", expect="problem.beta", name="beta = 0"),
    synthetic("problem.client_sizes=[10, 10]", expect="problem.client_sizes", name="client sizes of the wrong length"),
    synthetic('algorithm.name="decdpo"', 'topology.name="moebius"', expect="topology.name", name="unknown topology"),
    synthetic('algorithm.name="decdpo"', 'topology.name="hypercube"', "problem.n_clients=6",
              expect="topology.name", name="hypercube with n not a power of 2"),
    synthetic('algorithm.name="decdpo"', 'topology.name="custom"',
              "topology.weights=[[1,0,0,0],[0,1,0,0],[0,0,0.5,0.5],[0,0,0.5,0.5]]",
              expect="topology.weights", name="disconnected graph"),
    synthetic('algorithm.name="decdpo"', 'topology.name="custom"',
              "topology.weights=[[0.5,0.5,0,0],[0.5,0.6,0,0],[0,0,0.5,0.5],[0,0,0.5,0.5]]",
              expect="topology.weights", name="non-stochastic W"),
    synthetic('algorithm.name="decdpo"', 'topology.name="custom"',
              "topology.weights=[[nan,0.5,0,0.5],[0.5,0,0.5,0],[0,0.5,0,0.5],[0.5,0,0.5,0]]",
              expect="topology.weights", name="NaN in W"),
    synthetic('algorithm.name="decdpo"', 'topology.name="custom"', 'topology.weights_file="{tmp}/w.txt"',
              expect="w.txt", name="missing W file"),
    synthetic("algorithm.lr=1e12", "algorithm.batch_size=0", "problem.beta=5.0", expect="2/L",
              name="diverging run (message gives the step size and 2/L)"),
    Case("resume without a checkpoint", ["synthetic", "--resume", "{tmp}/empty"], "--resume"),
    Case("resume from another config's checkpoint",
         ["synthetic", "--config", "{tmp}/cfg.toml", "--resume", "{tmp}/ckpt", "--quiet"], "another config",
         {"cfg.toml": BASE, "ckpt/checkpoint/meta.json": '{"round": 1, "t": 1, "records": [], "counters": {},'
                                                        ' "config": {}, "config_hash": "0"}',
          "ckpt/checkpoint/state.safetensors": ""}),
    Case("output directory is a file", ["synthetic", "--config", "{tmp}/cfg.toml", "--out", "{tmp}/afile",
                                        "--quiet"], "afile", {"cfg.toml": BASE, "afile": "x"}),
    Case("unknown claim", ["verify", "--claims", "nope", "--out", "{out}"], "--claims"),
    Case("config of the other track", ["llm", "--config", "{tmp}/cfg.toml", "--out", "{out}"], "track",
         {"cfg.toml": BASE}),
    llm('llm.model="no-such-model-anywhere"', expect="llm.model", name="unknown model"),
    llm('llm.target_modules=["nope_proj"]', expect="llm.target_modules", name="unknown LoRA target module"),
    llm("llm.max_prompt_length=40", expect="llm.max_prompt_length", name="prompt as long as max_length"),
    llm('llm.dataset="imdb"', expect="llm.dataset", name="unknown data set"),
    llm('llm.data_dir="/nonexistent/data"', expect="llm.data_dir", name="missing data directory"),
    llm("llm.pairs_per_client=100000", expect="llm.pairs_per_client", name="more pairs than the data hold"),
    llm('llm.partition="natural"', expect="llm.datasets", name="natural partition without data sets"),
    llm('llm.gradient_checkpointing=true', 'llm.prefix_sharing="on"', expect="llm.gradient_checkpointing",
        name="gradient checkpointing with prefix sharing on"),
    Case("malformed JSONL line", ["llm", "--config", "{tmp}/cfg.toml", "--out", "{out}", "--quiet",
                                  "--set", 'llm.dataset="jsonl:{tmp}/pairs.jsonl"'], "pairs.jsonl:2",
         {"cfg.toml": LLM, "pairs.jsonl": '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a",\n'},
         needs_data=True),
    Case("JSONL of ties only", ["llm", "--config", "{tmp}/cfg.toml", "--out", "{out}", "--quiet",
                                "--set", 'llm.dataset="jsonl:{tmp}/ties.jsonl"'], "3 (chosen == rejected)",
         {"cfg.toml": LLM, "ties.jsonl": '{"prompt": "a", "chosen": "b", "rejected": "b"}\n' * 3}, needs_data=True),
    Case("binary config file", ["synthetic", "--config", "{tmp}/bin.toml", "--out", "{out}"], "bin.toml",
         {"bin.toml": bytes(range(256))}),
    synthetic("run.seeds=[0,1", expect="invalid TOML value", name="unclosed list in --set"),
    synthetic('track="llm"', expect="--set track", name="--set track on a config of the other track"),
    Case("--set on the sweep grid", ["sweep", "--config", "{tmp}/cfg.toml", "--out", "{out}", "--set",
                                     "sweep.grid={}"], "--set sweep.grid", {"cfg.toml": BASE}),
    Case("verify with zero seeds", ["verify", "--seeds", "0", "--out", "{out}"], "--seeds"),
    Case("verify with negative seeds", ["verify", "--seeds", "-2", "--out", "{out}"], "--seeds"),
    Case("topology with no nodes", ["topology", "ring", "--n", "0"], "--n"),
    Case("resume from a missing folder", ["synthetic", "--resume", "{tmp}/nope"], "no such folder"),
    Case("output folder holds a previous run", ["synthetic", "--config", "{tmp}/cfg.toml", "--out", "{tmp}/old",
                                                "--quiet"], "--overwrite",
         {"cfg.toml": BASE, "old/results.csv": "round\n0\n", "old/manifest.json": "{}"}),
    Case("output folder under a file", ["synthetic", "--config", "{tmp}/cfg.toml", "--out", "{tmp}/afile/sub",
                                        "--quiet"], "not a writable folder", {"cfg.toml": BASE, "afile": "x"}),
    llm("llm.static_shapes=true", "llm.packing=false", expect="llm.static_shapes",
        name="static shapes without packing"),
]


def run_case(case: Case, tmp: Path) -> tuple[int, str]:
    """Write the case's files, run the CLI in-process, return (exit code, stderr)."""
    from theory_lab.cli import main

    for name, content in case.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{tmp}", str(tmp)))
    args = [a.replace("{tmp}", str(tmp)).replace("{out}", str(tmp / "out")) for a in case.args]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue().strip()


if __name__ == "__main__":
    import tempfile

    print("| # | bad input | error line |\n|---|---|---|")
    for i, case in enumerate(CASES, 1):
        with tempfile.TemporaryDirectory() as tmp:
            code, err = run_case(case, Path(tmp))
        shown = err.replace(tmp, "…").replace(str(ROOT.parent), "…").replace("|", "\\|")
        print(f"| {i} | {case.name} | `{shown}` (exit {code}) |")
