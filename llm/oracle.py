"""The Oracle protocol (theory_lab/oracle.py) for causal LMs with LoRA: the parameter stack's rows
are each client's flattened trainable (LoRA) parameters.

One base model is loaded once; a client's parameters are loaded into the adapters
(`set_trainable_vector`) just before its forward pass, so each extra simulated client costs only
its parameter row (and optimizer state, held by the algorithm). The reference policy is the same
model with its adapters disabled; its log-probs are computed once per client at construction and
cached (once per sweep when its runs share a model load). The parameter stack, the client weights
and the returned gradients live on `stack_device`, the model's device unless told otherwise: a GPU
run keeps the stack and the algorithms' state on the GPU (docs/architecture.md, "Devices").

All computations run in eval mode (no dropout) and draw no random numbers: given the indices from
`sample_batch`, gradients and metrics are deterministic.

Client batching (`client_batching`, llm/batched.py): `grad`, `local_step` and `loss` evaluate all
the rows of X in forwards of up to `max_rows_per_forward` rows with the clients' adapters stacked,
instead of one client after another; the sequential loop stays, as the reference and for what
cannot batch (clients with different numbers of pairs, per-client frozen deltas of stale starts).
"auto": batched on a GPU when at least two clients share a call; sequential on the CPU, where one
large batch measured slower than the same pairs in small per-client batches (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch.nn.utils import parameters_to_vector

from llm.batched import CLIENT_BATCHING, batched_losses, stack_layout_error
from llm.config import PREFIX_SHARING
from llm.dpo import (LOSS_TYPES, body_and_head, dpo_loss, pack_window, preference_accuracy, sequence_logps,
                     shared_prompt_logps)
from llm.model import (add_lora, checkpoint_layers, fold_into_base, load_model, lora_modules, resolve_device,
                       set_trainable_vector, trainable_parameters)
from llm.packing import Packed
from theory_lab.errors import ConfigError


def _rows(tp, idx: torch.Tensor):
    """input_ids, attention_mask, response_mask of pairs `idx` [b]: chosen rows then rejected."""
    rows = torch.cat([idx, idx + tp.n_pairs]).to(tp.input_ids.device)
    return tp.input_ids[rows], tp.attention_mask[rows], tp.response_mask[rows]


class LLMOracle:
    """f_i(θ) = mean DPO loss of client i's training pairs at LoRA parameters θ; f = Σ_i w_i f_i
    with w_i ∝ n_i. Metrics of the averaged model on every client's held-out pairs."""

    n_seeds = 1
    reports_clients = True   # evaluate() reports each client's accuracy (eval_pref_acc_client{i})
    smoothness = None

    def __init__(self, model, train: list, heldout: list, beta: float, loss_type: str = "sigmoid",
                 eval_batch_size: int = 16, device: str | torch.device | None = None,
                 client_batching: str = "auto", max_rows_per_forward: int = 256, prefix_sharing: str = "auto",
                 gradient_checkpointing: bool = False, packing: bool = True, static_shapes: bool = False,
                 stack_device: str | torch.device | None = None):
        if not hasattr(model, "disable_adapter"):
            raise TypeError("LLMOracle needs a peft model (llm.model.add_lora): the reference is the "
                            "model with its adapters disabled")
        if len(train) == 0 or len(train) != len(heldout):
            raise ValueError(f"need one train and one held-out set per client, got {len(train)} and {len(heldout)}")
        for name, sets in (("train", train), ("held-out", heldout)):
            for i, tp in enumerate(sets):
                if tp.n_pairs < 1:
                    raise ValueError(f"client {i} has no {name} pairs")
        if loss_type not in LOSS_TYPES:
            raise ConfigError("llm.loss_type", f"must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
        if not beta > 0:
            raise ConfigError("llm.beta", f"must be > 0, got {beta}")
        if eval_batch_size < 1:
            raise ConfigError("llm.eval_batch_size", f"must be >= 1, got {eval_batch_size}")
        if client_batching not in CLIENT_BATCHING:
            raise ConfigError("llm.client_batching", f"must be one of {', '.join(CLIENT_BATCHING)}, got {client_batching!r}")
        if prefix_sharing not in PREFIX_SHARING:
            raise ConfigError("llm.prefix_sharing", f"must be one of {', '.join(PREFIX_SHARING)}, got {prefix_sharing!r}")
        if gradient_checkpointing and prefix_sharing == "on":
            raise ConfigError("llm.gradient_checkpointing", "cannot recompute the layers of prefix sharing's KV-cache "
                                                            "forwards: set llm.prefix_sharing to auto or off")
        if static_shapes and (not packing or prefix_sharing == "on" or body_and_head(model) is None):
            raise ConfigError("llm.static_shapes", "needs full rows packed by the body (llm.packing = true, "
                                                   "llm.prefix_sharing auto or off, a model with a body and an LM head)")
        if max_rows_per_forward < 2:
            raise ConfigError("llm.max_rows_per_forward", f"must be >= 2 (one pair), got {max_rows_per_forward}")
        self.model = model
        self.model.train(False)
        self.params = trainable_parameters(model)
        if not self.params:
            raise ValueError("the model has no trainable parameters; add LoRA adapters first")
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ValueError(f"trainable parameters have mixed dtypes {dtypes}")
        self.device = torch.device(device) if device is not None else self.params[0].device
        # where the parameter stack, the client weights and so the algorithms' state live: the model's
        # device (no host round trip per step), unless told otherwise (tests: tests/second_device.py)
        self.stack_device = torch.device(stack_device) if stack_device is not None else self.device
        self.beta, self.loss_type, self.eval_batch_size = float(beta), loss_type, int(eval_batch_size)
        self.prefix_sharing = prefix_sharing == "on" or (
            prefix_sharing == "auto" and self.device.type == "cpu" and not gradient_checkpointing and not static_shapes)
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.packing = bool(packing)
        if gradient_checkpointing:
            checkpoint_layers(model)
        self.train = [tp.to(self.device) for tp in train]
        self.heldout = [tp.to(self.device) for tp in heldout]
        # static shapes: every forward packs into rows as wide as the widest tokenized row, their
        # count bucketed (llm.packing.row_bucket): a few shapes per run, for torch.compile / CUDA graphs
        self.static_width = max(tp.input_ids.shape[1] for tp in self.train + self.heldout) if static_shapes else None
        self.n_clients = len(train)
        self.dtype = self.params[0].dtype
        self.dim = sum(p.numel() for p in self.params)
        self.sizes = torch.tensor([tp.n_pairs for tp in self.train])
        sizes = self.sizes.to(torch.float64)
        self.weights = (sizes / sizes.sum()).to(self.dtype).unsqueeze(0).to(self.stack_device)   # [1, N]
        self._theta0 = parameters_to_vector(self.params).detach().to(self.stack_device, copy=True)
        self._lora = lora_modules(model)
        self.factor_layout = [f for _, _, f in self._lora]   # where each A and B sits in a row
        self.client_batching, self.max_rows_per_forward = client_batching, int(max_rows_per_forward)
        self._stack_error = stack_layout_error(self._lora, self.dim)
        if client_batching == "on" and self._stack_error:
            raise ConfigError("llm.client_batching", f"cannot stack this model's adapters: {self._stack_error}")
        self._base_weights = None   # the base weights before any frozen delta (set_frozen_delta)
        self._client_deltas: dict[int, torch.Tensor] = {}   # stale starts' own deltas, by client
        self._server_delta = self._folded = None
        # the fixed evaluation batch of the global objective: the first eval_batch_size training pairs
        self.eval_idx = [torch.arange(min(self.eval_batch_size, tp.n_pairs)) for tp in self.train]
        # reference log-probs [n_i, 2] (chosen, rejected), once per client (once per sweep, where
        # its runs share a model load: llm.model.reuse_loaded_models)
        memo = getattr(model.get_base_model(), "reference_memo", None)
        self.ref_train = [self._reference_once(tp, memo) for tp in self.train]
        self.ref_heldout = [self._reference_once(tp, memo) for tp in self.heldout]

    # ------------------------------------------------------------------ forward passes

    def _chunks(self, idx: torch.Tensor):
        return idx.split(self.eval_batch_size)

    def _policy_logps(self, tp, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Chosen and rejected log-probs [b] each of pairs idx of tp."""
        return self._pair_logps(*_rows(tp, idx))

    def _pair_logps(self, input_ids, attention_mask, response_mask, packed=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Chosen and rejected log-probs of 2b rows (chosen, then rejected): each pair's prompt run
        once for both (prefix sharing), or the full rows, packed without padding (llm.packing;
        `packed`: False, or a plan of llm.batched's, overrides it); the same values every way."""
        if self.prefix_sharing:
            return shared_prompt_logps(self.model, input_ids, attention_mask, response_mask)
        packed = self._packing(input_ids, attention_mask, response_mask) if packed is None else packed
        logps = sequence_logps(self.model, input_ids, attention_mask, response_mask, packed=packed)
        return logps[:len(logps) // 2], logps[len(logps) // 2:]

    def _packing(self, input_ids, attention_mask, response_mask) -> bool | Packed:
        """How full rows run: padded (False), packed (True), or, with static shapes, packed by
        this plan of fixed width."""
        if self.static_width is None:
            return self.packing
        return pack_window(input_ids, attention_mask, response_mask, width=self.static_width)

    @torch.no_grad()
    def _reference(self, tp) -> torch.Tensor:
        out = []
        with self.model.disable_adapter():
            for idx in self._chunks(torch.arange(tp.n_pairs)):
                c, r = self._policy_logps(tp, idx)
                out.append(torch.stack([c, r], dim=1))
        return torch.cat(out)

    def _reference_once(self, tp, memo: dict | None) -> torch.Tensor:
        """_reference(tp), looked up in `memo` (shared by the copies of one model load) under
        everything its value depends on besides the base weights: the tokens, the chunking, the
        forward path and where it runs."""
        if memo is None:
            return self._reference(tp)
        digest = hashlib.sha256()
        for t in (tp.input_ids, tp.attention_mask, tp.response_mask):
            digest.update(str((t.dtype, tuple(t.shape))).encode())
            digest.update(t.cpu().contiguous().numpy().tobytes())
        key = (digest.hexdigest(), self.eval_batch_size, self.prefix_sharing, self.packing, self.static_width,
               str(self.device))
        if key not in memo:
            memo[key] = self._reference(tp)
        return memo[key].clone()

    def _losses(self, tp, ref: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        c, r = self._policy_logps(tp, idx)
        ref = ref[idx.to(ref.device)]
        return dpo_loss(c, r, ref[:, 0], ref[:, 1], self.beta, self.loss_type)[0]

    def _margins(self, tp, ref: torch.Tensor) -> torch.Tensor:
        """Implicit reward margins β[(π_c − π_r) − (ref_c − ref_r)] [n] over all pairs of tp."""
        out = []
        with torch.no_grad():
            for idx in self._chunks(torch.arange(tp.n_pairs)):
                c, r = self._policy_logps(tp, idx)
                rc, rr = ref[idx, 0], ref[idx, 1]
                out.append(self.beta * ((c - r) - (rc - rr)))
        return torch.cat(out)

    def set_frozen_delta(self, delta: torch.Tensor, rows: torch.Tensor | None = None,
                         clients: torch.Tensor | None = None) -> None:
        """The ``exact`` aggregation rule's dense residual [1, D], added to the LoRA modules' frozen
        base weights (theory_lab.factorised; llm.model.fold_into_base). `rows` [1, K, D]: until the
        next call, client clients[0, k] trains on its own delta rows[0, k] (a stale start's)."""
        if self._base_weights is None:
            self._base_weights = [m.base_layer.weight.detach().clone() for _, m, _ in self._lora]
        self._client_deltas = {} if rows is None else {
            int(c): rows[0, k] for k, c in enumerate(self._client_ids(rows, clients))}
        self._folded = None
        self._fold(delta[0])
        self._server_delta = delta[0]

    def _fold(self, delta: torch.Tensor) -> None:
        if self._folded is not delta:
            fold_into_base(self._lora, delta, self._base_weights)
            self._folded = delta

    def _use_client_delta(self, client: int) -> None:
        """Before client `client`'s forward passes: its own frozen delta, if it has one."""
        if self._client_deltas:
            self._fold(self._client_deltas.get(client, self._server_delta))

    def _load(self, theta: torch.Tensor) -> None:
        self.model.train(False)   # no dropout, whatever the caller did to the model in between
        set_trainable_vector(self.model, theta)

    def _zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _flat_grad(self) -> torch.Tensor:
        return parameters_to_vector([p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params])

    def _backward(self, client: int, idx: torch.Tensor, scale: float) -> torch.Tensor:
        """Backpropagate scale · mean loss over pairs idx of the client, in eval-size chunks
        (each chunk's sum divided by len(idx): exactly the mean's gradient). Returns the loss."""
        tp, ref = self.train[client], self.ref_train[client]
        total = torch.zeros((), dtype=torch.float64)
        with torch.enable_grad():
            for chunk in self._chunks(idx):
                loss = self._losses(tp, ref, chunk).sum() / len(idx)
                (scale * loss).backward()
                total += loss.detach().double().cpu()
        return total

    # ------------------------------------------------------------------ the Oracle protocol

    def init_params(self) -> torch.Tensor:
        """The LoRA initialisation [1, P] (B = 0: the policy starts equal to the reference)."""
        return self._theta0.clone().unsqueeze(0)

    def sample_batch(self, gen: torch.Generator, batch_size: int) -> Any:
        """Indices [1, N, b], uniform with replacement within each client's own pairs."""
        if batch_size == 0:
            return None
        u = torch.rand(1, self.n_clients, batch_size, generator=gen, dtype=torch.float64)
        n = self.sizes[None, :, None]
        return (u * n).long().clamp_max(n - 1)

    def _client_indices(self, client: int, batch) -> torch.Tensor:
        if batch is None:
            return torch.arange(self.train[client].n_pairs)
        return batch[0, client].cpu()

    def _client_ids(self, X: torch.Tensor, clients) -> list[int]:
        if X.shape[0] != 1:
            raise ValueError(f"the LLM oracle has one seed; got a parameter stack of shape {tuple(X.shape)}")
        ids = list(range(self.n_clients)) if clients is None else clients[0].tolist()
        if len(ids) != X.shape[1]:
            raise ValueError(f"{X.shape[1]} parameter rows for {len(ids)} clients")
        return ids

    def local_step(self, X: torch.Tensor, clients: torch.Tensor | None, batch: Any) -> torch.Tensor:
        """A training step's gradient (no client-local state here: grad itself)."""
        return self.grad(X, clients, batch)

    def _batch_plan(self, ids: list[int], batch: Any) -> list[torch.Tensor] | None:
        """Each client's pair indices when this call runs client-batched (llm/batched.py), else None."""
        if self.client_batching == "off" or self._stack_error or self._client_deltas:
            return None
        if self.client_batching == "auto" and (len(ids) < 2 or self.device.type == "cpu"):
            return None
        idx = [self._client_indices(c, batch) for c in ids]
        return idx if len({len(i) for i in idx}) == 1 else None   # [sides, K, g] rows need equal g

    def _stack(self, X: torch.Tensor, requires_grad: bool) -> torch.Tensor:
        """The rows of X [1, K, P] as one leaf [K, P] on the model's device: the stacked adapters' storage."""
        self.model.train(False)
        return X[0].detach().to(device=self.device, dtype=self.dtype, copy=True).requires_grad_(requires_grad)

    def grad(self, X: torch.Tensor, clients: torch.Tensor | None, batch: Any) -> torch.Tensor:
        """[1, K, P]: gradient of each row's client loss (minibatch mean, or the exact full-data
        gradient when batch is None) at its own parameters."""
        ids = self._client_ids(X, clients)
        idx = self._batch_plan(ids, batch)
        if idx is not None:
            W = self._stack(X, True)
            batched_losses(self, W, ids, idx, True)
            return W.grad.to(X).unsqueeze(0)
        out = torch.empty(X.shape, dtype=X.dtype, device=X.device)
        for k, c in enumerate(ids):
            self._load(X[0, k])
            self._use_client_delta(c)
            self._zero_grad()
            self._backward(c, self._client_indices(c, batch), 1.0)
            out[0, k] = self._flat_grad().to(out)
        self._zero_grad()
        return out

    def loss(self, X: torch.Tensor, clients: torch.Tensor | None = None, batch: Any = None) -> torch.Tensor:
        """[1, K]: each row's client loss (minibatch mean, or on all the client's pairs)."""
        ids = self._client_ids(X, clients)
        idx = self._batch_plan(ids, batch)
        if idx is not None:
            return self._batched_loss(X, ids, idx).unsqueeze(0).to(X)
        out = torch.empty(X.shape[:2], dtype=torch.float64)
        with torch.no_grad():
            for k, c in enumerate(ids):
                pair_losses = self._client_loss(X[0, k], c)
                idx = self._client_indices(c, batch)
                out[0, k] = sum(pair_losses(ch).double().sum().cpu() for ch in self._chunks(idx)) / len(idx)
        return out.to(X)

    def _batched_loss(self, X: torch.Tensor, ids: list[int], idx: list[torch.Tensor]) -> torch.Tensor:
        """[K]: the clients' mean losses in one client-batched pass (FedPDPO: with its modules)."""
        return batched_losses(self, self._stack(X, False), ids, idx, False)

    def _client_loss(self, row: torch.Tensor, client: int):
        """Set the model to `client` at parameters `row`; returns its per-pair losses of a chunk of
        pair indices (FedPDPO: the personalised loss, with the client's modules)."""
        self._load(row)
        self._use_client_delta(client)
        return lambda chunk: self._losses(self.train[client], self.ref_train[client], chunk)

    def save_adapter(self, theta: torch.Tensor, path) -> None:
        """The adapter at θ [1, P] as a peft directory (adapter_model.safetensors +
        adapter_config.json), loadable with PeftModel.from_pretrained; after ``exact``
        aggregation also frozen_delta.safetensors, the dense delta of each LoRA module's base
        weight (by module name), which the model needs besides the adapter. Written to a temporary
        directory first and renamed, so a crash never leaves half an adapter."""
        import shutil
        import tempfile
        from pathlib import Path

        path = Path(path)
        from theory_lab.results import umask_mode

        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            tmp.chmod(umask_mode(0o777))   # mkdtemp makes 0700; the files are saved with the umask's modes
            self._load(theta[0])
            # no embedding-layer check: it looks the base model up (online or on disk) only to
            # decide whether to save embeddings, which LoRA on linear layers never changes
            self.model.save_pretrained(tmp, safe_serialization=True, save_embedding_layers=False)
            if self._base_weights is not None:   # exact aggregation: the adapter alone is not the model
                from safetensors.torch import save_file

                save_file({name: (m.base_layer.weight.detach() - w0).cpu().contiguous()
                           for (name, m, _), w0 in zip(self._lora, self._base_weights)},
                          str(tmp / "frozen_delta.safetensors"))
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def reference_accuracy(self) -> dict[str, float]:
        """What the reference model itself prefers on the held-out pairs: the fraction where
        log π_ref(chosen) > log π_ref(rejected) (client-weighted and per client). The implicit
        reward accuracy of the reference is 0 by construction (all margins are 0), so this is
        the baseline a trained policy must beat, together with chance (0.5)."""
        per_client = [float((ref[:, 0] > ref[:, 1]).double().mean()) for ref in self.ref_heldout]
        w = self.weights[0].double().cpu().tolist()
        return {"weighted": sum(a * b for a, b in zip(w, per_client)), "per_client": per_client}

    def client_accuracy(self, theta: torch.Tensor) -> torch.Tensor:
        """[N]: each client's held-out preference accuracy (implicit reward margin > 0) at θ [1, P]."""
        self._load(theta[0])
        return torch.stack([(self._margins(tp, ref) > 0).double().mean().cpu()
                            for tp, ref in zip(self.heldout, self.ref_heldout)]).to(theta)

    def personal_accuracy(self, X: torch.Tensor) -> torch.Tensor:
        """[1, N]: held-out preference accuracy of client i at its own row X[0, i] (float64)."""
        acc = []
        for i, (tp, ref) in enumerate(zip(self.heldout, self.ref_heldout)):
            self._load(X[0, i])
            acc.append(preference_accuracy(self._margins(tp, ref).double().cpu()))
        return torch.stack(acc).unsqueeze(0)

    def evaluate(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Metrics [1] of the averaged model θ [1, P]: held-out `eval_pref_acc` and `reward_margin`
        (client-weighted), and `train_loss`, `grad_norm_sq` of f = Σ_i w_i f_i on the fixed
        evaluation batch (each client's first eval_batch_size training pairs)."""
        self._load(theta[0])
        w = self.weights[0].double().cpu()   # metrics on the host, returned where theta lives
        margins = [self._margins(tp, ref).double().cpu() for tp, ref in zip(self.heldout, self.ref_heldout)]
        acc = torch.stack([preference_accuracy(h) for h in margins])
        margin = torch.stack([h.mean() for h in margins])
        self._zero_grad()
        loss = sum(w[i] * self._backward(i, self.eval_idx[i], float(w[i])) for i in range(self.n_clients))
        g = self._flat_grad().double()
        self._zero_grad()
        metrics = {"train_loss": loss, "grad_norm_sq": g.pow(2).sum().cpu(),
                   "eval_pref_acc": (w * acc).sum(), "reward_margin": (w * margin).sum(),
                   # per client, for personalised and non-IID federations (extra table columns)
                   **{f"eval_pref_acc_client{i}": a for i, a in enumerate(acc)}}
        return {k: v.reshape(1).to(dtype=self.dtype, device=theta.device) for k, v in metrics.items()}


def build_llm_oracle(cfg) -> LLMOracle:
    """LLMConfig -> data per client, the model loaded once with LoRA, the oracle."""
    from llm.data import client_data, data_summary, tokenize_pairs

    cfg.validate()
    if cfg.personal.enabled:
        raise ConfigError("llm.personal.enabled", "FedPDPO's oracle holds personal modules: build it with "
                                                  "llm.fedpdpo.build_fedpdpo_oracle (the track does)")
    device = resolve_device(cfg.device)
    train_pairs, heldout_pairs = client_data(cfg)   # data errors before the (slow) model load
    model, tokenizer = load_model(cfg.model, cfg.dtype, device)
    model = add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules, seed=cfg.seed)

    def tok(pairs):
        return tokenize_pairs(pairs, tokenizer, cfg.max_length, cfg.max_prompt_length)

    oracle = LLMOracle(model, [tok(p) for p in train_pairs], [tok(p) for p in heldout_pairs],
                       cfg.beta, cfg.loss_type, cfg.eval_batch_size, device, **cfg.execution())
    oracle.data_summary = data_summary(cfg)
    return oracle
