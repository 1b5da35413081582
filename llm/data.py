"""Preference data of the LLM track: loaders, per-client train/held-out pairs, tokenization.

Files are read in place from the data directory (`llm.data_dir`, else $DDPO_DATA_DIR, else
../shared/data); nothing is copied or downloaded. Specs: "hh-rlhf", "imdb-cad", "pandalm",
"ultrafeedback" (a split may be named: "imdb-cad:train|dev|test", "ultrafeedback:train|eval"; the
bare name pools every split, and `client_data` draws its own disjoint train/held-out sets),
"jsonl:PATH" and "hf:ID[:SPLIT]". Every loader drops pairs whose chosen and rejected responses are
identical (no preference signal; a tie would also count as a held-out miss) and logs what it skipped.

Our choices, per data set:
- hh-rlhf: prompt = the shared transcript up to and including the last "\\n\\nAssistant:"; pairs whose
  transcripts differ before it are skipped. group = topic cluster of the first Human turn.
- imdb-cad: the first row of each batch_id is the original review (checked against the upstream
  sentiment/orig files); group = its sentiment ("orig-positive" / "orig-negative"). prompt = the
  shared word prefix; when one text is a prefix of the other the prompt gives back its last word so
  both responses keep words; with no shared prefix the prompt is the neutral NO_PREFIX_PROMPT.
- pandalm: majority of three annotators, ties (0 or no majority) dropped; group = "label-1" /
  "label-2" (which of the compared models won). JSON booleans as responses (6 items) become "True".
- ultrafeedback, jsonl, hf: group = the record's "group" field if present, else a topic cluster.

Topic clusters (`topic_clusters`): hashed bag of words (crc32, so stable across runs) with tf-idf,
projected on its top principal directions and normalised, then k-means (scipy kmeans2, k-means++,
fixed seed). Computed over a whole data set, so a pair's group does not depend on the split asked.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import importlib.util
import json
import logging
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from scipy.cluster.vq import kmeans2

from llm.config import DATA_DIR_ENV, DATASETS, LLMConfig
from llm.partition import opposed_clients, partition, preference_conflict
from theory_lab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ASSISTANT = "\n\nAssistant:"
NO_PREFIX_PROMPT = "Movie review:"
N_TOPICS = 8
SPLITS = {"imdb-cad": ("train", "dev", "test"), "ultrafeedback": ("train", "eval")}


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    source: str   # data set name
    group: str    # label or topic cluster: what the Dirichlet partition skews over


# ---------------------------------------------------------------------------------------- loading

def load_pairs(spec: str, data_dir: Path) -> list[PreferencePair]:
    """The pairs of one data set spec (see the module docstring)."""
    data_dir = Path(data_dir)
    if spec.startswith("jsonl:"):
        return _load_jsonl(_user_file(spec[len("jsonl:"):], data_dir), spec)
    if spec.startswith("hf:"):
        return _load_hf(spec)
    name, _, split = spec.partition(":")
    if name not in DATASETS:
        raise ConfigError("llm.dataset", f"unknown data set {spec!r}; known: {', '.join(DATASETS)}, jsonl:PATH, hf:ID")
    if split and split not in SPLITS.get(name, ()):
        raise ConfigError("llm.dataset", f"{name} has no split {split!r}; splits: {', '.join(SPLITS.get(name, ())) or 'none'}")
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} not found: set llm.data_dir (or ${DATA_DIR_ENV}) to the "
                        "folder holding hh-rlhf/, imdb-cad/, pandalm/, ultrafeedback/")
    return [p for s, p in _load_builtin(name, data_dir) if not split or s == split]


@functools.lru_cache(maxsize=8)   # the shared data are read-only; sweeps and tests reload them often
def _load_builtin(name: str, data_dir: Path) -> tuple[tuple[str, PreferencePair], ...]:
    return tuple(_LOADERS[name](data_dir))


def _data_file(data_dir: Path, rel: str) -> Path:
    path = data_dir / rel
    if not path.is_file():
        raise DataError(f"{path}: file not found (data directory from llm.data_dir / ${DATA_DIR_ENV}: {data_dir})")
    return path


def _user_file(name: str, data_dir: Path) -> Path:
    path = Path(name).expanduser()
    for candidate in ([path] if path.is_absolute() else [data_dir / path, path]):
        if candidate.is_file():
            return candidate
    raise DataError(f"{name}: file not found (a relative jsonl: path is looked up in the data directory "
                    f"{data_dir}, set by llm.data_dir / ${DATA_DIR_ENV}, then in the current directory)")


def _jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """(\"file:line\", record) for each non-blank line."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
                if not isinstance(rec, dict):
                    raise DataError(f"{path}:{n}: expected a JSON object, got {type(rec).__name__}")
                yield f"{path}:{n}", rec
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None


def _need(rec: dict, key: str, where: str):
    if key not in rec:
        raise DataError(f"{where}: missing key '{key}'")
    return rec[key]


def _keep(pairs: list[tuple[str, PreferencePair]], name: str, skipped: Counter) -> list[tuple[str, PreferencePair]]:
    """Drop pairs with identical responses (no preference signal) and log every skip count."""
    kept = [(s, p) for s, p in pairs if p.chosen != p.rejected]
    if len(kept) < len(pairs):
        skipped["chosen == rejected"] += len(pairs) - len(kept)
    said = ", ".join(f"{n} ({why})" for why, n in skipped.items())
    if not kept:
        raise DataError(f"{name}: no usable preference pairs" + (f": all skipped, {said}" if said else " (empty)"))
    if skipped:
        log.info("%s: %d pairs; skipped %s", name, len(kept), said)
    return kept


def _split_transcript(text: str, where: str) -> tuple[str, str]:
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise DataError(f"{where}: transcript has no '\\n\\nAssistant:' turn")
    cut += len(ASSISTANT)
    return text[:cut], text[cut:]


def _load_hh(data_dir: Path) -> list[tuple[str, PreferencePair]]:
    path = _data_file(data_dir, "hh-rlhf/harmless-base/test.jsonl.gz")
    rows, skipped = [], Counter()
    for where, rec in _jsonl(path):
        prompt, chosen = _split_transcript(_text(_need(rec, "chosen", where), "chosen", where), where)
        prompt_r, rejected = _split_transcript(_text(_need(rec, "rejected", where), "rejected", where), where)
        if prompt != prompt_r:
            skipped["transcripts differ before the last Assistant turn"] += 1
            continue
        rows.append((prompt, chosen, rejected))
    first_turns = [p.split(ASSISTANT, 1)[0].replace("Human:", " ") for p, _, _ in rows]
    groups = topic_clusters(first_turns)
    pairs = [("test", PreferencePair(p, c, r, "hh-rlhf", g)) for (p, c, r), g in zip(rows, groups)]
    return _keep(pairs, "hh-rlhf", skipped)


def _load_imdb(data_dir: Path) -> list[tuple[str, PreferencePair]]:
    pairs, skipped = [], Counter()
    for split in SPLITS["imdb-cad"]:
        path = _data_file(data_dir, f"imdb-cad/{split}_paired.tsv")
        batches: dict[str, list[tuple[int, str, str]]] = {}
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t")
            if next(reader, None) != ["Sentiment", "Text", "batch_id"]:
                raise DataError(f"{path}:1: expected the header Sentiment, Text, batch_id")
            for row in reader:
                if len(row) != 3 or row[0] not in ("Positive", "Negative"):
                    raise DataError(f"{path}:{reader.line_num}: expected Positive|Negative, text, batch_id")
                batches.setdefault(row[2], []).append((reader.line_num, row[0], row[1]))
        for batch_id, rows in batches.items():
            texts = {sentiment: _clean_review(text) for _, sentiment, text in rows}
            if len(rows) != 2 or len(texts) != 2:
                raise DataError(f"{path}:{rows[0][0]}: batch_id {batch_id} needs one Positive and one Negative review")
            prompt, chosen, rejected = _shared_prefix(texts["Positive"], texts["Negative"])
            pairs.append((split, PreferencePair(prompt, chosen, rejected, "imdb-cad", f"orig-{rows[0][1].lower()}")))
    return _keep(pairs, "imdb-cad", skipped)


def _clean_review(text: str) -> str:
    return re.sub(r"(?:<br\s*/?>?)+", "\n", text).strip()   # a few tags lack their ">"


def _shared_prefix(pos: str, neg: str) -> tuple[str, str, str]:
    """(prompt, positive continuation, negative continuation); continuations keep their leading
    whitespace so that the prompt/response boundary falls between words."""
    a, b = re.findall(r"\s*\S+", pos), re.findall(r"\s*\S+", neg)
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    if k == min(len(a), len(b)) and a != b:
        k -= 1          # one review is a prefix of the other: give a word back so both respond
    if k <= 0:
        return NO_PREFIX_PROMPT, pos, neg
    return "".join(a[:k]), "".join(a[k:]), "".join(b[k:])


def _load_pandalm(data_dir: Path) -> list[tuple[str, PreferencePair]]:
    path = _data_file(data_dir, "pandalm/testset-v1.json")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON array of comparisons")
    pairs, skipped = [], Counter()
    for i, item in enumerate(items):
        where = f"{path}: item {i}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected a JSON object")
        label, votes = Counter(_need(item, f"annotator{k}", where) for k in (1, 2, 3)).most_common(1)[0]
        if votes < 2 or label == 0:
            skipped["tie"] += 1
            continue
        if label not in (1, 2):
            raise DataError(f"{where}: annotator labels must be 0, 1 or 2, got {label!r}")
        instruction, extra = _text(_need(item, "instruction", where), "instruction", where), item.get("input") or ""
        prompt = instruction + ("\n" + _text(extra, "input", where) if extra else "")
        r1, r2 = (_text(_need(item, k, where), k, where) for k in ("response1", "response2"))
        chosen, rejected = (r1, r2) if label == 1 else (r2, r1)
        pairs.append(("test", PreferencePair(prompt, chosen, rejected, "pandalm", f"label-{label}")))
    return _keep(pairs, "pandalm", skipped)


