"""FedPDPO on tiny random Llamas: personal parameters never leave the client, each ablation switch
really removes its module, the explicit reward head learns, the personalised objective's shared
gradient matches finite differences, and the shipped configs are valid."""

import dataclasses
import types
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from llm.data import TokenizedPairs  # noqa: E402
from llm.dpo import sequence_logps  # noqa: E402
from llm.fedpdpo import FedPDPOOracle, build_fedpdpo_oracle  # noqa: E402
from llm.model import add_lora, set_trainable_vector, tiny_llama, trainable_parameters  # noqa: E402
from llm.oracle import LLMOracle  # noqa: E402
from llm.personal import PersonalConfig  # noqa: E402
from theory_lab.algorithms import make_algorithm  # noqa: E402
from theory_lab.communicator import InProcessCommunicator  # noqa: E402
from theory_lab.config import AlgorithmConfig, from_dict, read_toml  # noqa: E402
from theory_lab.errors import ConfigError  # noqa: E402
from theory_lab.sweep import grid_points  # noqa: E402
from theory_lab.topology import TopologyConfig, make_topology  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 32
A, B, MARKER = 5, 6, 4   # toy preference: chosen responses end with A, rejected with B
MODULES = {"bottleneck": ("down", "up", "gate"), "personal_head": ("head_A", "head_B"), "reward_head": ("reward",)}


def make_pairs(gen, n, T=12, toy=False):
    """n right-padded pairs: prompt (2-4 tokens) then a response (random, or a shared body ending
    with MARKER then A for chosen / B for rejected)."""
    ids = torch.full((2 * n, T), 2, dtype=torch.long)
    att = torch.zeros(2 * n, T, dtype=torch.long)
    resp = torch.zeros(2 * n, T, dtype=torch.bool)

    def rand(k):
        return torch.randint(7, VOCAB, (k,), generator=gen)

    for j in range(n):
        prompt = rand(int(torch.randint(2, 5, (1,), generator=gen)))
        body = torch.cat([rand(int(torch.randint(1, 5, (1,), generator=gen))), torch.tensor([MARKER])])
        for row, last in ((j, A), (n + j, B)):
            response = torch.cat([body, torch.tensor([last])]) if toy else rand(int(torch.randint(2, 7, (1,), generator=gen)))
            seq = torch.cat([prompt, response])
            ids[row, : len(seq)], att[row, : len(seq)] = seq, 1
            resp[row, len(prompt): len(seq)] = True
    return TokenizedPairs(ids, att, resp, n)


def _rms_norm_in_input_dtype(self, x):
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def lora_model(dtype):
    base = tiny_llama(VOCAB, dtype, seed=3)
    if dtype == torch.float64:   # HF's RMSNorm computes in float32: normalise in float64 for FD checks
        for mod in base.modules():
            if type(mod).__name__ == "LlamaRMSNorm":
                mod.forward = types.MethodType(_rms_norm_in_input_dtype, mod)
    return add_lora(base, r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0)


def make_oracle(personal=None, dtype=torch.float32, sizes=(6, 4, 5), heldout=4, toy=False, plain=False, **kw):
    gen = torch.Generator().manual_seed(11)
    train = [make_pairs(gen, n, toy=toy) for n in sizes]
    held = [make_pairs(gen, heldout, toy=toy) for _ in sizes]
    if plain:
        return LLMOracle(lora_model(dtype), train, held, 0.5, "sigmoid", 4, "cpu")
    personal = personal or PersonalConfig(enabled=True, **kw)
    return FedPDPOOracle(lora_model(dtype), train, held, 0.5, personal, "sigmoid", 4, "cpu", seed=0)


def run_rounds(oracle, rounds=1, name="feddpo", **kw):
    cfg = AlgorithmConfig(name=name, **{"local_steps": 2, "batch_size": 2, "lr": 0.05, "optimizer": "adamw", **kw})
    cfg.validate()
    topology = make_topology(TopologyConfig(name="complete"), oracle.n_clients) if cfg.decentralized else None
    alg = make_algorithm(cfg, oracle, InProcessCommunicator(), torch.Generator().manual_seed(0), rounds, topology)
    infos = [alg.round(r) for r in range(rounds)]
    return alg, infos


# ----------------------------------------------------------------------------- what is communicated

