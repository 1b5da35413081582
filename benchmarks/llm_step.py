"""LLM-track step benchmark: DPO training throughput (pairs/s) and peak memory of our step
(LLMOracle.grad + AdamW) against TRL's DPOTrainer on the same model, data, LoRA setting and batch,
and the cost of simulating 10 FedDPO clients against centralized training.

    .venv/bin/python benchmarks/llm_step.py --model tiny --steps 20 --repeats 3          # quick check
    .venv/bin/python benchmarks/llm_step.py --model smollm2 --steps 8 --repeats 2 --json out.json
    .venv/bin/python benchmarks/llm_step.py --model arch:smollm2-135m --device cuda --max-length 256 \
        --max-prompt-length 128 --configs clients,trl-precompute --batch 4 --trl-batch 8     # GPU, no weights

Configurations (each runs in its own fresh subprocess, so peak memory never mixes; the parent runs
them in turn, repeat by repeat, so every configuration of a repeat sees about the same load):

  ours           LLMOracle (one client holding the pool) + theory_lab.optim.Optimizer (AdamW):
                 per step oracle.grad(X, None, batch) then opt.step. The reference log-probs are
                 cached once, at oracle construction (setup, not timed). Each pair's prompt runs
                 once for both responses (llm.dpo.shared_prompt_logps, prefix sharing): 32 + 32 + 32
                 body tokens a pair instead of 2 x 64.
  trl-precompute TRL DPOTrainer, precompute_ref_log_probs=True: the reference is computed once
                 before training too. The like-for-like comparison with ours.
  trl-per-step   TRL DPOTrainer, precompute_ref_log_probs=False (its default): each step also runs
                 a no-grad reference forward with the adapters disabled.
  floor          not a trainer: a bare forward + backward of the same LoRA model on the same batches,
                 full rows (128 tokens a pair), logits at the last position only (no LM head over
                 the responses, no loss, no optimizer). The transformer body's cost over full rows:
                 it bounds any step that runs both rows whole (as TRL does); ours, which runs each
                 prompt once, processes fewer tokens and can beat it.
  central        theory_lab Centralized (make_algorithm) on a one-client oracle holding the pooled
                 pairs of the 10 clients: one AdamW step on b pairs per round.
  fed            theory_lab FedDPO (make_algorithm) on a 10-client oracle, E = 1, full participation
                 (S = N), AdamW per client (state_policy keep), b pairs per client-step.
                 Overhead = (fed time per pair) / (central time per pair) - 1.
  paired-trl     trl-precompute and ours in one process, alternating step by step on the same
                 batch (each on its own model copy): the steadiest ratio on a shared machine.
  paired-fed     fed and central in one process on one shared LoRA model, one FedDPO round
                 against K centralized steps, alternating. Paired runs report timings only.
  seq-N          N simulated clients x b pairs: what FedDPO does per local step,
                 oracle.local_step on [1, N, P] + AdamW on [1, N, P], one client after another
                 (llm.client_batching = "off"). N from --client-counts ("clients" = seq, batched
                 and onebatch for every N).
  batched-N      the same with client batching on: all N clients' rows in one forward/backward
                 with stacked LoRA adapters (llm/batched.py).
  onebatch-N     the floor of batched-N: one client, the same N·b pairs in one forward/backward
                 (same prefix sharing, loss and optimizer; one adapter instead of N).
  paired-head    our gradient (oracle.grad, one client, b pairs) with the chunked LM head
                 (llm.dpo.head_logps) and with full-vocabulary logits (llm.dpo.PLAIN_HEAD emptied,
                 the path before it), alternating step by step on the same batches and parameters.
  paired-clients seq-N, batched-N and onebatch-N in one process on one shared LoRA model for the
                 largest N of --client-counts, alternating step by step (order rotated every
                 step), on the same batches: the steadiest ratios on a shared machine.

Models: "tiny", "smollm2" (the GGUF), or "arch:smollm2-135m | arch:smollm2-360m | arch:smollm2-1.7b":
seeded random weights of that architecture (llm.model.ARCHS), nothing to download; --data random
(the default for arch: models) then draws random token pairs that fill max_length (prompt
max_prompt_length tokens, both responses the rest), so no data set is needed either.

Compute: TFLOP/s counts model FLOPs per pair = 4·(body linear weights)·(prompt + 2 responses
tokens) + 4·(vocab·hidden)·(2 responses tokens): forward plus the input-gradient backward of
frozen weights, with prefix sharing; LoRA and attention-score FLOPs are not counted (a lower
bound). MFU divides it by a square matmul peak each worker measures on its device in the model's
dtype (bf16 on CUDA: 8192³; float32 on CPU: 1024³).

Same everything: the model comes from llm.model.load_model (GGUF: quantization marker removed),
LoRA r=8, alpha=16, dropout 0 on q_proj, v_proj (our add_lora for ours; the same peft LoraConfig
passed as TRL's peft_config), float32 on CPU, no gradient checkpointing, no dropout, sigmoid loss,
beta 0.2, max_length 64, max_prompt_length 32. The data are hh-rlhf pairs tokenized once by
llm.data.tokenize_pairs; TRL receives those exact token ids (its own text tokenization is bypassed,
since TRL >= 1.0 has no max_prompt_length), and TRL's sampler is made sequential so that ours and TRL
process the very same batches in the same order. The pool holds only pairs whose chosen and rejected
sequences both fill max_length, so every batch is [2b, 64] tokens and fed/central (which sample at
random) do identical work per pair.

Timing: time.perf_counter over N steps after W warm-up steps (TRL: from the end of its warm-up step
to the end of its last step, via a TrainerCallback, so its data loading, optimizer and bookkeeping
count, as ours do). Memory: the peak resident set (VmHWM) of the worker process, reset through
/proc/self/clear_refs right after the model is loaded and the data tokenized, so it covers setup
(reference log-probs) and training; the process-lifetime ru_maxrss (which includes the model load)
and the RSS after load are reported too. On CUDA, torch.cuda.max_memory_allocated is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("ours", "trl-precompute", "trl-per-step", "floor", "central", "fed", "paired-trl", "paired-fed",
           "seq", "batched", "onebatch", "clients", "paired-clients", "paired-head")
CLIENT_CONFIGS = ("seq", "batched", "onebatch")   # expanded to NAME-N for N in --client-counts
PAIRED = ("paired-trl", "paired-fed", "paired-clients", "paired-head")
LORA = dict(r=8, alpha=16.0, dropout=0.0, targets=["q_proj", "v_proj"])
BETA, MAX_LEN, MAX_PROMPT = 0.2, 64, 32


# ----------------------------------------------------------------------------- memory

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")   # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- data

def _pool(tokenizer, n_pairs: int, data: str = "hh-rlhf"):
    """The first n_pairs hh-rlhf pairs (file order) whose chosen and rejected rows both fill MAX_LEN;
    data "random": pair ids 0 .. n_pairs-1, tokenized by _tok as seeded random tokens."""
    from llm.data import load_pairs, tokenize_pairs

    if data == "random":
        return list(range(n_pairs))

    data_dir = Path(os.environ.get("DDPO_DATA_DIR", ROOT.parent / "shared" / "data"))
    pairs = load_pairs("hh-rlhf", data_dir)
    out = []
    for start in range(0, len(pairs), 256):
        chunk = pairs[start:start + 256]
        tp = tokenize_pairs(chunk, tokenizer, MAX_LEN, MAX_PROMPT)
        lens = tp.attention_mask.sum(1)
        n = tp.n_pairs
        out += [p for i, p in enumerate(chunk) if lens[i] == MAX_LEN and lens[n + i] == MAX_LEN]
        if len(out) >= n_pairs:
            return out[:n_pairs]
    raise SystemExit(f"only {len(out)} full-length hh-rlhf pairs, need {n_pairs}")


def _tok(pairs, tokenizer):
    from llm.data import TokenizedPairs, tokenize_pairs

    if pairs and isinstance(pairs[0], int):   # random pairs: prompt MAX_PROMPT tokens, responses fill MAX_LEN
        import torch

        n, R = len(pairs), MAX_LEN - MAX_PROMPT
        rows = []
        for i in pairs:
            g = torch.Generator().manual_seed(i)
            prompt, c, r = (torch.randint(3, len(tokenizer), (k,), generator=g) for k in (MAX_PROMPT, R, R))
            rows.append((torch.cat([prompt, c]), torch.cat([prompt, r])))
        ids = torch.stack([c for c, _ in rows] + [r for _, r in rows])
        resp = torch.zeros(2 * n, MAX_LEN, dtype=torch.bool)
        resp[:, MAX_PROMPT:] = True
        return TokenizedPairs(ids, torch.ones_like(ids), resp, n)
    return tokenize_pairs(pairs, tokenizer, MAX_LEN, MAX_PROMPT)


# ----------------------------------------------------------------------------- workers

def _alg_cfg(name: str, b: int):
    from theory_lab.config import AlgorithmConfig

    cfg = AlgorithmConfig(name=name, local_steps=1, batch_size=b, lr=1e-4, optimizer="adamw",
                          weight_decay=0.0, state_policy="keep")
    cfg.validate()
    return cfg


# how every oracle runs its forwards (--prefix-sharing, --gradient-checkpointing; a configuration's own
# client batching on top)
EXECUTION: dict = {}


def _oracle(model, tokenizer, train_sets, heldout_sets, device, lora: bool = True, eval_batch_size: int = 16,
            **batching):
    from llm.model import add_lora
    from llm.oracle import LLMOracle

    if lora:
        model = add_lora(model, LORA["r"], LORA["alpha"], LORA["dropout"], LORA["targets"], seed=0)
    return LLMOracle(model, [_tok(p, tokenizer) for p in train_sets], [_tok(p, tokenizer) for p in heldout_sets],
                     BETA, "sigmoid", eval_batch_size=eval_batch_size, device=device, **{**EXECUTION, **batching})


def run_clients(model, tokenizer, pool, a, device, which: str, N: int):
    """seq-N / batched-N / onebatch-N (module docstring): step k gives each client its own pairs
    k·b .. k·b+b-1 (onebatch: the N·b pairs of that step, in one client), then AdamW on the stack."""
    import torch

    from theory_lab.optim import Optimizer

    b, W, S = a.batch, a.warmup, a.steps
    per = (W + S) * b
    if which == "onebatch":
        oracle = _oracle(model, tokenizer, [pool[:N * per]], [pool[-1:]], device, eval_batch_size=N * b,
                         client_batching="off")
        K = 1
    else:
        oracle = _oracle(model, tokenizer, [pool[i * per:(i + 1) * per] for i in range(N)], [pool[-1:]] * N, device,
                         client_batching="on" if which == "batched" else "off", max_rows_per_forward=2 * N * b)
        K = N
    opt = Optimizer(_alg_cfg("feddpo", b), 1, K, oracle.dim, oracle.dtype, oracle.device)
    X = oracle.init_params().to(oracle.device).unsqueeze(1).repeat(1, K, 1)
    times = []
    for k in range(W + S):
        if which == "onebatch":
            batch = torch.arange(k * N * b, (k + 1) * N * b).view(1, 1, N * b)
        else:
            batch = torch.arange(k * b, (k + 1) * b).view(1, 1, b).expand(1, N, b)
        X = opt.step(X, oracle.local_step(X, None, batch), 1e-4)
        _sync(device)
        times.append(time.perf_counter())
    return times[-1] - times[W - 1], S * N * b


def run_paired_head(model, tokenizer, pool, a, device) -> dict:
    """Chunked head against the full-logits path in one process: oracle.grad at the same θ on
    batch k, both ways, order swapped every step."""
    import torch

    import llm.dpo

    ours = _Ours(model, tokenizer, pool, a, device)
    plain, secs = llm.dpo.PLAIN_HEAD, {"chunked": [], "logits": []}
    X = ours.X + 0.01   # B != 0
    for k in range(a.warmup + a.steps):
        batch = torch.arange(k * a.batch, (k + 1) * a.batch).view(1, 1, a.batch)
        for way in (("chunked", "logits") if k % 2 == 0 else ("logits", "chunked")):
            llm.dpo.PLAIN_HEAD = plain if way == "chunked" else ()
            _sync(device)
            t = time.perf_counter()
            ours.oracle.grad(X, None, batch)
            _sync(device)
            if k >= a.warmup:
                secs[way].append(time.perf_counter() - t)
    llm.dpo.PLAIN_HEAD = plain
    total = {w: sum(v) for w, v in secs.items()}
    return {"seconds": total, "pairs": a.steps * a.batch, "pairs_per_s": a.steps * a.batch / total["chunked"],
            "chunked_over_logits": total["logits"] / total["chunked"],
            "step_ratios": [lg / ch for lg, ch in zip(secs["logits"], secs["chunked"])]}


def run_paired_clients(model, tokenizer, pool, a, device) -> dict:
    """seq-N, batched-N and onebatch-N (N = the largest --client-counts) alternating step by step
    in one process on one LoRA model (each oracle loads its own parameters), same batches."""
    import torch

    from llm.model import add_lora
    from theory_lab.optim import Optimizer

    N, b, W, S = max(int(n) for n in a.client_counts.split(",")), a.batch, a.warmup, a.steps
    per = (W + S) * b
    peft = add_lora(model, LORA["r"], LORA["alpha"], LORA["dropout"], LORA["targets"], seed=0)
    sets, held = [pool[i * per:(i + 1) * per] for i in range(N)], [pool[-1:]] * N
    oracles = {"seq": _oracle(peft, tokenizer, sets, held, device, lora=False, client_batching="off"),
               "batched": _oracle(peft, tokenizer, sets, held, device, lora=False, client_batching="on",
                                  max_rows_per_forward=2 * N * b),
               "onebatch": _oracle(peft, tokenizer, [pool[:N * per]], [pool[-1:]], device, lora=False,
                                   eval_batch_size=N * b, client_batching="off")}
    state = {}
    for name, o in oracles.items():
        K = 1 if name == "onebatch" else N
        state[name] = [Optimizer(_alg_cfg("feddpo", b), 1, K, o.dim, o.dtype, o.device),
                       o.init_params().to(o.device).unsqueeze(1).repeat(1, K, 1)]
    secs = {name: [] for name in oracles}
    names = list(oracles)
    for k in range(W + S):
        for name in names[k % 3:] + names[:k % 3]:
            o, (opt, X) = oracles[name], state[name]
            if name == "onebatch":   # client i's pairs of step k are one-client pairs i·per + k·b ..
                batch = (torch.arange(N)[:, None] * per + k * b + torch.arange(b)).view(1, 1, N * b)
            else:
                batch = torch.arange(k * b, (k + 1) * b).view(1, 1, b).expand(1, N, b)
            _sync(device)
            t = time.perf_counter()
            state[name][1] = opt.step(X, o.local_step(X, None, batch), 1e-4)
            _sync(device)
            if k >= W:
                secs[name].append(time.perf_counter() - t)
    total = {name: sum(v) for name, v in secs.items()}
    return {"clients": N, "seconds": total, "pairs": S * N * b,
            "pairs_per_s": S * N * b / total["batched"],
            "pairs_per_s_by_config": {name: S * N * b / t for name, t in total.items()},
            "batched_over_seq": total["seq"] / total["batched"],
            "batched_over_onebatch": total["onebatch"] / total["batched"],
            "step_ratios_seq": [s_ / b_ for s_, b_ in zip(secs["seq"], secs["batched"])]}


def _model_flops_per_pair(model) -> float:
    """4·(body linear weights)·(prompt + 2 response tokens) + 4·(head)·(2 response tokens): see the docstring."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, base.base_model_prefix)
    lin = sum(m.weight.numel() for name, m in body.named_modules()
              if isinstance(m, torch.nn.Linear) and "lora_" not in name)
    head = base.get_output_embeddings().weight.numel()
    R = MAX_LEN - MAX_PROMPT
    return 4.0 * lin * (MAX_PROMPT + 2 * R) + 4.0 * head * 2 * R