def _load_ultrafeedback(data_dir: Path) -> list[tuple[str, PreferencePair]]:
    records = [(split, where, rec) for split in SPLITS["ultrafeedback"]
               for where, rec in _jsonl(_data_file(data_dir, f"ultrafeedback/{split}_clean.jsonl"))]
    return _keep(_records_to_pairs(records, "ultrafeedback"), "ultrafeedback", Counter())


def _load_jsonl(path: Path, spec: str) -> list[PreferencePair]:
    records = [("", where, rec) for where, rec in _jsonl(path)]
    return [p for _, p in _keep(_records_to_pairs(records, spec), spec, Counter())]


def _load_hf(spec: str) -> list[PreferencePair]:
    if importlib.util.find_spec("datasets") is None:
        raise DataError(f"{spec}: Hugging Face data sets need the `datasets` package (pip install datasets) "
                        "and a network connection; offline, use a built-in data set or jsonl:PATH")
    import datasets   # lazy: an optional dependency, needed only for Hugging Face data sets

    name, split = spec[3:], "train"
    if name.count(":") == 1:
        name, split = name.split(":")
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:   # network, unknown id, unknown split: one line for the user
        raise DataError(f"{spec}: cannot load ({type(e).__name__}: {e})") from None
    records = [("", f"{spec} row {i}", dict(rec)) for i, rec in enumerate(ds)]
    return [p for _, p in _keep(_records_to_pairs(records, spec), spec, Counter())]


