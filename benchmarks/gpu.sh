#!/usr/bin/env bash
# Every GPU figure of docs/benchmarks.md ("GPU figures: to be measured") in one run, with nothing to
# download: seeded random models of the SmolLM2 architectures, random token pairs. For a lent GPU:
#   bash benchmarks/gpu.sh [OUT_DIR]          # JSON per part in OUT_DIR (default: $OUT or runs/gpu)
# Uses the python on PATH (the device machine's own: torch, transformers, peft; TRL optional).
# Parts run from the cheapest; a part that fails is reported and the next one runs.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # the project importable without installing it
out="${1:-${OUT:-runs/gpu}}"
mkdir -p "$out"
step() { echo "== $1 ($(date +%T))"; shift; python benchmarks/llm_step.py --device "${DEVICE:-cuda}" "$@" || echo "== failed: exit $?"; }
common=(--max-length 256 --max-prompt-length 128 --steps 8 --warmup 2 --repeats 1)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
step "135M: clients as a tensor dimension, N = 1, 8, 32 x 4 pairs" --model arch:smollm2-135m "${common[@]}" \
    --batch 4 --configs clients,paired-clients --json "$out/clients_135m.json"
step "135M: one client against TRL (b = 8)" --model arch:smollm2-135m "${common[@]}" --batch 8 \
    --configs ours,trl-precompute,paired-trl --json "$out/trl_135m.json"
for gc in "" --gradient-checkpointing; do
  step "135M: memory of 128 pairs in one forward/backward ${gc:-plain}" --model arch:smollm2-135m \
      --max-length 256 --max-prompt-length 128 --steps 2 --warmup 1 --repeats 1 --prefix-sharing off $gc \
      --configs onebatch --client-counts 32 --batch 4 --json "$out/memory_135m${gc:+_gc}.json"
done
step "1.7B: batched clients, MFU" --model arch:smollm2-1.7b "${common[@]}" --batch 4 --client-counts 1,8,16 \
    --configs clients --json "$out/clients_1.7b.json"
# ragged pairs are the point of packing and static shapes: HH-RLHF where the data are beside the
# checkout, else seeded random pairs of random lengths (benchmarks/llm_packing.py random_pairs)
data=random; [ -d "${DDPO_DATA_DIR:-../shared/data}/hh-rlhf" ] && data=hh-rlhf
packing() { echo "== $1 ($(date +%T))"; shift
  python benchmarks/llm_packing.py --model arch:smollm2-135m --device "${DEVICE:-cuda}" --dataset $data --batch 32 "$@" \
      || echo "== failed: exit $?"; }
packing "packed and static shapes against padded full rows, $data, L = 256" --steps 6 \
    > "$out/packing_135m.txt" 2>&1; tail -8 "$out/packing_135m.txt"
for mode in off reduce-overhead; do   # last: compiling takes minutes; random full rows keep shapes static
  step "135M: torch.compile of the body, $mode (CUDA graphs)" --model arch:smollm2-135m "${common[@]}" --warmup 4 \
      --batch 4 --client-counts 32 --configs ours,batched --compile $mode --json "$out/compile_135m_$mode.json"
done
# ragged rows under CUDA graphs: one graph per shape, so what static shapes save is compilations
packing "CUDA graphs on ragged rows: padded, packed, static shapes, $data" --steps 24 \
    --arms padded,packed,static --compile reduce-overhead > "$out/static_shapes_135m.txt" 2>&1
tail -10 "$out/static_shapes_135m.txt"
echo "== done ($(date +%T)): $out"