def _matmul_peak(device, dtype) -> float:
    """FLOP/s of a square matmul in dtype on device (bf16 8192³ on CUDA, 1024³ on CPU), best of a few."""
    import torch

    n, reps = (8192, 10) if str(device).startswith("cuda") else (1024, 10)
    x = torch.randn(n, n, device=device).to(dtype)
    y = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(reps + 2):
        _sync(device)
        t = time.perf_counter()
        x @ y
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class _Ours:
    """Our step: oracle.grad on batch k (pairs k·b .. k·b+b-1, TRL's sequential batches) + AdamW."""

    def __init__(self, model, tokenizer, pool, a, device):
        from theory_lab.optim import Optimizer

        self.b, self.device = a.batch, device
        self.oracle = _oracle(model, tokenizer, [pool[: (a.warmup + a.steps) * a.batch]], [pool[-1:]], device)
        self.opt = Optimizer(_alg_cfg("centralized", a.batch), 1, 1, self.oracle.dim, self.oracle.dtype)
        self.X = self.oracle.init_params().unsqueeze(1)   # [1 seed, 1 client, P]

    def step(self, k: int) -> None:
        import torch

        batch = torch.arange(k * self.b, (k + 1) * self.b).view(1, 1, self.b)
        self.X = self.opt.step(self.X, self.oracle.grad(self.X, None, batch), 1e-4)
        _sync(self.device)