def test_personal_parameters_never_leave_the_client():
    o = make_oracle(lr=0.05)
    n_lora = sum(p.numel() for p in trainable_parameters(o.model))
    assert o.dim == o.lora_dim == n_lora and o.init_params().shape == (1, n_lora)
    assert o.personal.shape == (3, o.modules.dim) and o.modules.dim > 0
    assert set(o.modules.module_sizes()) == {"bottleneck", "personal_head", "reward_head"}
    start = o.personal.clone()
    alg, infos = run_rounds(o, rounds=1)
    # the aggregated state and the bytes on the wire are the LoRA vector only
    assert alg.server.shape == (1, n_lora) and alg.client_params().shape == (1, 3, n_lora)
    assert infos[0].comm_bytes == 2 * 3 * n_lora * o.init_params().element_size()
    assert (alg.server - o.init_params()).abs().max() > 0               # the shared adapter moved
    # every client's personal vector moved, and the three differ from each other
    assert all((o.personal[i] - start[i]).abs().max() > 0 for i in range(3))
    for i in range(3):
        for j in range(i + 1, 3):
            assert (o.personal[i] - o.personal[j]).abs().max() > 1e-4
    # the optimizer touched each client exactly E = 2 times
    assert o.state_dict()["0.count"].tolist() == [2, 2, 2]


def test_partial_participation_steps_only_the_participants():
    o = make_oracle(lr=0.05)
    start = o.personal.clone()
    run_rounds(o, rounds=1, participation=1)
    moved = [bool((o.personal[i] - start[i]).abs().max() > 0) for i in range(3)]
    assert sum(moved) == 1 and o.state_dict()["0.count"].sum() == 2


@pytest.mark.parametrize("algorithm", ["feddpo", "decdpo"])
def test_local_only_shares_nothing(algorithm):
    """share_lora = false: each client's LoRA is personal, the stack is empty (P = 0), so any
    algorithm only schedules local steps and sends 0 bytes."""
    o = make_oracle(share_lora=False, personal_head=False, reward_head=False, bottleneck=False, lr=0.05)
    assert o.dim == 0 and o.init_params().shape == (1, 0)
    assert set(o.modules.module_sizes()) == {"lora"} and o.modules.dim == o.lora_dim
    alg, infos = run_rounds(o, rounds=2, name=algorithm)
    assert all(i.comm_bytes == 0 for i in infos)
    loras = o.personal
    assert (loras[0] - loras[1]).abs().max() > 1e-4 and (loras[0] - o._theta0).abs().max() > 0
    m = o.evaluate(alg.model())
    assert torch.isnan(m["grad_norm_sq"]).all() and torch.isfinite(m["train_loss"]).all()


# ----------------------------------------------------------------------------- exactness

def test_all_modules_off_is_the_plain_oracle():
    """Shared LoRA, no personal module: the same gradients and metrics as LLMOracle."""
    o = make_oracle(personal_head=False, reward_head=False, bottleneck=False)
    plain = make_oracle(plain=True)
    assert o.modules.dim == 0
    g = torch.Generator().manual_seed(1)
    theta = o.init_params() + 0.3 * torch.randn(o.init_params().shape, generator=g)
    X = theta.unsqueeze(1).expand(-1, 3, -1)
    batch = o.sample_batch(torch.Generator().manual_seed(2), 3)
    torch.testing.assert_close(o.grad(X, None, batch), plain.grad(X, None, batch), rtol=1e-4, atol=1e-6)
    mo, mp = o.evaluate(theta), plain.evaluate(theta)
    for key in ("train_loss", "eval_pref_acc", "reward_margin", "grad_norm_sq", "eval_pref_acc_client1"):
        torch.testing.assert_close(mo[key], mp[key], rtol=1e-4, atol=1e-6)


def test_policy_starts_at_the_reference():
    o = make_oracle()
    for i in range(3):
        implicit, explicit = o._client_margins(o.init_params()[0], i)
        assert implicit.abs().max() < 1e-5 and explicit.abs().max() == 0
    m = o.evaluate(o.init_params())
    assert float(m["train_loss"]) == pytest.approx(2 * 0.6931, abs=1e-3)   # DPO log 2 + γ BT log 2
    # the reference itself: every margin is exactly 0 (policy and reference log-probs are one
    # computation), so its accuracy measures nothing and is NaN (llm.dpo.preference_accuracy)
    assert torch.isnan(m["eval_pref_acc"]).all()


