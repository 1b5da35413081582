"""Packed rows: the tokens of a padded batch laid end to end in as few rows as fit, so the body
computes no padding.

A batch of DPO rows padded to its longest row is mostly padding at realistic lengths: 41% of the
tokens a forward runs for HH-RLHF at max length 256 (b = 4 pairs; 47% at b = 8; docs/benchmarks.md).
`pack_rows` places the rows, first-fit decreasing, into packed rows as wide as the longest one,
each sequence restarting its positions at 0; with no attention mask and those position ids,
transformers attends within each sequence only (a block-diagonal causal mask for sdpa and eager,
variable-length kernels for flash attention). `unpack` puts the body's hidden states back where
the padded batch had them (zeros at padding), so everything after the body is unchanged. Exact:
the same hidden states as the padded forward (tests/test_llm_packing.py).

Static shapes (`width`): every batch packs into rows of one fixed width, and the packed row count
is rounded up to a bucket (1, 2, 3, 4, 6, 8, 12, 16, ...: at most a third of the rows wasted), so
a run's forwards take a handful of shapes instead of one per batch: what torch.compile (no
recompilation) and CUDA graphs (one graph per shape) need. The added rows are padding only.

>>> import torch
>>> mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]])
>>> p = pack_rows(torch.arange(12).view(3, 4), mask)
>>> p.input_ids.tolist(), p.position_ids.tolist()   # rows 0 and 1 share a packed row
([[0, 1, 2, 4], [8, 9, 0, 0]], [[0, 1, 2, 0], [0, 1, 0, 1]])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Packed:
    input_ids: torch.Tensor      # [R, W] the packed rows (tails filled with pad_id)
    position_ids: torch.Tensor   # [R, W] 0.. within each sequence (a tail is a sequence of its own)
    source: torch.Tensor         # [n] flat index into the padded [rows, T] of each real token
    target: torch.Tensor         # [n] flat index into the packed [R, W] of the same token
    shape: tuple[int, int]       # (rows, T) of the padded batch
    rows_per_group: int          # packed rows of each group (groups laid out one after another)


def row_bucket(n: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (2^k and 3·2^(k-1)) that is >= n.

    >>> [row_bucket(n) for n in (1, 3, 5, 7, 9, 13, 17)]
    [1, 3, 6, 8, 12, 16, 24]
    """
    power = 1 << (n - 1).bit_length()          # the smallest power of two >= n
    return power * 3 // 4 if power >= 4 and power * 3 // 4 >= n else power


def pack_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int = 0,
              groups: list[int] | None = None, width: int | None = None) -> Packed:
    """The tokens where attention_mask is set, row by row in order, packed first-fit decreasing
    into rows of width T (the padded batch's, so that every row fits). `groups` (one id 0.. per
    row): rows pack only with rows of their group, and each group gets the same number of packed
    rows, laid out group after group (what client-batched adapters need: llm.batched). `width`
    (static shapes, >= T): rows of that width instead, and the packed rows per group rounded up
    to row_bucket's sizes."""
    rows, T = input_ids.shape
    if width is not None and width < T:
        raise ValueError(f"packed width {width} is narrower than the rows to pack ({T} columns)")
    W = T if width is None else width
    mask = attention_mask.bool()
    lengths = mask.sum(1).tolist()
    groups = groups if groups is not None else [0] * rows
    free: list[list[int]] = [[] for _ in range(max(groups) + 1)]   # room left in each packed row, per group
    where = [(0, 0)] * rows              # (packed row within its group, first column) of each row
    for i in sorted(range(rows), key=lambda i: -lengths[i]):
        bins = free[groups[i]]
        slot = next((b for b, room in enumerate(bins) if room >= lengths[i]), None)
        if slot is None:
            slot = len(bins)
            bins.append(W)
        where[i] = (slot, W - bins[slot])
        bins[slot] -= lengths[i]
    dev = input_ids.device
    per = max(len(bins) for bins in free)
    per = per if width is None else row_bucket(per)
    R = per * len(free)
    room = [bins[s] if s < len(bins) else W for bins in free for s in range(per)]   # empty rows: all room
    r, c = mask.nonzero(as_tuple=True)                                   # real tokens, row-major
    rank = mask.long().cumsum(1)[r, c] - 1                               # their position in their row
    start = torch.tensor([(g * per + s, c) for g, (s, c) in zip(groups, where)], dtype=torch.long,
                         device=dev).view(rows, 2)
    target = start[r, 0] * W + start[r, 1] + rank
    ids = torch.full((R * W,), pad_id, dtype=input_ids.dtype, device=dev).index_put_((target,), input_ids[r, c])
    # positions: 0.. within each sequence; the free tail of a packed row counts 0.. as its own sequence
    pos = torch.arange(R * W, device=dev) % W
    first = torch.zeros(R * W, dtype=torch.long, device=dev)
    used = torch.tensor(lengths, device=dev) > 0
    first[(start[:, 0] * W + start[:, 1])[used]] = 1                      # where each sequence starts
    tails = [b * W + W - left for b, left in enumerate(room) if left]
    first[torch.tensor(tails, dtype=torch.long, device=dev)] = 1
    first.view(R, W)[:, 0] = 1
    seq = first.cumsum(0) - 1                                             # sequence number of every slot
    seq_start = pos[first.nonzero().squeeze(1)]                           # its first column
    return Packed(ids.view(R, W), (pos - seq_start[seq]).view(R, W), r * T + c, target, (rows, T), per)


def unpack(h: torch.Tensor, packed: Packed) -> torch.Tensor:
    """[rows, T, ...] from the packed rows' outputs h [R, W, ...]: each real token's output where
    the padded batch had the token, zeros at padding."""
    rows, T = packed.shape
    flat = h.reshape(-1, *h.shape[2:])
    out = flat.new_zeros(rows * T, *h.shape[2:])
    return out.index_copy(0, packed.source, flat[packed.target]).view(rows, T, *h.shape[2:])
