"""DPO on sequences: response log-probabilities, the DPO losses and TRL-named metrics.

    log π(y|x) = Σ_{t in response} log p(token_t | tokens_<t)        (sequence_logps; for pairs
                 sharing a prompt, shared_prompt_logps runs the prompt once for both responses)
    logits     = (log π_c − log π_r) − (log ref_c − log ref_r)
    sigmoid:  −log σ(β·logits)      ipo: (logits − 1/(2β))²      hinge: relu(1 − β·logits)
    rewards   = β (log π − log ref), detached

as TRL's DPOTrainer defines them (label smoothing 0). One difference from TRL: its IPO divides the
log-probs by the response length before the loss; here every loss type uses the summed log-probs.

Memory: for models whose logits are exactly lm_head(final hidden state) (PLAIN_HEAD) with a frozen
head, the LM head and log-softmax run only at scored response positions, in chunks of at most
HEAD_CHUNK_BYTES of float32 logits, and the backward keeps only d log p / d h per scored token
([tokens, hidden], not [tokens, vocab]): `head_logps`. Other models take the logits path.
"""

from __future__ import annotations

import inspect
import logging

import torch
import torch.nn.functional as F

from llm.config import LOSS_TYPES
from llm.packing import Packed, pack_rows, unpack
from theory_lab.errors import ConfigError

_ACCEPTS: dict[tuple[type, str], bool] = {}
# transformers 5.24 renamed forward's `past_key_values` (and the output field) to `cache`
CACHE_ARGS = ("cache", "past_key_values")
log = logging.getLogger(__name__)
_SAID: set[tuple[type, str]] = set()


def _accepts(model, arg: str) -> bool:
    """Whether the (base) model's forward takes keyword `arg`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    key = (type(base), arg)
    if key not in _ACCEPTS:
        _ACCEPTS[key] = arg in inspect.signature(base.forward).parameters
    return _ACCEPTS[key]


def _cache_arg(model) -> str | None:
    """The name under which the model's forward takes (and its output returns) a KV cache, or None."""
    return next((name for name in CACHE_ARGS if _accepts(model, name)), None)


def _say_once(model, why: str) -> None:
    """Log once per model class and reason that prefix sharing falls back to full rows (same values,
    slower on the CPU): a fast path never disappears silently."""
    key = (type(model.get_base_model() if hasattr(model, "get_base_model") else model), why)
    if key not in _SAID:
        _SAID.add(key)
        log.warning("prefix sharing unavailable for %s (%s): log-probs run on full rows", key[0].__name__, why)


# architectures whose causal-LM logits are exactly lm_head(body(...).last_hidden_state): no logit
# scaling or soft-capping after the head (Gemma's soft-capping, Cohere's logit_scale would differ)
PLAIN_HEAD = ("llama", "mistral", "qwen2", "qwen3")
# float32 logits held at once by head_logps: [chunk tokens, vocab] (and its softmax) per chunk
HEAD_CHUNK_BYTES = 64 * 2**20


def body_and_head(model):
    """(body, head) when the model's logits are head(body(...).last_hidden_state) with a frozen
    nn.Linear head (a PLAIN_HEAD architecture, the head not a LoRA target); else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(getattr(base, "config", None), "model_type", None) not in PLAIN_HEAD:
        return None
    head = base.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.weight.requires_grad:
        return None
    return getattr(base, base.base_model_prefix), head


class _HeadLogps(torch.autograd.Function):
    """log softmax(h W^T + bias)[target] per token, chunk by chunk. The forward also computes
    d logp/dh = W[target] − softmax·W ([tokens, hidden]) when h needs a gradient, so that no
    [tokens, vocab] tensor outlives its chunk; the backward scales it by the incoming gradient.
    The head's weight and bias are frozen (body_and_head checks): no gradient for them."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk):
        out_dtype = torch.promote_types(h.dtype, torch.float32)
        out = torch.empty(h.shape[0], dtype=out_dtype, device=h.device)
        dh = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        for s in range(0, h.shape[0], chunk):
            logits = F.linear(h[s:s + chunk], weight, bias).to(out_dtype)   # as the logits path: head in h's dtype
            lse = logits.logsumexp(-1, keepdim=True)
            t = targets[s:s + chunk, None]
            out[s:s + chunk] = (logits.gather(-1, t) - lse).squeeze(-1)
            if dh is not None:
                p = logits.sub_(lse).exp_()                                   # softmax, in place of the logits
                p.scatter_add_(-1, t, torch.full_like(t, -1, dtype=p.dtype))  # softmax − onehot(target)
                dh[s:s + chunk] = -(p.to(weight.dtype) @ weight)
        ctx.save_for_backward(dh)
        return out

    @staticmethod
    def backward(ctx, grad):
        (dh,) = ctx.saved_tensors
        return (grad[:, None] * dh).to(dh.dtype), None, None, None, None