def test_shared_gradient_matches_finite_differences():
    """float64, every module on and perturbed off its initialisation: the gradient with respect
    to the shared adapter of the personalised objective (personal params frozen)."""
    o = make_oracle(dtype=torch.float64)
    gen = torch.Generator().manual_seed(5)
    o.personal += 0.1 * torch.randn(o.personal.shape, generator=gen, dtype=torch.float64)
    X = (o.init_params() + 0.3 * torch.randn(o.init_params().shape, generator=gen, dtype=torch.float64))
    X = X.unsqueeze(1).expand(-1, 3, -1).clone()
    batch = o.sample_batch(torch.Generator().manual_seed(4), 3)
    before = o.personal.clone()
    G = o.grad(X, None, batch)
    assert torch.equal(o.personal, before)                     # grad is pure: no personal step
    V = torch.randn(X.shape, generator=gen, dtype=X.dtype)
    V = V / V.norm(dim=-1, keepdim=True)
    eps = 1e-5
    fd = (o.loss(X + eps * V, None, batch) - o.loss(X - eps * V, None, batch)) / (2 * eps)
    torch.testing.assert_close((G * V).sum(-1), fd, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(o.local_step(X, None, batch), G, rtol=1e-9, atol=1e-14)   # same gradient ...
    assert not torch.equal(o.personal, before)                 # ... and then the personal step


# ----------------------------------------------------------------------------- ablations

@pytest.mark.parametrize("module", list(MODULES))
def test_ablation_switch_removes_its_module(module):
    full = make_oracle(lr=0.05)
    ablated = make_oracle(lr=0.05, **{module: False})
    # its parameters do not exist
    sizes_full, sizes_abl = full.modules.module_sizes(), ablated.modules.module_sizes()
    assert module in sizes_full and module not in sizes_abl
    assert ablated.modules.dim == full.modules.dim - sizes_full[module]
    assert not set(MODULES[module]) & set(ablated.modules.layout)
    # its output is the identity: the full model with that module's output zeroed (Up = 0, B = 0,
    # w = 0) equals the ablated model with the same other blocks
    gen = torch.Generator().manual_seed(7)
    vec = torch.randn(full.modules.dim, generator=gen) * 0.2
    zero = {"bottleneck": "up", "personal_head": "head_B", "reward_head": "reward"}[module]
    vec[full.modules.layout[zero][0]] = 0
    full.personal[:] = vec
    for name, (sl, _) in ablated.modules.layout.items():
        ablated.personal[:, sl] = vec[full.modules.layout[name][0]]
    theta = full.init_params() + 0.2 * torch.randn(full.init_params().shape, generator=gen)
    mf, ma = full.evaluate(theta), ablated.evaluate(theta)
    torch.testing.assert_close(mf["eval_pref_acc_implicit"], ma["eval_pref_acc_implicit"])
    if module != "reward_head":
        torch.testing.assert_close(mf["reward_margin"], ma["reward_margin"], rtol=1e-5, atol=1e-6)
    # and the result changes against the full model once trained
    fresh_full, fresh_abl = make_oracle(lr=0.05), make_oracle(lr=0.05, **{module: False})
    alg_f, _ = run_rounds(fresh_full, rounds=1)
    alg_a, _ = run_rounds(fresh_abl, rounds=1)
    assert (alg_f.model() - alg_a.model()).abs().max() > 1e-6   # the shared adapter learns differently
    ef, ea = fresh_full.evaluate(alg_f.model()), fresh_abl.evaluate(alg_a.model())
    assert float((ef["reward_margin"] - ea["reward_margin"]).abs()) > 1e-6
    assert ("eval_pref_acc_explicit" in ea) == (module != "reward_head")


# ----------------------------------------------------------------------------- the reward head

def test_explicit_reward_head_bt_loss_decreases_on_a_toy_set():
    """Chosen responses end with A, rejected with B: the reward head (alone, on the frozen shared
    adapter) drives its Bradley–Terry loss down and ranks the held-out pairs."""
    o = make_oracle(sizes=(16, 16), heldout=8, toy=True, personal_head=False, bottleneck=False,
                    reward_weight=0.0, lr=0.05)
    theta = o.init_params()
    X = theta.unsqueeze(1).expand(-1, 2, -1)
    before = [o.bt_loss(theta, i) for i in range(2)]
    assert before == pytest.approx([0.6931] * 2, abs=1e-3)    # w = 0
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        o.local_step(X, None, o.sample_batch(gen, 8))   # the training step: the personal modules move
    after = [o.bt_loss(theta, i) for i in range(2)]
    assert all(a < 0.5 * b for a, b in zip(after, before)), (before, after)
    m = o.evaluate(theta)
    assert float(m["eval_pref_acc_explicit"]) >= 0.9
    # λ = 0: the prediction is the implicit margin (here exactly 0: the adapter did not move, so NaN both)
    torch.testing.assert_close(m["eval_pref_acc"], m["eval_pref_acc_implicit"], rtol=0, atol=0, equal_nan=True)


# ----------------------------------------------------------------------------- configs and files

def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"llm\.personal\.reward_pool"):
        PersonalConfig(reward_pool="max").validate()
    with pytest.raises(ConfigError, match=r"llm\.personal\.head_rank"):
        PersonalConfig(head_rank=0).validate()
    with pytest.raises(ConfigError, match=r"llm\.personal\.lr"):
        PersonalConfig(lr=0.0).validate()