def run_ours(model, tokenizer, pool, a, device):
    b, W, N = a.batch, a.warmup, a.steps
    ours = _Ours(model, tokenizer, pool, a, device)
    times = []
    for k in range(W + N):
        ours.step(k)
        times.append(time.perf_counter())
    return times[-1] - times[W - 1], N * b


def run_floor(model, tokenizer, pool, a, device):
    import torch

    from llm.model import add_lora

    b, W, N = a.batch, a.warmup, a.steps
    model = add_lora(model, LORA["r"], LORA["alpha"], LORA["dropout"], LORA["targets"], seed=0)
    tp = _tok(pool[: (W + N) * b], tokenizer).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    times = []
    for k in range(W + N):
        idx = torch.arange(k * b, (k + 1) * b)
        rows = torch.cat([idx, idx + tp.n_pairs]).to(tp.input_ids.device)
        out = model(input_ids=tp.input_ids[rows], attention_mask=tp.attention_mask[rows], use_cache=False,
                    logits_to_keep=1).logits
        out.float().sum().backward()
        for p in params:
            p.grad = None
        _sync(device)
        times.append(time.perf_counter())
    return times[-1] - times[W - 1], N * b


def _trl_trainer(model, tokenizer, pool, a, device, precompute: bool, callback):
    from datasets import Dataset
    from peft import LoraConfig
    from torch.utils.data import SequentialSampler
    from trl import DPOConfig, DPOTrainer

    b, W, N = a.batch, a.warmup, a.steps
    tp = _tok(pool[: (W + N) * b], tokenizer)
    n, rows = tp.n_pairs, []
    for i in range(n):   # our exact token ids: prompt (shared), chosen and rejected responses
        c, r = tp.input_ids[i].tolist(), tp.input_ids[n + i].tolist()
        cm, rm = tp.response_mask[i].tolist(), tp.response_mask[n + i].tolist()
        pl = cm.index(True)
        assert rm.index(True) == pl and c[:pl] == r[:pl]
        ca, ra = int(tp.attention_mask[i].sum()), int(tp.attention_mask[n + i].sum())
        rows.append({"prompt_ids": c[:pl], "chosen_ids": c[pl:ca], "rejected_ids": r[pl:ra]})
    dataset = Dataset.from_list(rows)

    class Trainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *args, **kwargs):   # already tokenized, by llm.data
            return dataset

        def _get_train_sampler(self, *args, **kwargs):          # same batch order as ours
            return SequentialSampler(self.train_dataset)

    cuda = str(device).startswith("cuda")
    out = tempfile.mkdtemp(prefix="llm_step_trl_")
    args = DPOConfig(output_dir=out, per_device_train_batch_size=b, max_steps=W + N, max_length=MAX_LEN,
                     beta=BETA, loss_type=["sigmoid"], learning_rate=1e-4, gradient_checkpointing=False,
                     bf16=cuda, use_cpu=not cuda, report_to="none", save_strategy="no", logging_steps=10**9,
                     disable_tqdm=True, precompute_ref_log_probs=precompute, disable_dropout=True,
                     dataloader_num_workers=0, seed=0)
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules=list(LORA["targets"]), bias="none", task_type="CAUSAL_LM")
    return Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                   callbacks=[callback], peft_config=peft_config)


