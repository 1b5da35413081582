"""Client-batched LoRA: the local steps of K simulated clients in one forward/backward.

The oracle's parameter stack X [1, K, P] holds one LoRA vector per client. Sequentially, each
client's vector is loaded into the adapters and its rows run alone: K small forward passes. Here
the K rows become one leaf W [K, P] on the model's device, and each LoRA target layer reads its
stacked adapters as views of W: A [K, r, in] = W[:, a].view(K, r, in), B [K, out, r] likewise.
The batch's rows are grouped by client, [sides, K, g] (sides: the chosen and rejected rows, or the
prompts alone under prefix sharing; g pairs per client), and the layer adds, for the rows of
client k,

    scale · (x A_kᵀ) B_kᵀ

as one batched matrix product over the client axis, exactly as peft adds its single adapter
(input cast to the adapter's dtype, the sum cast back to the base output's dtype). The loss is
Σ_k (client k's mean loss): clients share no parameter, so W.grad[k] is client k's own gradient,
with no per-client flatten or load. Everything else (prefix sharing, the chunked head, the DPO
loss) is llm.dpo's, unchanged: the sequential oracle is the reference it is tested against.

A micro-batch bound (llm.max_rows_per_forward) splits the clients (and, if need be, their pairs)
into forwards of at most that many rows, so any number of clients fits any device. Full rows are
packed without padding client by client (llm.packing): each client's rows fill the same number p
of packed rows, which the layers then read as [1, K, p] (one side).
"""

from __future__ import annotations

import contextlib
import functools

import torch

from llm.config import CLIENT_BATCHING
from llm.dpo import body_and_head, dpo_loss, pack_window

__all__ = ["CLIENT_BATCHING", "batched_losses", "client_rows", "run_batched", "stack_layout_error", "stacked_adapters"]


def stack_layout_error(lora, dim: int) -> str | None:
    """Why a model's trainable vector cannot be read as stacked adapters, or None: every
    trainable parameter must be the A or B of a LoRA module (llm.model.lora_modules)."""
    covered = sum(f.a.stop - f.a.start + f.b.stop - f.b.start for _, _, f in lora)
    if not lora or covered != dim:
        return f"{dim - covered} of {dim} trainable parameters are not LoRA A/B factors"
    return None


def _add_stacked(module, args, out, A, B, scale, group):
    """Forward hook of a LoRA layer whose own adapter is disabled: out + scale·(x A_kᵀ) B_kᵀ."""
    x = args[0]
    K = A.shape[0]
    xs = x.to(A.dtype).reshape(-1, K, group * x.shape[-2], x.shape[-1])   # [sides, K, g·T, in]
    delta = ((xs @ A.mT) @ B.mT) * scale                                   # [sides, K, g·T, out]
    return (out + delta.reshape(out.shape)).to(out.dtype)


@contextlib.contextmanager
def stacked_adapters(model, lora, W: torch.Tensor, group: int):
    """Inside: the model's LoRA layers apply client k's adapter (row W[k]) to the rows of client
    k, for a batch laid out [sides, K, group] along its first axis."""
    hooks = []
    try:
        for _, module, f in lora:
            A = W[:, f.a].view(W.shape[0], *f.a_shape)
            B = W[:, f.b].view(W.shape[0], *f.b_shape)
            hooks.append(module.register_forward_hook(
                functools.partial(_add_stacked, A=A, B=B, scale=f.scale, group=group)))
        with model.disable_adapter():
            yield
    finally:
        for h in hooks:
            h.remove()


def client_rows(sets, idx: list[torch.Tensor]):
    """input_ids, attention_mask, response_mask [2·K·g, T] of pairs idx[k] of client set sets[k]
    (g = len(idx[k]), the same for all), laid out [chosen rows of clients 0..K-1, then their
    rejected rows]: what llm.dpo's log-probs take (pair j's rows j and K·g + j), grouped by client
    within each side. Sets of different widths are right-padded (masked: exact under causal
    attention)."""
    T = max(tp.input_ids.shape[1] for tp in sets)
    parts = []
    for side in (0, 1):
        for tp, i in zip(sets, idx):
            rows = i.to(tp.input_ids.device) + side * tp.n_pairs
            pad = T - tp.input_ids.shape[1]
            parts.append([torch.nn.functional.pad(t[rows], (0, pad)) for t in
                          (tp.input_ids, tp.attention_mask, tp.response_mask)])
    return [torch.cat(col) for col in zip(*parts)]


def plan(n_clients: int, n_pairs: int, max_rows: int) -> tuple[int, int]:
    """(clients, pairs) per forward: 2·clients·pairs <= max_rows, as many clients as fit."""
    pairs = min(n_pairs, max(1, max_rows // 2))
    return max(1, min(n_clients, max_rows // (2 * pairs))), pairs


def run_batched(oracle, W: torch.Tensor, ids: list[int], idx: list[torch.Tensor], backward: bool,
                losses_of, pack: bool = False) -> torch.Tensor:
    """[K] float64: each client's mean loss over its pairs idx[k] at its own adapter row W[k] (on
    the model's device); with backward, W's leaf gets each mean's gradient in its row k. Clients
    and pairs go through the model in forwards of at most oracle.max_rows_per_forward rows;
    losses_of(ks, rows, ref, plan) gives the per-pair losses [clients ks x g pairs] of those rows
    (client_rows) with their reference log-probs ref [K'·g, 2], under the stacked adapters. With
    `pack`, plan packs each client's rows apart into the same number p of rows each (llm.packing;
    the adapters then read [K', p] rows; oracle.static_width fixes the shapes), else it is None."""
    K, n = len(ids), len(idx[0])
    per_fwd, pairs = plan(K, n, oracle.max_rows_per_forward)
    total = torch.zeros(K, dtype=torch.float64)
    with torch.set_grad_enabled(backward):
        for k0 in range(0, K, per_fwd):
            ks = slice(k0, min(K, k0 + per_fwd))
            for j0 in range(0, n, pairs):
                chunk = [i[j0:j0 + pairs] for i in idx[ks]]
                rows = client_rows([oracle.train[c] for c in ids[ks]], chunk)
                ref = torch.cat([oracle.ref_train[c][i.to(oracle.ref_train[c].device)] for c, i in zip(ids[ks], chunk)])
                g = len(chunk[0])
                # rows are [sides, K', g]: row i belongs to client (i // g) % K'
                clients = [(i // g) % len(chunk) for i in range(rows[0].shape[0])]
                packed = pack_window(*rows, width=oracle.static_width, groups=clients) if pack else None
                group = packed.rows_per_group if packed else g
                # the backward inside: under gradient checkpointing it replays the stacked forward
                with stacked_adapters(oracle.model, oracle._lora, W[ks], group):
                    per_client = losses_of(ks, rows, ref, packed).view(len(chunk), -1).sum(1) / n
                    if backward:
                        per_client.sum().backward()
                total[ks] += per_client.detach().double().cpu()
    return total


def batched_losses(oracle, W: torch.Tensor, ids: list[int], idx: list[torch.Tensor], backward: bool) -> torch.Tensor:
    """run_batched with the plain DPO loss (LLMOracle), full rows packed where the oracle packs."""
    def losses_of(ks, rows, ref, plan):
        c, r = oracle._pair_logps(*rows, packed=plan if plan is not None else False)
        return dpo_loss(c, r, ref[:, 0], ref[:, 1], oracle.beta, oracle.loss_type)[0]

    pack = oracle.packing and not oracle.prefix_sharing and body_and_head(oracle.model) is not None
    return run_batched(oracle, W, ids, idx, backward, losses_of, pack)