def head_logps(head, h: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[rows]: Σ over positions where mask is True of log softmax(head(h))[target], in >= float32,
    for h [rows, T, d] (position t's state scores targets[:, t]). The head runs only at masked
    positions (see _HeadLogps); a trainable head takes the logits path (masked_logps)."""
    if head.weight.requires_grad or (head.bias is not None and head.bias.requires_grad):
        return masked_logps(head(h), targets, mask)
    rows, cols = mask.nonzero(as_tuple=True)
    chunk = max(1, HEAD_CHUNK_BYTES // (4 * head.weight.shape[0]))
    tok = _HeadLogps.apply(h[rows, cols], head.weight, head.bias, targets[rows, cols], chunk)
    return torch.zeros(h.shape[0], dtype=tok.dtype, device=tok.device).index_add_(0, rows, tok)


def masked_logps(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[rows]: Σ over positions where mask is True of log softmax(logits)[target], in >= float32."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    token_logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return torch.where(mask, token_logps, torch.zeros_like(token_logps)).sum(-1)


def response_window(input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor):
    """(input_ids, attention_mask, response_mask, position_ids, start) of rows trimmed for scoring:
    trailing columns that are padding in every row dropped (exact: causal attention), positions
    following the attention mask (padding on either side), and `start` the first position whose
    token is a scored response token (only positions start-1 .. T-1 need the LM head). The one
    trimming rule of both DPO (sequence_logps) and FedPDPO's personalised head."""
    attention_mask = attention_mask.to(torch.long)
    response_mask = response_mask.to(torch.bool) & attention_mask.bool()
    used = attention_mask.bool().any(0).nonzero()
    T = max(int(used[-1]) + 1 if len(used) else 0, min(2, input_ids.shape[1]))
    input_ids, attention_mask, response_mask = input_ids[:, :T], attention_mask[:, :T], response_mask[:, :T]
    position_ids = (attention_mask.cumsum(-1) - 1).clamp_(min=0)
    scored = response_mask[:, 1:].any(0).nonzero()
    start = int(scored[0]) + 1 if len(scored) else T - 1   # first target position
    return input_ids, attention_mask, response_mask, position_ids, start


def pack_window(input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor,
                width: int | None = None, groups: list[int] | None = None) -> Packed:
    """The packing plan (llm.packing.pack_rows) of the rows as response_window trims them: what
    body_states runs when handed a plan. `width` fixes the shapes (static shapes), `groups` packs
    each group's rows apart (client batching)."""
    ids, att, *_ = response_window(input_ids, attention_mask, response_mask)
    return pack_rows(ids, att, groups=groups, width=width)


def body_states(body, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                packed: bool | Packed = False) -> torch.Tensor:
    """[rows, T, d]: the body's last hidden states of rows trimmed by response_window. With
    `packed`, the body runs on the rows packed without padding (llm.packing; the same values at
    real tokens, zeros at padding); a Packed plan of these rows is used as given (llm.batched's)."""
    if not packed:
        return body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=False).last_hidden_state
    p = packed if isinstance(packed, Packed) else pack_rows(input_ids, attention_mask)
    return unpack(body(input_ids=p.input_ids, position_ids=p.position_ids, use_cache=False).last_hidden_state, p)


def sequence_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   response_mask: torch.Tensor, packed: bool | Packed = False) -> torch.Tensor:
    """[rows]: Σ over response tokens of log p(token | prefix). Logits at position t predict token
    t+1; a token counts when response_mask is True at its own (target) position. Padding may be on
    either side (positions follow the attention mask). A response token at position 0 has no
    prefix and is not scored. Log-probs are computed in at least float32. `packed`: the body runs
    on the rows packed without padding (llm.packing; same values), where the head is plain; a
    Packed plan of the trimmed rows (response_window) is used as given (llm.batched's)."""
    input_ids, attention_mask, response_mask, position_ids, start = response_window(
        input_ids, attention_mask, response_mask)
    T = input_ids.shape[1]
    split = body_and_head(model)
    if split is not None:
        body, head = split
        h = body_states(body, input_ids, attention_mask, position_ids, packed)
        return head_logps(head, h[:, start - 1:-1], input_ids[:, start:], response_mask[:, start:])
    kwargs = {"use_cache": False}
    keep = T - start + 1                                     # logits at positions start-1 .. T-1
    if _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = keep
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs).logits
    logits = logits[:, -keep:-1]                             # positions start-1 .. T-2
    return masked_logps(logits, input_ids[:, start:], response_mask[:, start:])