def _records_to_pairs(records: list[tuple[str, str, dict]], source: str) -> list[tuple[str, PreferencePair]]:
    """Records with prompt/chosen/rejected (strings or {role, content} message lists), or hh-style
    transcripts without a prompt. group = the record's "group" if given, else a topic cluster."""
    rows = []
    for split, where, rec in records:
        chosen, rejected = _need(rec, "chosen", where), _need(rec, "rejected", where)
        if "prompt" in rec:
            prompt = rec["prompt"]
            prompt = _render(prompt, where) if isinstance(prompt, list) else _text(prompt, "prompt", where)
        elif isinstance(chosen, list):
            prompt = _render(chosen[:-1], where)
        elif isinstance(chosen, str) and ASSISTANT in chosen:
            prompt, chosen = _split_transcript(chosen, where)
            prompt_r, rejected = _split_transcript(_text(rejected, "rejected", where), where)
            if prompt != prompt_r:
                raise DataError(f"{where}: chosen and rejected transcripts differ before the last Assistant turn")
        else:
            raise DataError(f"{where}: missing key 'prompt'")
        rows.append((split, prompt, _response(chosen, "chosen", where), _response(rejected, "rejected", where),
                     rec.get("group")))
    clusters = topic_clusters([r[1] for r in rows]) if any(r[4] is None for r in rows) else []
    return [(split, PreferencePair(p, c, r, source, str(g) if g is not None else clusters[i]))
            for i, (split, p, c, r, g) in enumerate(rows)]


def _text(value, key: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):   # e.g. pandalm's bare `true` answers
        return str(value)
    raise DataError(f"{where}: '{key}' must be a string, got {type(value).__name__}")


def _response(value, key: str, where: str) -> str:
    """A response: a string, or a message list whose last message is the assistant's."""
    if isinstance(value, list):
        if not value or not all(isinstance(m, dict) and "content" in m for m in value):
            raise DataError(f"{where}: '{key}' must be a string or a non-empty list of {{role, content}} messages")
        if value[-1].get("role", "assistant") != "assistant":
            raise DataError(f"{where}: the last message of '{key}' must be the assistant's")
        return _text(value[-1]["content"], key, where)
    return _text(value, key, where)


