"""The `[llm]` config section: model, data, partition, DPO and LoRA settings of the LLM track."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llm.personal import PersonalConfig
from theory_lab.choices import check_choices
from theory_lab.errors import ConfigError

DATASETS = ("hh-rlhf", "imdb-cad", "pandalm", "ultrafeedback")
PARTITIONS = ("iid", "dirichlet", "natural")
LOSS_TYPES = ("sigmoid", "ipo", "hinge")
CLIENT_BATCHING = ("auto", "off", "on")
PREFIX_SHARING = ("auto", "on", "off")
DATA_DIR_ENV = "DDPO_DATA_DIR"


@dataclass
class LLMConfig:
    model: str = "smollm2"          # "smollm2" (offline GGUF), "tiny" (random, tests), HF id, local dir or .gguf
    data_dir: str = ""              # "" -> $DDPO_DATA_DIR, else ../shared/data beside the project
    dataset: str = "hh-rlhf"        # one of DATASETS (optionally NAME:SPLIT), "jsonl:PATH" or "hf:ID"
    datasets: list[str] | None = None  # natural / cross-domain partition: one data set per client
    n_clients: int = 5
    pairs_per_client: int = 120
    heldout_per_client: int = 40
    partition: Literal[PARTITIONS] = "iid"   # iid, dirichlet (over labels / topic clusters), natural
    dirichlet_alpha: float = 0.5
    conflict: float = 0.0           # preference conflict: 0 shared preferences .. 1 half the clients opposed
    beta: float = 0.2
    loss_type: Literal[LOSS_TYPES] = "sigmoid"
    max_length: int = 64
    max_prompt_length: int = 32
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"   # auto: bfloat16 on CUDA, float32 on CPU
    device: str = "auto"
    eval_batch_size: int = 16
    # all participating clients' steps in one forward/backward with their LoRA adapters stacked
    # (llm/batched.py; exact): "auto" on a GPU when >= 2 clients share a step (on the CPU one large batch
    # measured slower than per-client ones), "on" always, "off" one client at a time
    client_batching: Literal[CLIENT_BATCHING] = "auto"
    max_rows_per_forward: int = 256  # client batching: at most this many sequences (2 per pair) per forward (memory bound)
    # each pair's prompt runs once for both responses (a KV cache; same values): "auto" on the CPU only,
    # where it saves time (on an H200 it cost 1.5x: more, smaller kernels)
    prefix_sharing: Literal[PREFIX_SHARING] = "auto"
    # recompute each transformer layer's activations in the backward instead of keeping them
    # (llm.model.checkpoint_layers; exact): memory for more rows per forward, for ~1/3 more compute.
    # Prefix sharing's KV cache cannot be recomputed, so "auto" prefix sharing turns off with it
    gradient_checkpointing: bool = False
    # full rows (no prefix sharing) run packed end to end without padding (llm/packing.py; exact;
    # 1.51x at L = 256 on HH-RLHF, CPU, paired); client-batched rows pack client by client; FedPDPO too
    packing: bool = True
    # packed forwards take a few fixed shapes (width: the widest tokenized row; packed rows rounded up
    # to 1, 2, 3, 4, 6, 8, 12, ...; llm/packing.py), so torch.compile and CUDA graphs do not recompile
    # per batch; needs packing, and turns "auto" prefix sharing off
    static_shapes: bool = False
    seed: int = 0                   # data sampling and partition
    personal: PersonalConfig = field(default_factory=PersonalConfig)  # FedPDPO modules (llm/fedpdpo.py)

    def validate(self) -> None:
        check_choices(self, "llm.")
        def need(ok: bool, name: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"llm.{name}", message)

        known = DATASETS
        for spec in (self.datasets or [self.dataset]):
            need(spec.split(":")[0] in known or spec.startswith(("jsonl:", "hf:")), "datasets" if self.datasets else "dataset",
                 f"unknown data set {spec!r}; known: {', '.join(known)} (optionally NAME:SPLIT), jsonl:PATH, hf:ID")
        need(self.n_clients >= 1, "n_clients", f"must be >= 1, got {self.n_clients}")
        need(self.pairs_per_client >= 1, "pairs_per_client", f"must be >= 1, got {self.pairs_per_client}")
        need(self.heldout_per_client >= 1, "heldout_per_client", f"must be >= 1, got {self.heldout_per_client}")
        if self.partition == "natural":
            need(bool(self.datasets) and len(self.datasets) == self.n_clients, "datasets",
                 f"the natural partition needs one data set per client ({self.n_clients})")
        need(self.dirichlet_alpha > 0, "dirichlet_alpha", f"must be > 0, got {self.dirichlet_alpha}")
        need(0.0 <= self.conflict <= 1.0, "conflict", f"must be in [0, 1], got {self.conflict}")
        need(self.beta > 0, "beta", f"must be > 0, got {self.beta}")
        need(self.max_length >= 8, "max_length", f"must be >= 8, got {self.max_length}")
        need(0 < self.max_prompt_length < self.max_length, "max_prompt_length",
             f"must be in (0, max_length={self.max_length}) so responses keep tokens, got {self.max_prompt_length}")
        need(self.lora_r >= 1, "lora_r", f"must be >= 1, got {self.lora_r}")
        need(self.lora_alpha > 0, "lora_alpha", f"must be > 0, got {self.lora_alpha}")
        need(0 <= self.lora_dropout < 1, "lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        need(len(self.target_modules) >= 1, "target_modules", "needs at least one module name")
        need(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        need(self.max_rows_per_forward >= 2, "max_rows_per_forward", f"must be >= 2 (one pair), got {self.max_rows_per_forward}")
        need(not self.static_shapes or (self.packing and self.prefix_sharing != "on"), "static_shapes",
             "needs full rows packed: llm.packing = true and llm.prefix_sharing auto or off")
        need(not (self.gradient_checkpointing and self.prefix_sharing == "on"), "gradient_checkpointing",
             "cannot recompute the layers of prefix sharing's KV-cache forwards: set llm.prefix_sharing to auto or off")
        self.personal.validate()

    def execution(self) -> dict:
        """How the oracle runs its forwards (the LLMOracle keyword arguments; values unchanged)."""
        return dict(client_batching=self.client_batching, max_rows_per_forward=self.max_rows_per_forward,
                    prefix_sharing=self.prefix_sharing, gradient_checkpointing=self.gradient_checkpointing,
                    packing=self.packing, static_shapes=self.static_shapes)

    def resolved_data_dir(self) -> Path:
        """Config field, then $DDPO_DATA_DIR, then ../shared/data beside the project root."""
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        if os.environ.get(DATA_DIR_ENV):
            return Path(os.environ[DATA_DIR_ENV]).expanduser()
        return Path(__file__).resolve().parents[2] / "shared" / "data"