def shared_prompt_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected log-probs [b] each of 2b rows (the b chosen rows, then the b rejected
    rows of the same pairs): sequence_logps of those rows, with each pair's prompt run once
    (prefix sharing; a pair then costs p + r_c + r_r body tokens instead of 2p + r_c + r_r).

    1. The b prompts (the first P columns of the chosen rows, masked past each prompt's own
       length p) run with use_cache=True; only the logits at each prompt's last position are
       kept: they score the first response token of both sides.
    2. The KV cache is repeated for the two sides (an indexing op: gradients flow back through it
       into the prompt's LoRA parameters, summed over both sides).
    3. The 2b responses run on that cache, at positions p .. p+r-1; the attention mask is the
       prompt's mask (its padding columns masked) followed by the response's. A response's last
       token predicts nothing, so the last response column is not fed.

    Needs rows laid out as llm.data.tokenize_pairs makes them: [prompt (>= 1 token), response,
    right padding], chosen and rejected prompts the same token ids, and a model taking
    KV cache (`cache` since transformers 5.24, `past_key_values` before). Anything else falls back to
    sequence_logps on the full rows (same values); a model without a cache argument, or whose cache
    cannot be indexed, is logged once."""
    rows, T = input_ids.shape
    b, dev = rows // 2, input_ids.device

    def fallback():
        logps = sequence_logps(model, input_ids, attention_mask, response_mask)
        return logps[:b], logps[b:]

    cache_arg = _cache_arg(model)
    if cache_arg is None:
        _say_once(model, f"its forward takes none of {', '.join(CACHE_ARGS)}")
        return fallback()
    if rows == 0 or rows % 2:
        return fallback()
    att = attention_mask.bool()
    resp = response_mask.to(torch.bool) & att
    length, p = att.sum(1), (att & ~resp).sum(1)            # row and prompt lengths [2b]
    col = torch.arange(T, device=dev)
    layout = (att == (col < length[:, None])) & (resp == (att & (col >= p[:, None])))
    same_prompt = (input_ids[:b] == input_ids[b:]) | (col >= p[:b, None])
    ok = layout.all() & same_prompt.all() & (p[:b] == p[b:]).all() & (p >= 1).all()
    ok, P, p_min, R = torch.stack([ok.long(), p.max(), p.min(), (length - p).max()]).tolist()   # one sync
    if not ok or R < 1:
        return fallback()
    # 1. prompts; only each row's last prompt position p-1 is scored (the first response token).
    # With a plain head (body_and_head) the body runs alone and the head runs once, at the end,
    # over the scored positions only; else the logits at positions p_min-1 .. P-1 are kept.
    split = body_and_head(model)
    forward = model if split is None else split[0]
    keep = P - p_min + 1
    kwargs = {"logits_to_keep": keep} if split is None and _accepts(model, "logits_to_keep") else {}
    prompt_mask = (col[:P] < p[:b, None]).long()   # columns p .. P-1 of a chosen row may hold its response: masked
    out = forward(input_ids=input_ids[:b, :P], attention_mask=prompt_mask,
                  position_ids=col[:P].expand(b, -1), use_cache=True, **kwargs)
    cache = getattr(out, cache_arg, None)
    if not hasattr(cache, "batch_select_indices"):
        _say_once(model, f"its cache ({type(cache).__name__}) has no batch_select_indices")
        return fallback()
    states = out.last_hidden_state if split is not None else out.logits[:, -keep:]   # positions P - width .. P-1
    last = (p[:b] - 1 - (P - states.shape[1])).view(b, 1, 1)
    first = states.gather(1, last.expand(-1, -1, states.shape[-1]))   # [b, 1, hidden or vocab]
    # response tokens, left-aligned [2b, R]: column j is row position p + j
    j = torch.arange(R, device=dev)
    resp_ids = input_ids.gather(1, (p[:, None] + j).clamp_(max=T - 1))
    resp_mask = j < (length - p)[:, None]
    first = first.repeat(2, 1, 1)
    if R > 1:
        # 2. one copy of each prompt's cache per side, in row order (chosen rows, then rejected)
        cache.batch_select_indices(torch.arange(b, device=dev).repeat(2))
        # 3. responses; the mask's prompt columns keep the prompt padding masked
        mask = torch.cat([prompt_mask.repeat(2, 1), resp_mask[:, :R - 1].long()], 1)
        out = forward(input_ids=resp_ids[:, :R - 1], attention_mask=mask, position_ids=p[:, None] + j[:R - 1],
                      use_cache=True, **{cache_arg: cache})                           # predict columns 1 .. R-1
        rest = out.last_hidden_state if split is not None else out.logits
    if split is not None:   # one head pass: column 0 from the prompt's last state, 1 .. R-1 from the responses
        h = torch.cat([first, rest], 1) if R > 1 else first
        logps = head_logps(split[1], h, resp_ids[:, :h.shape[1]], resp_mask[:, :h.shape[1]])
    else:
        logps = masked_logps(first, resp_ids[:, :1], resp_mask[:, :1])
        if R > 1:
            logps = logps + masked_logps(rest, resp_ids[:, 1:], resp_mask[:, 1:])
    return logps[:b], logps[b:]


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float, loss_type: str = "sigmoid") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(losses [n], chosen_rewards [n], rejected_rewards [n]) as TRL's DPOTrainer defines them."""
    ref_chosen_logps = ref_chosen_logps.to(policy_chosen_logps)
    ref_rejected_logps = ref_rejected_logps.to(policy_rejected_logps)
    logits = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits)
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:
        raise ConfigError("llm.loss_type", f"must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def preference_accuracy(margins: torch.Tensor) -> torch.Tensor:
    """Fraction of pairs with margin > 0, as a float64 scalar; NaN when every margin is exactly 0
    (the reference model itself, e.g. at round 0: its implicit-reward accuracy measures nothing,
    and a 0 would plot as a drop to zero)."""
    margins = margins.double()
    return (margins > 0).double().mean() if bool(margins.ne(0).any()) else margins.new_tensor(float("nan"))


def dpo_metrics(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
                beta: float, loss_type: str = "sigmoid") -> dict[str, float]:
    """Batch means under TRL's names: rewards/{chosen,rejected,accuracies,margins},
    logps/{chosen,rejected} and loss."""
    losses, chosen, rejected = dpo_loss(policy_chosen_logps, policy_rejected_logps,
                                        ref_chosen_logps, ref_rejected_logps, beta, loss_type)
    return {
        "rewards/chosen": chosen.mean().item(),
        "rewards/rejected": rejected.mean().item(),
        "rewards/accuracies": (chosen > rejected).float().mean().item(),
        "rewards/margins": (chosen - rejected).mean().item(),
        "logps/chosen": policy_chosen_logps.detach().mean().item(),
        "logps/rejected": policy_rejected_logps.detach().mean().item(),
        "loss": losses.detach().mean().item(),
    }
