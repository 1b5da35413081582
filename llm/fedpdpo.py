"""FedPDPO (Zhu et al., arXiv:2603.19741) as an oracle: the algorithms of theory_lab run unchanged.

What the algorithms see, average and communicate is the parameter stack X [1, N, P] with
P = the number of LoRA parameters: the shared adapter, exactly as for the plain `LLMOracle`. The
personal parameters (gated bottleneck adapter, low-rank personal LM head, explicit reward head;
`llm.personal`) live inside this oracle as one tensor [N, D] and are trained by the oracle itself:
each time an algorithm asks for client i's gradient, the oracle differentiates client i's
personalised objective with respect to both the shared and the personal parameters, returns the
shared part (the algorithm's optimizer uses it as usual) and takes one AdamW step on client i's
personal part. So the personal parameters advance exactly once per local step of that client,
are never averaged, never sent, and never enter `comm_bytes`.

Client i's personalised objective, on a pair (x, y_w, y_l), with the policy π_i = the backbone
with the shared LoRA and client i's bottleneck and head:

    implicit margin  m = β[(log π_i(y_w|x) − log π_i(y_l|x)) − (log π_ref(y_w|x) − log π_ref(y_l|x))]
    explicit margin  e = r_i(x, y_w) − r_i(x, y_l)
    loss             ℓ_DPO(m + λ e) + γ · (−log σ(e))

where ℓ_DPO is llm.loss_type's loss of the margin (sigmoid: −log σ). Prediction: y_w ≻ y_l when
m + λ e > 0 (`eval_pref_acc`); the implicit reward alone (m > 0) is reported too
(`eval_pref_acc_implicit`) as the policy's own accuracy. The reference is the backbone with every
adapter (shared and personal) off, cached once per client.

Local-only training (`llm.personal.share_lora = false`): the LoRA becomes a personal block of each
client, the stack is empty (P = 0), so any federated algorithm just schedules local steps and
communicates 0 bytes.
"""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.nn.functional as F

from llm.batched import run_batched
from llm.dpo import body_states, dpo_loss, head_logps, preference_accuracy, response_window
from llm.model import set_trainable_vector
from llm.oracle import LLMOracle, _rows
from llm.personal import PersonalConfig, PersonalModules
from theory_lab.algorithms.params import ClientOptimizer
from theory_lab.optim import Optimizer