def _render(messages: list, where: str) -> str:
    """Messages as an hh-style transcript ending with the Assistant cue."""
    names = {"user": "Human", "assistant": "Assistant", "system": "System"}
    parts = []
    for m in messages:
        if not isinstance(m, dict) or "content" not in m:
            raise DataError(f"{where}: messages must be {{role, content}} objects")
        parts.append(f"\n\n{names.get(m.get('role', 'user'), 'Human')}: {_text(m['content'], 'content', where)}")
    return "".join(parts) + ASSISTANT


_LOADERS = {"hh-rlhf": _load_hh, "imdb-cad": _load_imdb, "pandalm": _load_pandalm, "ultrafeedback": _load_ultrafeedback}


@contextlib.contextmanager
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def topic_clusters(texts: Sequence[str], k: int = N_TOPICS, dim: int = 512, rank: int = 32) -> list[str]:
    """Deterministic cheap topic labels "topic-j" (see the module docstring)."""
    k = min(k, len(texts) // 20)   # about 20 texts per cluster at least, else one topic
    if k < 2:
        return ["topic-0"] * len(texts)
    X = np.zeros((len(texts), dim))
    for i, text in enumerate(texts):
        for word in re.findall(r"[a-z]{3,}", text.lower()):
            if word not in _STOPWORDS:
                X[i, zlib.crc32(word.encode()) % dim] += 1
    idf = np.log((1 + len(texts)) / (1 + (X > 0).sum(0))) + 1
    # Integer features (tf-idf on a 1/256 grid) make the Gram matrix exact whatever the summation
    # order, so BLAS threading cannot change it; the eigenvectors and the projection run on one
    # thread, and the projection is rounded: the same texts give the same topics on 1 or 2 threads
    # (k-means amplifies last-bit differences into different partitions).
    X = np.rint(np.log1p(X) * idf * 256)
    # the top principal directions (eigh of the small dim x dim Gram) merge co-occurring words, so
    # k-means finds topics instead of one giant cluster of short texts; torch's eigh, because
    # multithreaded OpenBLAS next to torch's thread pool can take seconds on this 512 x 512 matrix
    with _one_torch_thread():
        V = torch.linalg.eigh(torch.from_numpy(X.T @ X)).eigenvectors.flip(-1)[:, :rank]
        V = V * V[V.abs().argmax(0), torch.arange(V.shape[1])].sign()   # a fixed sign per direction
        Z = (torch.from_numpy(X) @ V).numpy()
    Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    Z = np.round(Z, 6)
    if not Z.any():
        return ["topic-0"] * len(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "one of the clusters is empty" is harmless here
        _, labels = kmeans2(Z, k, iter=50, minit="++", seed=np.random.default_rng(0))
    return [f"topic-{j}" for j in labels]


_STOPWORDS = frozenset(
    "the and you for that what are can how with this have your not but was all any they there from about "
    "would like some just know want does get his her him she one out why who when which will them their been "
    "our more make think tell should could where into help its also very than then other these those way over "
    "only need give take use using did doing well after before much many most find write following human".split())


# ------------------------------------------------------------------------------------ per client

def client_data(cfg: LLMConfig) -> tuple[list[list[PreferencePair]], list[list[PreferencePair]]]:
    """(train, held-out) pairs per client: pairs_per_client and heldout_per_client each, disjoint,
    both random draws from the client's own distribution (its share of the partition)."""
    cfg.validate()
    data_dir = cfg.resolved_data_dir()
    per_client = cfg.pairs_per_client + cfg.heldout_per_client
    if cfg.partition == "natural":   # client i: data set i (cross-domain)
        clients = []
        for i, spec in enumerate(cfg.datasets):
            pool = load_pairs(spec, data_dir)
            if len(pool) < per_client:
                raise ConfigError("llm.pairs_per_client", f"client {i} needs {per_client} pairs (train + held-out) "
                                  f"but {spec} has {len(pool)}")
            clients.append(partition(pool, 1, "iid", sizes=per_client, seed=(cfg.seed, i))[0])
    else:   # several data sets without the natural partition are pooled, groups kept apart
        pool = [p for spec in (cfg.datasets or [cfg.dataset]) for p in load_pairs(spec, data_dir)]
        clients = partition(pool, cfg.n_clients, cfg.partition, alpha=cfg.dirichlet_alpha,
                            sizes=per_client, seed=cfg.seed)
    n = cfg.pairs_per_client
    train, heldout = [c[:n] for c in clients], [c[n:] for c in clients]
    if cfg.conflict:   # preference conflict: the same pairs, some clients' labels reversed (train and held-out)
        opposed = opposed_clients(len(clients), cfg.seed)
        train = preference_conflict(train, cfg.conflict, opposed, (cfg.seed, 0))
        heldout = preference_conflict(heldout, cfg.conflict, opposed, (cfg.seed, 1))
    return train, heldout


def data_summary(cfg: LLMConfig) -> dict:
    """What the manifest records of the client data beyond the config: the clients whose
    preferences the conflict knob reverses (empty without conflict)."""
    return {"opposed_clients": opposed_clients(cfg.n_clients, cfg.seed)} if cfg.conflict else {}


# ---------------------------------------------------------------------------------- tokenization

@dataclass
class TokenizedPairs:
    """Chosen rows 0..n-1, then rejected rows n..2n-1, so a pair's two responses share one forward."""
    input_ids: torch.Tensor        # [2n, T] long, right-padded
    attention_mask: torch.Tensor   # [2n, T] long
    response_mask: torch.Tensor    # [2n, T] bool: True exactly on response tokens
    n_pairs: int

    def to(self, device) -> TokenizedPairs:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if torch.is_tensor(getattr(self, f.name))})


