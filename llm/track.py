"""The LLM track, registered with the core (theory_lab.tracks): config table [llm], the LoRA
oracle (FedPDPO's when llm.personal is enabled), its table columns, and one model load per sweep."""

from __future__ import annotations

from llm.config import LLMConfig
from theory_lab.errors import ConfigError
from theory_lab.tracks import Track, register


def build_oracle(cfg):
    """FedPDPO's oracle (personal modules inside) when llm.personal is enabled, else the LoRA one.
    Imported here, not at the top: transformers and peft load only when a model is built."""
    if cfg.llm.personal.enabled:
        from llm.fedpdpo import build_fedpdpo_oracle

        return build_fedpdpo_oracle(cfg.llm)
    from llm.oracle import build_llm_oracle

    return build_llm_oracle(cfg.llm)


def columns(cfg) -> dict:
    m = cfg.llm
    return {"partition": m.partition, "dirichlet_alpha": m.dirichlet_alpha, "conflict": m.conflict, "beta": m.beta,
            "loss_type": m.loss_type, "model": m.model, "dataset": ",".join(m.datasets or [m.dataset])}


def check(cfg) -> None:
    if len(cfg.run.seeds) != 1:
        raise ConfigError("run.seeds", "the LLM track runs one seed per run; sweep over run.seeds")


def sweep_context():
    from llm.model import reuse_loaded_models   # lazy: transformers loads only when a sweep runs the llm track

    return reuse_loaded_models()


TRACK = register(Track("llm", "llm", LLMConfig, build_oracle, columns, check, sweep_context))
