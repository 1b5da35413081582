"""DPO on sequences: response log-probabilities, the DPO losses and TRL-named metrics.

    log π(y|x) = Σ_{t in response} log p(token_t | tokens_<t)        (sequence_logps)
    logits     = (log π_c − log π_r) − (log ref_c − log ref_r)
    sigmoid:  −log σ(β·logits)      ipo: (logits − 1/(2β))²      hinge: relu(1 − β·logits)
    rewards   = β (log π − log ref), detached

as TRL's DPOTrainer defines them (label smoothing 0). One difference from TRL: its IPO divides the
log-probs by the response length before the loss; here every loss type uses the summed log-probs.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from theory_lab.errors import ConfigError

LOSS_TYPES = ("sigmoid", "ipo", "hinge")
_ACCEPTS_LOGITS_TO_KEEP: dict[type, bool] = {}


def _accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kind = type(base)
    if kind not in _ACCEPTS_LOGITS_TO_KEEP:
        _ACCEPTS_LOGITS_TO_KEEP[kind] = "logits_to_keep" in inspect.signature(base.forward).parameters
    return _ACCEPTS_LOGITS_TO_KEEP[kind]


def sequence_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   response_mask: torch.Tensor) -> torch.Tensor:
    """[rows]: Σ over response tokens of log p(token | prefix). Logits at position t predict token
    t+1; a token counts when response_mask is True at its own (target) position. Padding may be on
    either side (positions follow the attention mask). A response token at position 0 has no
    prefix and is not scored. Log-probs are computed in at least float32."""
    attention_mask = attention_mask.to(torch.long)
    response_mask = response_mask.to(torch.bool) & attention_mask.bool()
    # drop trailing columns that are padding in every row: exact (causal attention)
    used = attention_mask.bool().any(0).nonzero()
    T = max(int(used[-1]) + 1 if len(used) else 0, min(2, input_ids.shape[1]))
    input_ids, attention_mask, response_mask = input_ids[:, :T], attention_mask[:, :T], response_mask[:, :T]
    position_ids = (attention_mask.cumsum(-1) - 1).clamp_(min=0)
    # only positions that predict a response token need logits (the LM head is a large share of the work)
    scored = response_mask[:, 1:].any(0).nonzero()
    start = int(scored[0]) + 1 if len(scored) else T - 1   # first target position
    kwargs = {"use_cache": False}
    keep = T - start + 1                                     # logits at positions start-1 .. T-1
    if _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = keep
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs).logits
    logits = logits[:, -keep:-1]                             # positions start-1 .. T-2
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    targets = input_ids[:, start:]
    token_logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return torch.where(response_mask[:, start:], token_logps, torch.zeros_like(token_logps)).sum(-1)


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