def run_trl(model, tokenizer, pool, a, device, precompute: bool):
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_end(self, args, state, control, **kwargs):
            _sync(device)
            self.times.append(time.perf_counter())

    clock = Clock()
    _trl_trainer(model, tokenizer, pool, a, device, precompute, clock).train()
    W, N = a.warmup, a.steps
    assert len(clock.times) == W + N, clock.times
    return clock.times[-1] - clock.times[W - 1], N * a.batch


def run_paired_trl(model_trl, model_ours, tokenizer, pool, a, device) -> dict:
    """TRL (precompute_ref_log_probs=True) and ours in one process, alternating step by step on the
    same batch k, each on its own copy of the model: both see the same load at the same moment.
    TRL step k = from the end of our step k-1 to TRL's on_step_end k (its data loading, optimizer
    and bookkeeping included); our step k = what our step k takes inside that callback."""
    from transformers import TrainerCallback

    ours = _Ours(model_ours, tokenizer, pool, a, device)

    class PairClock(TrainerCallback):
        def __init__(self):
            self.trl, self.ours, self.last = [], [], None

        def on_step_end(self, args, state, control, **kwargs):
            _sync(device)
            t = time.perf_counter()
            if self.last is not None:
                self.trl.append(t - self.last)        # TRL step global_step-1 (from step 1 on)
            ours.step(state.global_step - 1)          # our step on the same batch
            self.last = time.perf_counter()
            self.ours.append(self.last - t)

    clock = PairClock()
    _trl_trainer(model_trl, tokenizer, pool, a, device, True, clock).train()
    # clock.trl[i] is TRL step i+1, clock.ours[j] our step j: keep steps W .. W+N-1 of both
    W = max(a.warmup, 1)
    trl_t, ours_t = clock.trl[W - 1:], clock.ours[W:]
    assert len(trl_t) == len(ours_t) == a.steps, (len(trl_t), len(ours_t))
    return {"trl_step_s": trl_t, "ours_step_s": ours_t,
            "step_ratios": [t / o for t, o in zip(trl_t, ours_t)],
            "ratio": sum(trl_t) / sum(ours_t),          # ours ÷ TRL throughput
            "pairs_per_s": len(ours_t) * a.batch / sum(ours_t),
            "trl_pairs_per_s": len(trl_t) * a.batch / sum(trl_t), "pairs": len(ours_t) * a.batch}


