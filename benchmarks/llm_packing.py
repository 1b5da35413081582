"""Packed rows against padded full rows (and prefix sharing, static shapes), paired on the same batches.

One SmolLM2 LoRA model, HH-RLHF pairs at their natural lengths (nothing filtered: padding is the
point), one client; per step, in rotating order, oracle.grad on the same b pairs with full rows
padded (llm.packing = false), full rows packed (true), packed with static shapes
(llm.static_shapes) and prefix sharing (the CPU default). Prints the padding fraction of the
padded forwards, the per-step time ratios, and how many distinct shapes each arm's forwards took.
`--compile MODE` compiles the transformer body (shared by the arms; dynamic=False, so one graph
per shape) and splits each arm's time into steps that met a new shape (compilation) and steps
whose shapes were all compiled already (steady state): what decides whether static shapes pay.

    .venv/bin/python benchmarks/llm_packing.py --max-length 256 --max-prompt-length 128 --batch 4 --steps 6
    python benchmarks/llm_packing.py --model arch:smollm2-135m --device cuda --batch 32   # a GPU, no weights
    python benchmarks/llm_packing.py --model arch:smollm2-135m --device cuda --batch 32 --steps 24 \
        --arms padded,packed,static --compile reduce-overhead                            # CUDA graphs
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from llm.data import PreferencePair, client_data, tokenize_pairs
from llm.dpo import pack_window, response_window
from llm.model import add_lora, load_model
from llm.oracle import LLMOracle
from theory_lab.config import build_config

ARMS = {"padded": dict(prefix_sharing="off", packing=False), "packed": dict(prefix_sharing="off", packing=True),
        "static": dict(prefix_sharing="off", static_shapes=True), "prefix-shared": dict(prefix_sharing="on")}

WORDS = "the a model answer prefers short long helpful reply question because data client server round".split()


def random_pairs(n: int, seed: int, max_length: int) -> list[PreferencePair]:
    """Seeded pairs of random words at random lengths: ragged like real pairs, for a machine
    without the data (their content does not matter to speed). Sized for the byte tokenizer of
    the arch: models (~6 tokens a word): prompts up to half of max_length, responses up to 3/4."""
    g = random.Random(seed)

    def words(most):
        return " ".join(g.choice(WORDS) for _ in range(g.randint(1, max(1, most // 6))))

    return [PreferencePair(words(max_length // 2), words(3 * max_length // 4), words(3 * max_length // 4), "random", "0")
            for _ in range(n)]


def count_shapes(tp, steps: int, batch: int, width: int) -> None:
    """Prints, per arm, the distinct shapes of the body's input over `steps` consecutive batches
    of one client's pairs tp, and the tokens it runs against padded rows: from the packing plans
    alone (llm.dpo.pack_window), no forward. `width`: the static shapes' (the widest row)."""
    shapes = {"padded": set(), "packed": set(), "static": set()}
    tokens = dict.fromkeys(shapes, 0)
    for step in range(steps):
        idx = torch.arange(step * batch, (step + 1) * batch)
        rows = [t[torch.cat([idx, idx + tp.n_pairs])] for t in (tp.input_ids, tp.attention_mask, tp.response_mask)]
        for name, plan in (("padded", response_window(*rows)[0]), ("packed", pack_window(*rows).input_ids),
                           ("static", pack_window(*rows, width=width).input_ids)):
            shapes[name].add(tuple(plan.shape))
            tokens[name] += plan.numel()
    for name in shapes:
        print(f"{name:8s} {len(shapes[name]):4d} distinct shapes in {steps} batches, "
              f"tokens run / padded {tokens[name] / tokens['padded']:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--dataset", default="hh-rlhf", help="a data set of llm.data, or random (random_pairs: no data needed)")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--max-prompt-length", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--clients", type=int, default=1, help="N clients, b pairs each per step")
    p.add_argument("--client-batching", default="off", choices=["off", "on"],
                   help="on: the N clients' rows in one forward (packed client by client: llm.batched)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (a GPU: bf16 model, prefix sharing measured too)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)} (padded first)")
    p.add_argument("--compile", default="off", choices=["off", "default", "reduce-overhead", "max-autotune"],
                   help="torch.compile the transformer body, one graph per shape (reduce-overhead: CUDA graphs)")
    p.add_argument("--shapes-only", action="store_true",
                   help="count each arm's distinct shapes and tokens over --steps batches from the plans alone (no forward)")
    a = p.parse_args()
    arms = a.arms.split(",")
    if arms[0] != "padded" or not set(arms) <= set(ARMS):
        raise SystemExit(f"--arms: padded first, then any of {', '.join(ARMS)}; got {a.arms!r}")
    torch.set_num_threads(a.threads)
    n_pairs = a.batch * (a.steps + 1)
    if a.dataset == "random":
        train = [random_pairs(n_pairs, i, a.max_length) for i in range(a.clients)]
        held = [random_pairs(1, -1 - i, a.max_length) for i in range(a.clients)]
    else:
        train, held = client_data(build_config({"track": "llm"}, [
            f'llm.dataset="{a.dataset}"', f"llm.n_clients={a.clients}", f"llm.pairs_per_client={n_pairs}",
            "llm.heldout_per_client=1", f"llm.max_length={a.max_length}",
            f"llm.max_prompt_length={a.max_prompt_length}"]).llm)
    base, tokenizer = load_model(a.model, "auto", a.device)
    sets = [tokenize_pairs(t, tokenizer, a.max_length, a.max_prompt_length) for t in train]
    heldout = [tokenize_pairs(h, tokenizer, a.max_length, a.max_prompt_length) for h in held]
    if a.shapes_only:
        print(f"{a.model}, {a.dataset}, L = {a.max_length} (prompt {a.max_prompt_length}), b = {a.batch}")
        return count_shapes(sets[0], a.steps, a.batch, max(tp.input_ids.shape[1] for tp in sets + heldout))
    model = add_lora(base, 8, 16.0, 0.0, ["q_proj", "v_proj"], seed=0)
    if a.compile != "off":
        body = base.model
        torch._dynamo.config.recompile_limit = 1024   # every arm compiles all its shapes (the default stops at 8)
        body.forward = torch.compile(body.forward, mode=None if a.compile == "default" else a.compile, dynamic=False)
    shape_log: list = []                             # (rows, width) of every forward of the body
    base.get_input_embeddings().register_forward_hook(lambda m, i, out: shape_log.append(tuple(i[0].shape)))
    oracles = {name: LLMOracle(model, sets, heldout, 0.2, eval_batch_size=a.batch, device=a.device,
                               client_batching=a.client_batching, max_rows_per_forward=2 * a.clients * a.batch, **kw)
               for name, kw in ARMS.items() if name in arms}
    X = oracles["padded"].init_params().unsqueeze(1).repeat(1, a.clients, 1)
    X = X + 1e-3 * torch.randn(X.shape, generator=torch.Generator().manual_seed(0), dtype=X.dtype)
    times = {name: [] for name in arms}
    shapes = {name: set() for name in arms}
    fresh = {name: [] for name in arms}     # per timed step: did it meet a shape this arm had not run yet
    pad = used = 0
    for step in range(a.steps + 1):
        idx = torch.arange(step * a.batch, (step + 1) * a.batch)
        masks = [tp.attention_mask[torch.cat([idx, idx + tp.n_pairs])] for tp in sets]
        T = max(int(m.any(0).nonzero().max()) + 1 for m in masks)                # one padded forward of all
        used_now = sum(int(m.sum()) for m in masks)
        pad, used = pad + sum(m.shape[0] for m in masks) * T - used_now, used + used_now
        names = arms[step % len(arms):] + arms[:step % len(arms)]           # rotate the order
        grads = {}
        for name in names:
            shape_log.clear()
            t = time.perf_counter()
            grads[name] = oracles[name].grad(X, None, idx.view(1, 1, -1).expand(1, a.clients, -1))
            if a.device != "cpu":
                torch.cuda.synchronize()
            new = not set(shape_log) <= shapes[name]
            shapes[name] |= set(shape_log)
            if step:                                                   # step 0 warms up
                times[name].append(time.perf_counter() - t)
                fresh[name].append(new)
        for name in names:   # the same gradient every way, up to float32 / bf16 rounding (float64 exactness: the tests)
            cos = torch.nn.functional.cosine_similarity(grads[name].double().flatten(), grads["padded"].double().flatten(), 0)
            assert cos > 0.999, (name, float(cos))
    print(f"{a.model}, {a.dataset}, L = {a.max_length} (prompt {a.max_prompt_length}), {a.clients} client(s) x "
          f"b = {a.batch}, client batching {a.client_batching}, {a.steps} steps after 1 warm-up, {a.threads} thread(s)")
    print(f"padding: {pad / (pad + used):.3f} of the tokens the padded forwards run"
          + (" (all clients' rows in one forward)" if a.clients > 1 else ""))
    for name in arms:
        print(f"{name:14s} {statistics.median(times[name]):7.2f} s/step (median), {sum(times[name]):7.1f} s in all, "
              f"{len(shapes[name])} distinct shapes")
        if a.compile != "off":
            steady = [t for t, new in zip(times[name], fresh[name]) if not new]
            print(f"{'':14s} compile {a.compile}: {sum(fresh[name])} steps met a new shape ({sum(times[name]) - sum(steady):.1f} s), "
                  f"{len(steady)} steady steps" + (f" at {statistics.median(steady):.3f} s/step (median)" if steady else ""))
    for name in arms[1:]:
        ratios = [p / q for p, q in zip(times["padded"], times[name])]
        print(f"padded / {name}: {sum(times['padded']) / sum(times[name]):.2f}x "
              f"(per step median {statistics.median(ratios):.2f}x, {min(ratios):.2f}-{max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
