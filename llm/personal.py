"""FedPDPO's client-local modules (Zhu et al., arXiv:2603.19741) and their config section
`[llm.personal]`. Only the paper's abstract is public: every shape, initialisation and formula here
is ours (docs/fedpdpo.md lists each choice).

The modules act on the final hidden state h [rows, T, d] (after the backbone's final norm), in
this order, each one switchable:

    bottleneck     h~ = h + g * Up(GELU(Down h)),  g = sigmoid(gate) in (0, 1)^d   (per dimension)
    personal head  logits = W_lm (h~ + B (A h~))   (a rank-r change of the frozen head W_lm:
                   W_i = W_lm (I + B_i A_i), without copying the vocabulary-sized W_lm)
    reward head    r(x, y) = w . pool(h~ over the response tokens)    (pool: mean or last token)

All of a client's personal parameters are one flat vector (`PersonalModules.layout` gives the
slices); with `share_lora = false` the client's own LoRA vector is its first slice (local-only
training: nothing is shared). Initialisation: Up = 0, B = 0, w = 0, gate = 0 (g = 1/2), and
Down, A ~ U(±1/sqrt(d)) as peft initialises LoRA's A, so the personalised policy starts exactly at
the reference and every module still receives a gradient at the first step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from theory_lab.choices import check_choices
from theory_lab.errors import ConfigError

POOLS = ("mean", "last")


@dataclass
class PersonalConfig:
    enabled: bool = False        # false: the plain LLMOracle (FedDPO / FedProx / SCAFFOLD baselines)
    share_lora: bool = True      # false: every client keeps its own LoRA, nothing is communicated (local-only)
    personal_head: bool = True   # client-local low-rank change of the LM head
    head_rank: int = 4
    reward_head: bool = True     # client-local explicit reward head (Bradley-Terry)
    reward_pool: Literal[POOLS] = "mean"   # hidden states pooled over the response: mean, or the last response token
    reward_weight: float = 1.0   # lambda: personalised margin = implicit + lambda * explicit
    bt_weight: float = 1.0       # gamma: + gamma * BT loss of the explicit reward alone
    bottleneck: bool = True      # client-local gated bottleneck adapter on the final hidden state
    bottleneck_dim: int = 16
    lr: float = 1e-3             # the oracle's own AdamW on the personal parameters (constant step)
    weight_decay: float = 0.0
    variant: str = ""            # a free label for result tables (sweeps make it a column); no effect

    def validate(self) -> None:
        def need(ok: bool, name: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"llm.personal.{name}", message)

        need(self.head_rank >= 1, "head_rank", f"must be >= 1, got {self.head_rank}")
        need(self.bottleneck_dim >= 1, "bottleneck_dim", f"must be >= 1, got {self.bottleneck_dim}")
        check_choices(self, "llm.personal.")
        need(self.reward_weight >= 0 and math.isfinite(self.reward_weight), "reward_weight",
             f"must be a finite number >= 0, got {self.reward_weight}")
        need(self.bt_weight >= 0 and math.isfinite(self.bt_weight), "bt_weight",
             f"must be a finite number >= 0, got {self.bt_weight}")
        need(self.lr > 0 and math.isfinite(self.lr), "lr", f"must be > 0, got {self.lr}")
        need(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")

    @property
    def has_personal_params(self) -> bool:
        return not self.share_lora or self.personal_head or self.reward_head or self.bottleneck


class PersonalModules:
    """The functional client-local modules: `layout` maps each parameter block to its slice and
    shape inside a client's flat personal vector; the methods apply them given the split blocks.
    A switched-off module has no parameters at all and its method is the identity (or None)."""

    def __init__(self, cfg: PersonalConfig, hidden: int, lora_dim: int):
        self.cfg, self.hidden = cfg, hidden
        d, k, r = hidden, cfg.bottleneck_dim, cfg.head_rank
        shapes: dict[str, tuple[int, ...]] = {}
        if not cfg.share_lora:
            shapes["lora"] = (lora_dim,)
        if cfg.bottleneck:
            shapes.update(down=(k, d), up=(d, k), gate=(d,))
        if cfg.personal_head:
            shapes.update(head_A=(r, d), head_B=(d, r))
        if cfg.reward_head:
            shapes["reward"] = (d,)
        self.layout: dict[str, tuple[slice, tuple[int, ...]]] = {}
        offset = 0
        for name, shape in shapes.items():
            n = math.prod(shape)
            self.layout[name] = (slice(offset, offset + n), shape)
            offset += n
        self.dim = offset

    def module_sizes(self) -> dict[str, int]:
        """Parameters per module (bottleneck, personal_head, reward_head, lora)."""
        groups = {"lora": ("lora",), "bottleneck": ("down", "up", "gate"),
                  "personal_head": ("head_A", "head_B"), "reward_head": ("reward",)}
        return {g: sum(self.layout[n][0].stop - self.layout[n][0].start for n in names if n in self.layout)
                for g, names in groups.items() if any(n in self.layout for n in names)}

    def init(self, gen: torch.Generator, dtype: torch.dtype, lora0: torch.Tensor | None = None) -> torch.Tensor:
        """One client's starting vector [dim] (see the module docstring)."""
        vec = torch.zeros(self.dim, dtype=torch.float64)
        bound = 1.0 / math.sqrt(self.hidden)
        for name, (sl, _) in self.layout.items():
            if name in ("down", "head_A"):
                vec[sl] = (torch.rand(sl.stop - sl.start, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            elif name == "lora":
                vec[sl] = lora0.to(torch.float64)
        return vec.to(dtype)

    def split(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of the blocks of K clients' vectors [K, dim] as [K, *shape] (gradients flow back
        to `vec`). The methods below take these stacks and hidden states grouped by client,
        [sides, K, n, d]: one client is K = 1, several clients run in one batched product."""
        return {name: vec[:, sl].view(vec.shape[0], *shape) for name, (sl, shape) in self.layout.items()}

    def adapt(self, p: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """The gated bottleneck adapter: balances the shared backbone's features h and local ones."""
        if "down" not in p:
            return h
        local = F.gelu(h @ p["down"].mT) @ p["up"].mT
        return h + torch.sigmoid(p["gate"]).unsqueeze(-2) * local

    def head_input(self, p: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """What the frozen LM head reads: h + B(A h), i.e. logits = W_lm (I + B A) h."""
        if "head_A" not in p:
            return h
        return h + (h @ p["head_A"].mT) @ p["head_B"].mT

    def reward(self, p: dict[str, torch.Tensor], h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Explicit reward [sides, K, g] from h [sides, K, g, T, d] pooled over the response
        positions `mask` [sides, K, g, T] (a position's hidden state has read every token up to it)."""
        if "reward" not in p:
            return None
        mask = mask.to(h.dtype)
        if self.cfg.reward_pool == "mean":
            pooled = (h * mask.unsqueeze(-1)).sum(-2) / mask.sum(-1, keepdim=True).clamp(min=1)
        else:   # the last response position of each row
            pos = torch.arange(mask.shape[-1], device=mask.device)
            last = (mask * pos).argmax(-1)
            pooled = h.gather(-2, last[..., None, None].expand(*last.shape, 1, h.shape[-1])).squeeze(-2)
        return (pooled @ p["reward"][:, :, None]).squeeze(-1)   # [sides, K, g, d] @ [K, d, 1]