def run_fedcentral(model, tokenizer, pool, a, device, which: str):
    import torch

    from theory_lab.algorithms import make_algorithm
    from theory_lab.communicator import InProcessCommunicator

    b, K, W = a.batch, a.clients, a.warmup
    per = a.pairs_per_client
    clients = [pool[i * per:(i + 1) * per] for i in range(K)]
    heldout = [[p] for p in pool[K * per:K * per + K]]
    rounds = max(1, math.ceil(a.steps / K))        # FedDPO rounds timed: K·b pairs each
    if which == "fed":
        oracle = _oracle(model, tokenizer, clients, heldout, device)
        alg = make_algorithm(_alg_cfg("feddpo", b), oracle, InProcessCommunicator(), torch.Generator().manual_seed(0), 10**6)
        n_rounds, pairs = rounds, rounds * K * b
    else:
        oracle = _oracle(model, tokenizer, [[p for c in clients for p in c]], [[h[0] for h in heldout]], device)
        alg = make_algorithm(_alg_cfg("centralized", b), oracle, InProcessCommunicator(), torch.Generator().manual_seed(0), 10**6)
        n_rounds, pairs = rounds * K, rounds * K * b   # the same number of b-pair gradient steps
    gen = torch.Generator().manual_seed(1)
    X0 = oracle.init_params()
    for _ in range(W):                               # warm-up: plain oracle steps (not alg rounds)
        oracle.grad(X0.unsqueeze(1), torch.zeros(1, 1, dtype=torch.long), oracle.sample_batch(gen, b))
    _sync(device)
    t0 = time.perf_counter()
    for r in range(n_rounds):
        alg.round(r)
    _sync(device)
    return time.perf_counter() - t0, pairs


def run_paired_fed(model, tokenizer, pool, a, device) -> dict:
    """FedDPO (10-client oracle) and Centralized (one-client oracle, pooled pairs) on one shared LoRA
    model in one process (each oracle loads its own parameters before every forward), alternating
    one FedDPO round (K·b pairs) with K centralized steps (K·b pairs), the order swapped each round."""
    import torch

    from llm.model import add_lora
    from theory_lab.algorithms import make_algorithm
    from theory_lab.communicator import InProcessCommunicator

    b, K, W = a.batch, a.clients, a.warmup
    per = a.pairs_per_client
    clients = [pool[i * per:(i + 1) * per] for i in range(K)]
    heldout = [[p] for p in pool[K * per:K * per + K]]
    peft = add_lora(model, LORA["r"], LORA["alpha"], LORA["dropout"], LORA["targets"], seed=0)
    fo = _oracle(peft, tokenizer, clients, heldout, device, lora=False)
    co = _oracle(peft, tokenizer, [[p for c in clients for p in c]], [[h[0] for h in heldout]], device, lora=False)
    fed = make_algorithm(_alg_cfg("feddpo", b), fo, InProcessCommunicator(), torch.Generator().manual_seed(0), 10**6)
    cen = make_algorithm(_alg_cfg("centralized", b), co, InProcessCommunicator(), torch.Generator().manual_seed(0), 10**6)
    gen = torch.Generator().manual_seed(1)
    for _ in range(W):
        fo.grad(fo.init_params().unsqueeze(1), torch.zeros(1, 1, dtype=torch.long), fo.sample_batch(gen, b))
    rounds = max(2, math.ceil(a.steps / K))
    fed_t, cen_t = [], []
    for r in range(rounds):
        for which in (("fed", "cen") if r % 2 == 0 else ("cen", "fed")):
            _sync(device)
            t0 = time.perf_counter()
            if which == "fed":
                fed.round(r)
            else:
                for j in range(K):
                    cen.round(r * K + j)
            _sync(device)
            (fed_t if which == "fed" else cen_t).append(time.perf_counter() - t0)
    return {"fed_round_s": fed_t, "central_K_steps_s": cen_t,
            "block_overheads": [f / c - 1 for f, c in zip(fed_t, cen_t)],
            "overhead": sum(fed_t) / sum(cen_t) - 1,
            "pairs_per_s": rounds * K * b / sum(fed_t), "central_pairs_per_s": rounds * K * b / sum(cen_t),
            "pairs": rounds * K * b}