@pytest.mark.parametrize("path", sorted((ROOT / "configs/fedpdpo").glob("*.toml")), ids=lambda p: p.stem)
def test_every_fedpdpo_config_is_valid_at_every_grid_point(path):
    from llm.config import LLMConfig
    from theory_lab.config import build_config

    data = read_toml(path)
    points = grid_points(data)
    variants = {p.get("llm.personal.variant", p.get("algorithm.name")) for p in points}
    assert {"fedpdpo", "fedpdpo-no-head", "fedpdpo-no-reward", "fedpdpo-no-bottleneck", "local-dpo",
            "feddpo", "fedprox", "scaffold"} <= variants
    for point in points:
        personal = dict(data["llm"].get("personal", {}))
        personal.update({k.split(".")[-1]: v for k, v in point.items() if k.startswith("llm.personal.")})
        from_dict(PersonalConfig, personal, "llm.personal.").validate()
        if "personal" in {f.name for f in dataclasses.fields(LLMConfig)}:   # once LLMConfig has the section
            overrides = [f"{k}={v!r}".replace("'", '"').replace("True", "true").replace("False", "false")
                         for k, v in point.items()]
            cfg = build_config(data, overrides)
            assert cfg.track == "llm"


def test_build_from_config_and_save(tmp_path):
    import json

    from safetensors import safe_open

    from llm.config import LLMConfig

    with open(tmp_path / "pairs.jsonl", "w") as f:
        for i in range(12):
            f.write(json.dumps({"prompt": f"Question {i}: say yes?", "chosen": " yes" * (1 + i % 3),
                                "rejected": f" no {i}", "group": f"g{i % 2}"}) + "\n")
    cfg = LLMConfig(model="tiny", data_dir=str(tmp_path), dataset="jsonl:pairs.jsonl", n_clients=2,
                    pairs_per_client=4, heldout_per_client=2, max_length=24, max_prompt_length=12,
                    lora_r=2, eval_batch_size=3, dtype="float32", device="cpu")
    o = build_fedpdpo_oracle(cfg, PersonalConfig(enabled=True, head_rank=2, bottleneck_dim=4))
    assert o.n_clients == 2 and o.personal.shape == (2, o.modules.dim)
    theta = o.init_params()
    m = o.evaluate(theta)
    assert {"eval_pref_acc", "eval_pref_acc_implicit", "eval_pref_acc_explicit", "eval_pref_acc_client1"} <= set(m)
    o.save_adapter(theta, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    with safe_open(str(tmp_path / "adapter" / "personal.safetensors"), "pt") as f:
        assert set(f.keys()) == {"client0", "client1"}
        assert set(json.loads(f.metadata()["layout"])) == set(o.modules.layout)
    state = {k: v.clone() for k, v in o.state_dict().items()}
    o.personal.add_(1.0)
    o.load_state_dict(state)
    assert torch.equal(o.personal, state["personal"])


def test_forward_matches_sequence_logps_with_modules_at_identity():
    """Our forward (backbone, modules, head) is llm.dpo.sequence_logps when the modules are the
    identity, with the adapters active and non-zero."""
    o = make_oracle()
    theta = o.init_params()[0] + 0.3 * torch.randn(o.lora_dim, generator=torch.Generator().manual_seed(3))
    set_trainable_vector(o.model, theta)
    tp = o.train[0]
    idx = torch.arange(tp.n_pairs)
    with torch.no_grad():
        c, r, _ = o._forward(tp, idx, o._blocks(0))
        ref = sequence_logps(o.model, tp.input_ids, tp.attention_mask, tp.response_mask)
    torch.testing.assert_close(torch.cat([c, r]), ref, rtol=1e-5, atol=1e-5)


def test_estimating_constants_leaves_the_personal_modules_unchanged():
    """`theory-lab constants` on FedPDPO: the estimator calls grad hundreds of times; a pure grad
    means it measures one fixed objective (the personal modules do not train under it)."""
    from theory_lab.estimate import estimate_constants

    o = make_oracle()
    before = o.personal.clone()
    estimate_constants(o, batch_size=2, draws=4, power_iters=5, descent_steps=5)
    assert torch.equal(o.personal, before)
    run_rounds(o, rounds=1)                                    # while training moves them
    assert not torch.equal(o.personal, before)