def tokenize_pairs(pairs: Sequence[PreferencePair], tokenizer, max_length: int, max_prompt_length: int,
                   *, add_eos: bool = True) -> TokenizedPairs:
    """Prompt and response are tokenized separately, so the boundary is exact. The prompt keeps its
    last max_prompt_length tokens (the end, nearest the response; a BOS stays first); the response
    is cut from the right to fit max_length. As TRL does, EOS ends each response (so an empty
    response is just EOS, and the model learns when to stop); a cut response loses it first.
    A newline joins prompt and response when neither side has whitespace at the boundary, so that
    words do not fuse; it counts as prompt. An empty prompt without BOS gets the BOS (or EOS) token
    as context, so that the first response token is scored too."""
    if not 0 < max_prompt_length < max_length:
        raise ConfigError("llm.max_prompt_length", f"must be in (0, max_length={max_length}), got {max_prompt_length}")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    pad = eos if pad is None else pad
    if pad is None:
        raise DataError("the tokenizer has neither a pad nor an eos token")
    bos = _bos(tokenizer)
    joined = [p.prompt + ("\n" if _needs_separator(p) else "") for p in pairs]

    def encode(texts: list[str]) -> list[list[int]]:
        return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    prompts, room = encode(joined), max_prompt_length - len(bos)
    rows = []
    for side in ("chosen", "rejected"):
        for i, (prompt, response) in enumerate(zip(prompts, encode([getattr(p, side) for p in pairs]))):
            prompt = bos + prompt[max(len(prompt) - room, 0):]   # keep the end of the prompt
            if not prompt:
                prompt = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos]
            response = (response + ([eos] if add_eos and eos is not None else []))[:max_length - len(prompt)]
            if not response:
                raise DataError(f"{pairs[i].source} pair {i}: the {side} response has no tokens")
            rows.append((prompt, response))
    T = max((len(p) + len(r) for p, r in rows), default=0)
    input_ids = torch.full((len(rows), T), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), T), dtype=torch.long)
    response_mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for row, (prompt, response) in enumerate(rows):
        n_p, n = len(prompt), len(prompt) + len(response)
        input_ids[row, :n] = torch.tensor(prompt + response)
        attention_mask[row, :n] = 1
        response_mask[row, n_p:n] = True
    return TokenizedPairs(input_ids, attention_mask, response_mask, len(pairs))


def _needs_separator(p: PreferencePair) -> bool:
    starts_blank = [r[:1].isspace() for r in (p.chosen, p.rejected) if r]
    return bool(p.prompt) and not p.prompt[-1].isspace() and not any(starts_blank)


def _bos(tokenizer) -> list[int]:
    """[bos] when the tokenizer's own special-token policy prepends it, else []."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    return [bos] if with_special[:1] == [bos] and tokenizer("a", add_special_tokens=False)["input_ids"][:1] != [bos] else []


def select(tp: TokenizedPairs, idx: torch.Tensor) -> TokenizedPairs:
    """Pairs `idx` (chosen and rejected rows stay aligned); columns that are padding in every
    selected row are dropped (right padding makes that a plain slice)."""
    idx = torch.as_tensor(idx, dtype=torch.long, device=tp.input_ids.device).reshape(-1)
    rows = torch.cat([idx, idx + tp.n_pairs])
    attention = tp.attention_mask[rows]
    T = int(attention.sum(1).max()) if len(rows) else 0
    return TokenizedPairs(tp.input_ids[rows, :T], attention[:, :T], tp.response_mask[rows, :T], len(idx))