def worker(a) -> dict:
    import torch

    global MAX_LEN, MAX_PROMPT
    MAX_LEN, MAX_PROMPT = a.max_length, a.max_prompt_length
    torch.set_num_threads(a.threads)
    EXECUTION.update(prefix_sharing=a.prefix_sharing, gradient_checkpointing=a.gradient_checkpointing)
    from llm.model import load_model, resolve_device

    device = resolve_device(a.device)
    if a.logits_path:
        import llm.dpo

        llm.dpo.PLAIN_HEAD = ()
    t0 = time.perf_counter()
    model, tokenizer = load_model(a.model, "auto", device)
    load_s = time.perf_counter() - t0
    if a.compile != "off":   # the transformer body; compiled at its first calls (the warm-up steps)
        body = getattr(model, model.base_model_prefix)
        body.forward = torch.compile(body.forward, mode=None if a.compile == "default" else a.compile, dynamic=False)
    flops_per_pair = _model_flops_per_pair(model)
    peak = _matmul_peak(device, next(model.parameters()).dtype)
    n_clients = int(a.worker.rsplit("-", 1)[1]) if a.worker.startswith(CLIENT_CONFIGS) else 0
    if a.worker == "paired-clients":
        n_clients = max(int(n) for n in a.client_counts.split(","))
    need = max((a.warmup + a.steps) * a.batch * max(n_clients, 1), a.clients * a.pairs_per_client + a.clients) + 1
    pool = _pool(tokenizer, need, a.data)
    rss_load = _status_kb("VmRSS")
    reset_ok = _reset_peak()
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    paired = None
    if a.worker == "paired-trl":
        model_ours, _ = load_model(a.model, "auto", device)
        paired = run_paired_trl(model, model_ours, tokenizer, pool, a, device)
    elif a.worker == "paired-fed":
        paired = run_paired_fed(model, tokenizer, pool, a, device)
    elif a.worker == "paired-clients":
        paired = run_paired_clients(model, tokenizer, pool, a, device)
    elif a.worker == "paired-head":
        paired = run_paired_head(model, tokenizer, pool, a, device)
    elif a.worker == "ours":
        elapsed, pairs = run_ours(model, tokenizer, pool, a, device)
    elif a.worker == "floor":
        elapsed, pairs = run_floor(model, tokenizer, pool, a, device)
    elif n_clients:
        elapsed, pairs = run_clients(model, tokenizer, pool, a, device, a.worker.rsplit("-", 1)[0], n_clients)
    elif a.worker.startswith("trl"):
        elapsed, pairs = run_trl(model, tokenizer, pool, a, device, precompute=a.worker == "trl-precompute")
    else:
        elapsed, pairs = run_fedcentral(model, tokenizer, pool, a, device, a.worker)
    total_s = time.perf_counter() - t1
    if paired is not None:   # timing only: its memory mixes two set-ups
        return {"config": a.worker, "model": a.model, "device": str(device), "threads": a.threads,
                "load_s": load_s, "setup_and_run_s": total_s, "peak_rss_mb": _status_kb("VmHWM") / 1024,
                "rss_after_load_mb": rss_load / 1024, **paired}
    res = {
        "config": a.worker, "model": a.model, "device": str(device), "threads": a.threads,
        "pairs": pairs, "seconds": elapsed, "pairs_per_s": pairs / elapsed,
        "tokens_per_s": pairs * 2 * MAX_LEN / elapsed, "ms_per_pair": 1e3 * elapsed / pairs,
        "load_s": load_s, "setup_and_run_s": total_s,
        "rss_after_load_mb": rss_load / 1024,
        "peak_rss_mb": _status_kb("VmHWM") / 1024 if reset_ok else None,   # since the reset: setup + training
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,   # process lifetime
        "tflops": pairs * flops_per_pair / elapsed / 1e12, "matmul_peak_tflops": peak / 1e12,
        "mfu": pairs * flops_per_pair / elapsed / peak, "flops_per_pair": flops_per_pair,
    }
    if str(device).startswith("cuda"):
        res["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return res


# ----------------------------------------------------------------------------- parent

def _run_worker(config: str, a) -> dict:
    batch = a.trl_batch if "trl" in config and a.trl_batch else a.batch
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", config, "--model", a.model,
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch", str(batch),
           "--clients", str(a.clients), "--pairs-per-client", str(a.pairs_per_client),
           "--threads", str(a.threads), "--device", a.device, "--data", a.data,
           "--max-length", str(a.max_length), "--max-prompt-length", str(a.max_prompt_length),
           "--client-counts", a.client_counts, "--prefix-sharing", a.prefix_sharing, "--compile", a.compile,
           *(["--logits-path"] if a.logits_path else []),
           *(["--gradient-checkpointing"] if a.gradient_checkpointing else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TQDM_DISABLE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    load0 = os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    load1 = os.getloadavg()[0]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"worker {config} failed (exit {proc.returncode})")
    res = json.loads(lines[-1][len("RESULT "):])
    res["loadavg_1min"] = [load0, load1]
    return res


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def summarize(runs: list[list[dict]], a) -> tuple[str, dict]:
    by = {c: [rep[c] for rep in runs if c in rep] for c in a.configs}
    by = {c: rs for c, rs in by.items() if len(rs) == len(runs)}
    paired = {c: by.pop(c) for c in PAIRED if c in by}
    med = {c: {k: _median([r.get(k) for r in rs]) for k in ("pairs_per_s", "tokens_per_s", "ms_per_pair",
                                                               "peak_rss_mb", "maxrss_mb", "rss_after_load_mb",
                                                               "tflops", "mfu", "cuda_peak_mb", "matmul_peak_tflops")}
           for c, rs in by.items() if rs}
    lines = ["| configuration | pairs/s | tokens/s | ms/pair | TFLOP/s | MFU | peak RSS, setup+training (MB) | "
             "process max RSS (MB) | RSS after load (MB) | CUDA peak (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c, m in med.items():
        lines.append(f"| {c} | {m['pairs_per_s']:.3g} | {m['tokens_per_s']:.4g} | {m['ms_per_pair']:.4g} | "
                     f"{m['tflops']:.3g} | {100 * m['mfu']:.2g}% | {m['peak_rss_mb']:.0f} | {m['maxrss_mb']:.0f} | "
                     f"{m['rss_after_load_mb']:.0f} | {m['cuda_peak_mb']:.0f} |")
    peaks = [m["matmul_peak_tflops"] for m in med.values()]
    lines.append(f"\nmatmul peak measured by the workers (model dtype): median {_median(peaks):.3g} TFLOP/s")
    ratios = {}

    spread = {}

    def per_repeat(f):
        vals = [f(rep) for rep in runs]
        spread[f] = (min(vals), max(vals))
        return _median(vals)

    lines += ["", "| ratio (per repeat: median [min–max]) | value | target |", "|---|---|---|"]

    def row(label, f, fmt, target, key):
        v = per_repeat(f)
        lo, hi = spread[f]
        ratios[key] = v
        ratios[key + "_range"] = [lo, hi]
        lines.append(f"| {label} | {fmt(v)} [{fmt(lo)} – {fmt(hi)}] | {target} |")

    times, pct, mb = (lambda v: f"{v:.2f}×"), (lambda v: f"{100 * v:+.1f}%"), (lambda v: f"{v:+.0f} MB")
    for trl in ("trl-precompute", "trl-per-step"):
        if "ours" in by and trl in by:
            row(f"ours ÷ {trl}, throughput", lambda rep, t=trl: rep["ours"]["pairs_per_s"] / rep[t]["pairs_per_s"],
                times, "≥ 1.5×", f"ours_over_{trl}")
            row(f"ours − {trl}, peak RSS", lambda rep, t=trl: rep["ours"]["peak_rss_mb"] - rep[t]["peak_rss_mb"],
                mb, "≤ 0", f"ours_minus_{trl}_peak_mb")
    if "floor" in by and "trl-precompute" in by:
        row("floor ÷ trl-precompute, throughput (body over full rows: bound for a step without prefix sharing)",
            lambda rep: rep["floor"]["pairs_per_s"] / rep["trl-precompute"]["pairs_per_s"], times, "—",
            "floor_over_trl-precompute")
    if "floor" in by and "ours" in by:
        row("ours ÷ floor, throughput", lambda rep: rep["ours"]["pairs_per_s"] / rep["floor"]["pairs_per_s"],
            times, "—", "ours_over_floor")
    for c in by:
        if c.startswith("batched-"):
            n = c.split("-")[1]
            for other, label in ((f"seq-{n}", "sequential clients"), (f"onebatch-{n}", "one batch (floor)")):
                if other in by:
                    row(f"batched ÷ {label}, N = {n}, throughput",
                        lambda rep, c=c, o=other: rep[c]["pairs_per_s"] / rep[o]["pairs_per_s"], times,
                        "≥ 0.75× (floor)" if "onebatch" in other else "—", f"{c}_over_{other}")
    if "fed" in by and "central" in by:
        row(f"fed ({a.clients} clients) ÷ central, time per pair − 1",
            lambda rep: rep["fed"]["ms_per_pair"] / rep["central"]["ms_per_pair"] - 1, pct, "≤ +5%", "fed_overhead")
        row("fed − central, peak RSS", lambda rep: rep["fed"]["peak_rss_mb"] - rep["central"]["peak_rss_mb"],
            mb, "order of LoRA + optimizer state", "fed_minus_central_peak_mb")
    if "paired-trl" in paired:
        row("paired, one process step by step: ours ÷ trl-precompute, throughput",
            lambda rep: rep["paired-trl"]["ratio"], times, "≥ 1.5×", "paired_ours_over_trl-precompute")
        steps = [x for r in paired["paired-trl"] for x in r["step_ratios"]]
        lines.append(f"| (paired: per-step ratios, all repeats) | median {_median(steps):.2f}× "
                     f"[{min(steps):.2f}× – {max(steps):.2f}×], {len(steps)} steps | |")
    if "paired-head" in paired:
        row("paired, one process step by step: chunked LM head ÷ full-vocabulary logits, gradient throughput",
            lambda rep: rep["paired-head"]["chunked_over_logits"], times, "≥ 1× (no slower)", "paired_chunked_over_logits")
    if "paired-clients" in paired:
        n = paired["paired-clients"][0]["clients"]
        row(f"paired, one process step by step: batched ÷ sequential clients, N = {n}, throughput",
            lambda rep: rep["paired-clients"]["batched_over_seq"], times, "—", "paired_batched_over_seq")
        row(f"paired, one process step by step: batched ÷ one batch (floor), N = {n}, throughput",
            lambda rep: rep["paired-clients"]["batched_over_onebatch"], times, "≥ 0.75×", "paired_batched_over_onebatch")
    if "paired-fed" in paired:
        row(f"paired, one process round by round: fed ({a.clients} clients) ÷ central, time per pair − 1",
            lambda rep: rep["paired-fed"]["overhead"], pct, "≤ +5%", "paired_fed_overhead")
        blocks = [x for r in paired["paired-fed"] for x in r["block_overheads"]]
        lines.append(f"| (paired: per-round overheads, all repeats) | median {100 * _median(blocks):+.1f}% "
                     f"[{100 * min(blocks):+.1f}% – {100 * max(blocks):+.1f}%], {len(blocks)} rounds | |")
    return "\n".join(lines), {"medians": med, "ratios": ratios}


def main(argv=None) -> None:
    global MAX_LEN
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny",
                   choices=["tiny", "smollm2", "arch:smollm2-135m", "arch:smollm2-360m", "arch:smollm2-1.7b"])
    p.add_argument("--data", default="auto", choices=["auto", "hh-rlhf", "random"],
                   help="auto: random token pairs for arch: models, hh-rlhf otherwise")
    p.add_argument("--max-length", type=int, default=MAX_LEN)
    p.add_argument("--max-prompt-length", type=int, default=MAX_PROMPT)
    p.add_argument("--client-counts", default="1,8,32", help="N for the seq-N, batched-N, onebatch-N configurations")
    p.add_argument("--trl-batch", type=int, default=None, help="pairs per step of the TRL configurations (default --batch)")
    p.add_argument("--logits-path", action="store_true",
                   help="log-probs from full-vocabulary logits (llm.dpo.PLAIN_HEAD emptied): the memory before the chunked head")
    p.add_argument("--prefix-sharing", default="auto", choices=["auto", "on", "off"],
                   help="llm.prefix_sharing of every oracle (auto: on the CPU only)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="llm.gradient_checkpointing: layers recompute their activations in the backward")
    p.add_argument("--compile", default="off", choices=["off", "default", "reduce-overhead", "max-autotune"],
                   help="torch.compile the transformer body (reduce-overhead: CUDA graphs); static shapes need "
                        "--data random (full rows); more --warmup steps absorb the compilation")
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps (FedDPO: ceil(steps/clients) rounds)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=4, help="pairs per step (per client-step for fed)")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--pairs-per-client", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (1 is steadiest on shared cores)")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--from-json", default=None, help="print the tables of a saved --json file and exit")
    a = p.parse_args(argv)
    if a.from_json:
        saved = json.loads(Path(a.from_json).read_text())
        a.configs, a.clients = saved["args"]["configs"], saved["args"]["clients"]
        print(saved["header"] + "\n\n" + summarize(saved["runs"], a)[0])
        return
    if a.data == "auto":
        a.data = "random" if a.model.startswith("arch:") else "hh-rlhf"
    MAX_LEN = a.max_length   # the header's and the tokens/s count's length
    if a.worker:
        print("RESULT " + json.dumps(worker(a)), flush=True)
        return
    a.configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = set(a.configs) - set(CONFIGS)
    if unknown:
        p.error(f"unknown configs {sorted(unknown)}")
    counts = [int(n) for n in a.client_counts.split(",")]
    expanded = []
    for c in a.configs:   # "clients" = seq, batched, onebatch; each of those = one worker per N
        names = CLIENT_CONFIGS if c == "clients" else (c,)
        expanded += [f"{n}-{k}" for k in counts for n in names] if c in ("clients", *CLIENT_CONFIGS) else [c]
    a.configs = list(dict.fromkeys(expanded))
    import importlib.util
    if not all(importlib.util.find_spec(m) for m in ("trl", "datasets")):
        dropped = [c for c in a.configs if "trl" in c]
        a.configs = [c for c in a.configs if "trl" not in c]
        if dropped:
            print(f"TRL is not installed (.venv/bin/pip install trl): skipping {', '.join(dropped)}", file=sys.stderr)
        if not a.configs:
            raise SystemExit("nothing left to run")
    runs = []
    for rep in range(a.repeats):
        order = a.configs if rep % 2 == 0 else a.configs[::-1]   # alternate the order: no config always runs first
        results = {}
        for c in order:
            results[c] = r = _run_worker(c, a)
            print(f"repeat {rep}: {c:15s} {r['pairs_per_s']:8.3g} pairs/s  peak {r['peak_rss_mb']:.0f} MB  "
                  f"load {r['loadavg_1min'][0]:.2f}->{r['loadavg_1min'][1]:.2f}", file=sys.stderr, flush=True)
        runs.append(results)
    table, summary = summarize(runs, a)
    import torch
    header = (f"model {a.model}, batch {a.batch} pairs, max_length {MAX_LEN}, steps {a.steps} after {a.warmup} warm-up, "
              f"compile {a.compile}, "
              f"{a.repeats} repeats, torch threads {a.threads}, device {runs[0][a.configs[0]]['device']}, "
              f"torch {torch.__version__}, {platform.processor() or platform.machine()} nproc {os.cpu_count()}, "
              f"load average during runs {min(min(r['loadavg_1min']) for rep in runs for r in rep.values()):.2f}–"
              f"{max(max(r['loadavg_1min']) for rep in runs for r in rep.values()):.2f}")
    print(header + "\n\n" + table)
    if a.json:
        Path(a.json).write_text(json.dumps({"args": {k: v for k, v in vars(a).items() if k != "worker"},
                                            "header": header, "runs": runs, **summary}, indent=1))


if __name__ == "__main__":
    main()
