"""A frozen language model's features of real preference pairs, for the log-linear DPO policy.

The synthetic track's theory (exact θ*, ζ², drift floors) holds for a log-linear policy
π_θ(y|x) ∝ exp(θᵀφ(x, y)). Here φ(x, y) is what a frozen model makes of a real pair: its last
hidden state averaged over the response tokens, scaled to unit norm. A DPO policy on these
features is a linear probe trained with the DPO loss: convex, so its floors and constants are
exact, while the preferences, and the conflict knob that reverses them (llm.conflict), are the
real data's. `conflict_features` gives the chosen and rejected features of every client's pairs
at each knob value; synthetic.problem.problem_from_features turns them into a problem.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from llm.config import LLMConfig
from llm.dpo import body_states, response_window

__all__ = ["conflict_features", "response_features"]


@torch.no_grad()
def response_features(model, tp, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen [n, d], rejected [n, d]) float64: the body's last hidden state averaged over each
    response's tokens, scaled to unit norm, for the n pairs of tokenized pairs tp (llm.data)."""
    body = getattr(model, model.base_model_prefix)
    out = []
    for r0 in range(0, tp.input_ids.shape[0], batch_size):
        rows = slice(r0, r0 + batch_size)
        ids, att, resp, position_ids, _ = response_window(tp.input_ids[rows], tp.attention_mask[rows],
                                                          tp.response_mask[rows])
        h = body_states(body, ids, att, position_ids).double()            # [rows, T, d]
        mask = resp.to(h)[..., None]
        out.append((h * mask).sum(1) / mask.sum(1).clamp_min(1))
    phi = torch.cat(out)
    phi = phi / phi.norm(dim=-1, keepdim=True)
    return phi[:tp.n_pairs], phi[tp.n_pairs:]


def conflict_features(cfg: LLMConfig, conflicts, model=None, tokenizer=None) -> dict[float, dict[str, list]]:
    """{c: {"chosen", "rejected", "eval_chosen", "eval_rejected": one [n_i, d] tensor per client}}
    for each knob value c: the features of cfg's clients' pairs (cfg.conflict ignored), with each
    pair the knob reverses at c swapped. The model (cfg.model, frozen, no adapters) runs once on
    the pairs; every knob value reuses its features.

    Parameters
    ----------
    cfg : LLMConfig
        The data (set, clients, sizes, partition, seed), the model and the lengths.
    conflicts : iterable of float
        Knob values in [0, 1].
    model, tokenizer : optional
        An already loaded model (llm.model.load_model) to use instead of loading cfg.model.

    Returns
    -------
    dict
        Per knob value, the four lists of per-client feature tensors.
    """
    from llm.data import client_data, tokenize_pairs
    from llm.model import load_model, resolve_device

    base_train, base_held = client_data(replace(cfg, conflict=0.0))
    if model is None:
        model, tokenizer = load_model(cfg.model, cfg.dtype, resolve_device(cfg.device))

    def features(pairs):
        return response_features(model, tokenize_pairs(pairs, tokenizer, cfg.max_length, cfg.max_prompt_length),
                                 cfg.eval_batch_size)

    base = {"": [features(p) for p in base_train], "eval_": [features(p) for p in base_held]}
    out = {}
    for c in conflicts:
        train, held = client_data(replace(cfg, conflict=float(c)))
        entry = {}
        for prefix, pairs, pairs0 in (("", train, base_train), ("eval_", held, base_held)):
            chosen, rejected = [], []
            for (phi_c, phi_r), now, then in zip(base[prefix], pairs, pairs0):
                swap = torch.tensor([p.chosen != p0.chosen for p, p0 in zip(now, then)])[:, None]
                chosen.append(torch.where(swap, phi_r, phi_c))
                rejected.append(torch.where(swap, phi_c, phi_r))
            entry[prefix + "chosen"], entry[prefix + "rejected"] = chosen, rejected
        out[float(c)] = entry
    return out