class FedPDPOOracle(LLMOracle):
    """LLMOracle whose clients also hold personal modules (see the module docstring)."""

    def __init__(self, model, train: list, heldout: list, beta: float, personal: PersonalConfig | None = None,
                 loss_type: str = "sigmoid", eval_batch_size: int = 16, device=None, seed: int = 0, **execution):
        """`execution`: LLMOracle's keyword arguments on how forwards run (client_batching, ...)."""
        super().__init__(model, train, heldout, beta, loss_type, eval_batch_size, device, **execution)
        self.cfg = personal if personal is not None else PersonalConfig(enabled=True)
        self.cfg.validate()
        base = model.get_base_model()
        self.body = getattr(base, base.base_model_prefix)     # the transformer without its LM head
        self.head = base.get_output_embeddings()
        # the dtype the personal modules compute in: the backbone's (its final hidden state's), not
        # the LoRA parameters' (peft keeps adapters in float32 over a bf16/fp16 backbone)
        self.compute_dtype = self.head.weight.dtype
        self.lora_dim = self.dim
        self.modules = PersonalModules(self.cfg, self.head.weight.shape[1], self.lora_dim)
        gen = torch.Generator().manual_seed(seed)
        # personal vectors and their AdamW state in at least float32 (a bf16 model's blocks are cast on use)
        self.personal_dtype = torch.promote_types(self.dtype, torch.float32)
        row = self.modules.init(gen, self.personal_dtype, self._theta0)    # every client starts alike
        self.personal = row.to(self.device).unsqueeze(0).repeat(self.n_clients, 1)   # [N, D]
        # each client's own AdamW state, never communicated: the clients' optimizer of theory_lab.optim
        self.opt = Optimizer(ClientOptimizer(optimizer="adamw", weight_decay=self.cfg.weight_decay), 1,
                             self.n_clients, self.modules.dim, self.personal_dtype, self.device)
        if not self.cfg.share_lora:
            self.dim = 0
            self.factor_layout = []   # nothing shared, nothing factorised to aggregate
        self._check_forward()

    # ------------------------------------------------------------------ forward passes

    def _check_forward(self) -> None:
        """At the start every personal module is the identity and B = 0: our forward (backbone,
        modules, LM head) must give the cached reference log-probs. A model whose head is not a
        plain projection of the final hidden state (logit scaling, soft-capping) fails here."""
        idx = torch.arange(min(2, self.train[0].n_pairs))
        with torch.no_grad():
            self._load_client(self.init_params()[0], 0)
            c, r, _ = self._forward(self.train[0], idx, self._blocks(0))
        ref = self.ref_train[0][idx]
        got = torch.stack([c, r], dim=1).to(ref)
        if not torch.allclose(got, ref, rtol=1e-3, atol=1e-3 * max(1.0, float(ref.abs().max()))):
            raise ValueError(f"{type(self.head).__name__}: the personal modules need an LM head that reads the final "
                             f"hidden state directly; this model's logits differ from its own forward")

    def _blocks(self, clients, requires_grad: bool = False):
        """(leaf [K, D] of the personal vectors of `clients` (an int: K = 1), its blocks [K, ...]
        in the backbone's dtype)."""
        clients = [clients] if isinstance(clients, int) else list(clients)
        vec = self.personal[clients].detach().clone().requires_grad_(requires_grad)
        return vec, {k: v.to(self.compute_dtype) for k, v in self.modules.split(vec).items()}

    def _forward(self, tp, idx: torch.Tensor, blocks) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """One client's (blocks of K = 1) pairs idx: _forward_rows of its rows."""
        return self._forward_rows(*_rows(tp, idx), blocks[1])

    def _forward_rows(self, input_ids, attention_mask, response_mask, p, K: int = 1,
                      packed=None) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Chosen and rejected log-probs [K·g] under the personalised policies, and the explicit
        rewards (chosen [K·g], rejected [K·g]) or None, of rows laid out [chosen, rejected] x
        [K clients] x [g pairs] (llm.batched.client_rows; one client: tp's own rows), client k
        with its personal blocks p[...][k]; one forward for both responses. The trimming,
        positions, packing (self._packing's, or llm.batched's plan `packed`) and sums are llm.dpo's
        (response_window, body_states, head_logps), as in sequence_logps; only the head differs
        (the personal modules sit between the body and the LM head)."""
        if packed is None:
            packed = self._packing(input_ids, attention_mask, response_mask)
        ids, att, resp, position_ids, start = response_window(input_ids, attention_mask, response_mask)
        h = body_states(self.body, ids, att, position_ids, packed)[:, start - 1:]   # positions start-1 .. T-1
        rows, T, d = h.shape
        h = self.modules.adapt(p, h.reshape(2, K, -1, d))                   # [sides, K, g·T, d]
        reward = self.modules.reward(p, h.view(2, K, -1, T, d), resp[:, start - 1:].reshape(2, K, -1, T))
        # predict tokens start .. T-1; the head runs at response positions only (llm.dpo.head_logps)
        h = self.modules.head_input(p, h).reshape(rows, T, d)[:, :-1]
        logps = head_logps(self.head, h, ids[:, start:], resp[:, start:])
        n = rows // 2
        rewards = None if reward is None else (reward[0].reshape(n).to(logps), reward[1].reshape(n).to(logps))
        return logps[:n], logps[n:], rewards

    def _pair_terms(self, tp, ref: torch.Tensor, idx: torch.Tensor, blocks):
        """(losses [b], implicit margins [b], explicit margins [b] or None) of pairs idx."""
        return self._terms(*self._forward(tp, idx, blocks), ref[idx.to(ref.device)])

    def _terms(self, c, r, rewards, ref):
        """(losses, implicit margins, explicit margins or None) from log-probs, rewards and the
        reference log-probs ref [n, 2] of the same pairs."""
        if rewards is None:
            losses = dpo_loss(c, r, ref[:, 0], ref[:, 1], self.beta, self.loss_type)[0]
            explicit = None
        else:
            # ℓ(m + λe) via log-scores s = log π + (λ/β) r: β[(s_w − s_l) − ref] = m + λe, any loss type
            k = self.cfg.reward_weight / self.beta
            losses = dpo_loss(c + k * rewards[0], r + k * rewards[1], ref[:, 0], ref[:, 1], self.beta, self.loss_type)[0]
            explicit = rewards[0] - rewards[1]
            if self.cfg.bt_weight:
                losses = losses + self.cfg.bt_weight * -F.logsigmoid(explicit)
        implicit = self.beta * ((c - r) - (ref[:, 0] - ref[:, 1]).to(c))
        return losses, implicit, explicit

    def _load_client(self, theta: torch.Tensor, client: int) -> None:
        """The shared adapter θ [P] (or, local-only, the client's own LoRA) into the model."""
        self.model.train(False)
        self._use_client_delta(client)
        if self.cfg.share_lora:
            set_trainable_vector(self.model, theta)
        else:
            set_trainable_vector(self.model, self.personal[client, self.modules.layout["lora"][0]])

    def _client_pass(self, client: int, theta: torch.Tensor, idx: torch.Tensor, scale: float,
                     personal_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Backpropagate scale · the client's mean personalised loss over pairs idx (in eval-size
        chunks) into the LoRA parameters' .grad (accumulating); returns (loss, the gradient of the
        personal vector or None)."""
        self._load_client(theta, client)
        tp, ref = self.train[client], self.ref_train[client]
        vec, p = self._blocks(client, requires_grad=personal_grad)
        blocks = (vec, p)
        total = torch.zeros((), dtype=torch.float64)
        with torch.enable_grad():
            for chunk in self._chunks(idx):
                loss = self._pair_terms(tp, ref, chunk, blocks)[0].sum() / len(idx)
                (scale * loss).backward()
                total += loss.detach().double().cpu()
        if not personal_grad:
            return total, None
        g = (vec.grad if vec.grad is not None else torch.zeros_like(vec))[0]
        if not self.cfg.share_lora:
            g = g.clone()
            g[self.modules.layout["lora"][0]] = self._flat_grad().to(g)
        return total, g

    # ------------------------------------------------------------------ the Oracle protocol

    def init_params(self) -> torch.Tensor:
        """The shared LoRA initialisation [1, P] (local-only: [1, 0])."""
        if not self.cfg.share_lora:
            return torch.zeros(1, 0, dtype=self.dtype)
        return super().init_params()

    def grad(self, X: torch.Tensor, clients: torch.Tensor | None, batch: Any) -> torch.Tensor:
        """[1, K, P]: each row's gradient of its client's personalised loss with respect to the
        shared adapter, at the current personal parameters. Pure: nothing changes."""
        return self._shared_grads(X, clients, batch, step_personal=False)

    def local_step(self, X: torch.Tensor, clients: torch.Tensor | None, batch: Any) -> torch.Tensor:
        """grad(X, clients, batch), and each client asked for takes its personal AdamW step on the
        same minibatch (one forward/backward for both): what a client's training step does."""
        return self._shared_grads(X, clients, batch, step_personal=self.modules.dim > 0)

    def _batched_pass(self, X, ids: list[int], idx: list[torch.Tensor], backward: bool, personal_grad: bool):
        """All clients `ids` at once (llm/batched.py): (per-client mean losses [K], the stacked
        shared adapter leaf W [K, P] or None local-only, the personal leaf [K, D]). Client k
        trains on its own LoRA row (X[0, k], or local-only its personal LoRA block) and blocks."""
        backward = backward and (self.cfg.share_lora or personal_grad)   # local-only grad: nothing to differentiate
        vec, p = self._blocks(ids, requires_grad=personal_grad)
        W = self._stack(X, backward) if self.cfg.share_lora else None
        lora = W if W is not None else vec[:, self.modules.layout["lora"][0]].to(self.dtype)

        def losses_of(ks, rows, ref, plan):
            blocks = {k: v[ks] for k, v in p.items()}
            packed = plan if plan is not None else False
            return self._terms(*self._forward_rows(*rows, blocks, ks.stop - ks.start, packed), ref)[0]

        total = run_batched(self, lora, ids, idx, backward, losses_of, pack=self.packing)
        return total, W, vec

    def _step_personal(self, ids: list[int], grads: torch.Tensor) -> None:
        """One AdamW step on the personal rows of clients `ids` (distinct) with grads [K, D]."""
        rows = torch.as_tensor(ids, device=self.device)
        self.personal[rows] = self.opt.step(self.personal[rows][None], grads[None].to(self.personal), self.cfg.lr,
                                            rows[None])[0]

    def _shared_grads(self, X, clients, batch, step_personal: bool) -> torch.Tensor:
        ids = self._client_ids(X, clients)
        idx = self._batch_plan(ids, batch)
        if idx is not None:
            _, W, vec = self._batched_pass(X, ids, idx, True, step_personal)
            if step_personal:
                with torch.no_grad():
                    self._step_personal(ids, vec.grad)
            return W.grad.to(X).unsqueeze(0) if W is not None else torch.empty(X.shape, dtype=X.dtype, device=X.device)
        out = torch.empty(X.shape, dtype=X.dtype, device=X.device)
        for k, c in enumerate(ids):
            self._zero_grad()
            _, g_personal = self._client_pass(c, X[0, k], self._client_indices(c, batch), 1.0,
                                              personal_grad=step_personal)
            if self.cfg.share_lora:
                out[0, k] = self._flat_grad().to(out)
            if g_personal is not None:
                with torch.no_grad():
                    self._step_personal([c], g_personal.unsqueeze(0))
        self._zero_grad()
        return out

    # loss (LLMOracle.loss): each row's personalised client loss at the current personal parameters
    def _batched_loss(self, X: torch.Tensor, ids: list[int], idx: list[torch.Tensor]) -> torch.Tensor:
        return self._batched_pass(X, ids, idx, False, False)[0]

    def _client_loss(self, row: torch.Tensor, client: int):
        self._load_client(row, client)
        blocks = self._blocks(client)
        return lambda chunk: self._pair_terms(self.train[client], self.ref_train[client], chunk, blocks)[0]

    def bt_loss(self, theta: torch.Tensor, client: int, heldout: bool = False) -> float:
        """Mean Bradley–Terry loss −log σ(e) of the client's explicit reward on its train (or
        held-out) pairs at the shared adapter θ [1, P]; NaN without a reward head."""
        if "reward" not in self.modules.layout:
            return float("nan")
        margins = self._client_margins(theta[0], client, heldout)[1]
        return float(-F.logsigmoid(margins).mean())

    @torch.no_grad()
    def _client_margins(self, theta: torch.Tensor, client: int, heldout: bool = True):
        """(implicit [n], explicit [n] or None) margins over all of a client's held-out (or train) pairs."""
        self._load_client(theta, client)
        tp = self.heldout[client] if heldout else self.train[client]
        ref = self.ref_heldout[client] if heldout else self.ref_train[client]
        blocks = self._blocks(client)
        parts = [self._pair_terms(tp, ref, ch, blocks)[1:] for ch in self._chunks(torch.arange(tp.n_pairs))]
        implicit = torch.cat([m for m, _ in parts]).double().cpu()
        explicit = None if parts[0][1] is None else torch.cat([e for _, e in parts]).double().cpu()
        return implicit, explicit

    def _combined(self, implicit, explicit):
        return implicit if explicit is None else implicit + self.cfg.reward_weight * explicit

    def client_accuracy(self, theta: torch.Tensor) -> torch.Tensor:
        """[N]: each client's held-out accuracy with its OWN personal modules and the shared θ [1, P]."""
        return torch.stack([(self._combined(*self._client_margins(theta[0], i)) > 0).double().mean()
                            for i in range(self.n_clients)]).to(theta)

    def personal_accuracy(self, X: torch.Tensor) -> torch.Tensor:
        """[1, N]: held-out accuracy of client i at its own row X[0, i] and its personal modules."""
        return torch.stack([(self._combined(*self._client_margins(X[0, i], i)) > 0).double().mean().cpu()
                            for i in range(self.n_clients)]).unsqueeze(0)

    def evaluate(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Metrics [1] at the shared adapter θ [1, P], each client with its own personal modules:
        `eval_pref_acc` (personalised prediction m + λe > 0, client-weighted) and per client,
        `eval_pref_acc_implicit` (m > 0), `eval_pref_acc_explicit` (e > 0, with a reward head),
        `reward_margin` (mean m + λe), and `train_loss`, `grad_norm_sq` of Σ_i w_i f_i with respect
        to the shared adapter on the fixed evaluation batch (NaN local-only: nothing is shared)."""
        w = self.weights[0].double().cpu()
        acc, acc_imp, acc_exp, margin = [], [], [], []
        for i in range(self.n_clients):
            implicit, explicit = self._client_margins(theta[0], i)
            combined = self._combined(implicit, explicit)
            acc.append(preference_accuracy(combined))
            acc_imp.append(preference_accuracy(implicit))
            margin.append(combined.mean())
            if explicit is not None:
                acc_exp.append((explicit > 0).double().mean())
        acc, acc_imp, margin = torch.stack(acc), torch.stack(acc_imp), torch.stack(margin)
        self._zero_grad()
        loss = sum(w[i] * self._client_pass(i, theta[0], self.eval_idx[i], float(w[i]), False)[0]
                   for i in range(self.n_clients))
        g_sq = self._flat_grad().double().pow(2).sum().cpu() if self.cfg.share_lora else torch.tensor(float("nan"))
        self._zero_grad()
        metrics = {"train_loss": loss, "grad_norm_sq": g_sq,
                   "eval_pref_acc": (w * acc).sum(), "reward_margin": (w * margin).sum(),
                   "eval_pref_acc_implicit": (w * acc_imp).sum(),
                   **{f"eval_pref_acc_client{i}": a for i, a in enumerate(acc)}}
        if acc_exp:
            metrics["eval_pref_acc_explicit"] = (w * torch.stack(acc_exp)).sum()
        return {k: v.reshape(1).to(dtype=self.dtype, device=theta.device) for k, v in metrics.items()}

    # ------------------------------------------------------------------ state and files

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The client-local state (personal parameters and their optimizer), for checkpoints."""
        return {"personal": self.personal, **{k: T[0] for k, T in self.opt.state.items()}}   # [N, D] views

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, dst in self.state_dict().items():
            if state[key].shape != dst.shape:
                raise ValueError(f"personal state {key}: shape {tuple(state[key].shape)}, expected {tuple(dst.shape)}")
            dst.copy_(state[key])

    def save_adapter(self, theta: torch.Tensor, path) -> None:
        """The shared adapter as a peft directory (LLMOracle.save_adapter; skipped local-only) plus
        `personal.safetensors`: each client's personal vector ("client{i}"), with the layout
        (block -> offset, shape) in its metadata."""
        from pathlib import Path

        from safetensors.torch import save_file

        from theory_lab.results import atomic_write

        path = Path(path)
        if self.cfg.share_lora:
            super().save_adapter(theta, path)
        path.mkdir(parents=True, exist_ok=True)
        layout = {k: {"offset": sl.start, "shape": list(shape)} for k, (sl, shape) in self.modules.layout.items()}
        tensors = {f"client{i}": self.personal[i].detach().cpu().contiguous() for i in range(self.n_clients)}
        atomic_write(path / "personal.safetensors",
                     lambda tmp: save_file(tensors, tmp, metadata={"layout": json.dumps(layout)}))


def build_fedpdpo_oracle(cfg, personal: PersonalConfig | None = None) -> FedPDPOOracle:
    """LLMConfig (+ its `personal` section) -> data per client, the model with LoRA, the oracle."""
    from llm.data import client_data, data_summary, tokenize_pairs
    from llm.model import add_lora, load_model, resolve_device

    personal = personal or getattr(cfg, "personal", None) or PersonalConfig(enabled=True)
    cfg.validate()
    personal.validate()
    device = resolve_device(cfg.device)
    train_pairs, heldout_pairs = client_data(cfg)
    model, tokenizer = load_model(cfg.model, cfg.dtype, device)
    model = add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules, seed=cfg.seed)

    def tok(pairs):
        return tokenize_pairs(pairs, tokenizer, cfg.max_length, cfg.max_prompt_length)

    oracle = FedPDPOOracle(model, [tok(p) for p in train_pairs], [tok(p) for p in heldout_pairs], cfg.beta,
                           personal, cfg.loss_type, cfg.eval_batch_size, device, seed=cfg.seed, **cfg.execution())
    oracle.data_summary = data_summary(cfg)
    return oracle


__all__ = ["FedPDPOOracle", "build_fedpdpo_oracle"]
