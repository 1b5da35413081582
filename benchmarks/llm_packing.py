"""Packed rows against padded full rows (and prefix sharing), paired on the same batches.

One SmolLM2 LoRA model, HH-RLHF pairs at their natural lengths (nothing filtered: padding is the
point), one client; per step, in rotating order, oracle.grad on the same b pairs with full rows
padded (llm.packing = false), full rows packed (true) and prefix sharing (the CPU default). Prints
the padding fraction of the padded forwards and the per-step time ratios.

    .venv/bin/python benchmarks/llm_packing.py --max-length 256 --max-prompt-length 128 --batch 4 --steps 6
    python benchmarks/llm_packing.py --model arch:smollm2-135m --device cuda --batch 32   # a GPU, no weights
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from llm.data import client_data, tokenize_pairs
from llm.model import add_lora, load_model
from llm.oracle import LLMOracle
from theory_lab.config import build_config

ARMS = {"padded": dict(prefix_sharing="off", packing=False), "packed": dict(prefix_sharing="off", packing=True),
        "prefix-shared": dict(prefix_sharing="on")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--dataset", default="hh-rlhf")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--max-prompt-length", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--clients", type=int, default=1, help="N clients, b pairs each per step")
    p.add_argument("--client-batching", default="off", choices=["off", "on"],
                   help="on: the N clients' rows in one forward (packed client by client: llm.batched)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (a GPU: bf16 model, prefix sharing measured too)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = build_config({"track": "llm"}, [f'llm.dataset="{a.dataset}"', f"llm.n_clients={a.clients}",
                                          f"llm.pairs_per_client={a.batch * (a.steps + 1)}", "llm.heldout_per_client=1",
                                          f"llm.max_length={a.max_length}", f"llm.max_prompt_length={a.max_prompt_length}"]).llm
    train, held = client_data(cfg)
    base, tokenizer = load_model(a.model, "auto", a.device)
    model = add_lora(base, 8, 16.0, 0.0, ["q_proj", "v_proj"], seed=0)
    sets = [tokenize_pairs(t, tokenizer, a.max_length, a.max_prompt_length) for t in train]
    heldout = [tokenize_pairs(h, tokenizer, a.max_length, a.max_prompt_length) for h in held]
    oracles = {name: LLMOracle(model, sets, heldout, 0.2, eval_batch_size=a.batch, device=a.device,
                               client_batching=a.client_batching, max_rows_per_forward=2 * a.clients * a.batch, **kw)
               for name, kw in ARMS.items()}
    X = oracles["padded"].init_params().unsqueeze(1).repeat(1, a.clients, 1)
    X = X + 1e-3 * torch.randn(X.shape, generator=torch.Generator().manual_seed(0), dtype=X.dtype)
    times = {name: [] for name in ARMS}
    pad = used = 0
    for step in range(a.steps + 1):
        idx = torch.arange(step * a.batch, (step + 1) * a.batch)
        masks = [tp.attention_mask[torch.cat([idx, idx + tp.n_pairs])] for tp in sets]
        T = max(int(m.any(0).nonzero().max()) + 1 for m in masks)                # one padded forward of all
        used_now = sum(int(m.sum()) for m in masks)
        pad, used = pad + sum(m.shape[0] for m in masks) * T - used_now, used + used_now
        names = list(ARMS)[step % 3:] + list(ARMS)[:step % 3]           # rotate the order
        grads = {}
        for name in names:
            t = time.perf_counter()
            grads[name] = oracles[name].grad(X, None, idx.view(1, 1, -1).expand(1, a.clients, -1))
            if a.device != "cpu":
                torch.cuda.synchronize()
            if step:                                                   # step 0 warms up
                times[name].append(time.perf_counter() - t)
        for name in names:   # the same gradient every way, up to float32 / bf16 rounding (float64 exactness: the tests)
            cos = torch.nn.functional.cosine_similarity(grads[name].double().flatten(), grads["padded"].double().flatten(), 0)
            assert cos > 0.999, (name, float(cos))
    print(f"{a.model}, {a.dataset}, L = {a.max_length} (prompt {a.max_prompt_length}), {a.clients} client(s) x "
          f"b = {a.batch}, client batching {a.client_batching}, {a.steps} steps after 1 warm-up, {a.threads} thread(s)")
    print(f"padding: {pad / (pad + used):.3f} of the tokens the padded forwards run"
          + (" (all clients' rows in one forward)" if a.clients > 1 else ""))
    for name in ARMS:
        print(f"{name:14s} {statistics.median(times[name]):7.2f} s/step (median), {sum(times[name]):7.1f} s in all")
    for name in ("packed", "prefix-shared"):
        ratios = [p / q for p, q in zip(times["padded"], times[name])]
        print(f"padded / {name}: {sum(times['padded']) / sum(times[name]):.2f}x "
              f"(per step median {statistics.median(ratios):.2f}x, {min(ratios):.2f}-{max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
