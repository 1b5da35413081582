"""The algorithms, written once: equivalences, exact averaging, drift and its corrections."""

import numpy as np
import pytest
import torch

from theory_lab.communicator import InProcessCommunicator
from theory_lab.config import AlgorithmConfig, build_config
from theory_lab.optim import Optimizer
from theory_lab.runner import run
from theory_lab.topology import TopologyConfig, make_topology

METRICS = ["subopt", "grad_norm_sq", "dist_to_opt", "train_loss", "eval_pref_acc"]


def config(**sections):
    data = {"run": {"seeds": [0, 1], "rounds": 30},
            "problem": {"n_clients": 6, "pairs_per_client": 40, "heldout_pairs": 20, "dim": 5,
                        "n_contexts": 8, "heterogeneity": 1.5, "dirichlet_alpha": 0.5},
            "algorithm": {"lr": 2.0, "batch_size": 4}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return build_config(data)


def final(result, metric="subopt"):
    t = result.table
    return t[t["round"] == t["round"].max()][metric].to_numpy()


def test_feddpo_e1_full_participation_is_centralized_minibatch_sgd():
    fed = run(config(algorithm={"name": "feddpo", "local_steps": 1}), progress=False)
    cen = run(config(algorithm={"name": "centralized", "local_steps": 1}), progress=False)
    for m in METRICS:
        np.testing.assert_allclose(fed.table[m], cen.table[m], rtol=1e-11, atol=1e-14, err_msg=m)
    assert fed.table["subopt"].iloc[-1] < fed.table["subopt"].iloc[0]


def test_feddpo_e1_full_participation_matches_centralized_with_adamw():
    algo = {"local_steps": 1, "optimizer": "adamw", "lr": 0.05}
    fed = run(config(algorithm={"name": "feddpo", **algo}), progress=False)
    cen = run(config(algorithm={"name": "centralized", **algo}), progress=False)
    # one AdamW step on each client then averaging is NOT one AdamW step on the averaged
    # gradient: the equivalence is an SGD fact, so the two must differ here.
    assert not np.allclose(fed.table["subopt"], cen.table["subopt"], rtol=1e-6)


def test_complete_graph_gossip_averages_exactly():
    topo = make_topology(TopologyConfig(name="complete"), 7)
    X = torch.randn(3, 7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mixed = InProcessCommunicator().mix(X, torch.as_tensor(topo.W(0)))
    torch.testing.assert_close(mixed, X.mean(1, keepdim=True).expand_as(X), rtol=0, atol=1e-15)


def test_decdpo_complete_graph_is_feddpo_with_full_participation():
    # with W = J/n every gossip is an exact average, so DecDPO = FedDPO (equal client sizes)
    common = {"local_steps": 3, "batch_size": 4}
    dec = run(config(algorithm={"name": "decdpo", **common}, topology={"name": "complete"}), progress=False)
    fed = run(config(algorithm={"name": "feddpo", **common}), progress=False)
    np.testing.assert_allclose(dec.table["subopt"], fed.table["subopt"], rtol=1e-9, atol=1e-13)
    assert dec.table["consensus_error"].max() < 1e-25


@pytest.mark.parametrize("corrected,plain,topology", [
    ("scaffold", "feddpo", None), ("gradient_tracking", "decdpo", "ring")])
def test_corrections_reach_optimum_where_plain_methods_stall(corrected, plain, topology):
    run_cfg = {"rounds": 400}
    topo = {"name": topology} if topology else {}
    E = 1 if corrected == "gradient_tracking" else 4
    fixed = run(config(run=run_cfg, algorithm={"name": corrected, "local_steps": E, "batch_size": 0, "lr": 4.0},
                       topology=topo), progress=False)
    stalled = run(config(run=run_cfg, algorithm={"name": plain, "local_steps": E if plain == "feddpo" else 1,
                                                 "batch_size": 0, "lr": 4.0}, topology=topo), progress=False)
    assert final(fixed, "dist_to_opt").max() < 1e-12
    floor = final(stalled, "dist_to_opt")
    assert floor.min() > 1e-6
    # a floor, not slow convergence: it no longer moves
    t = stalled.table
    before = t[t["round"] == 300]["dist_to_opt"].to_numpy()
    np.testing.assert_allclose(floor, before, rtol=1e-3)


def test_partial_participation_samples_distinct_clients():
    from theory_lab.algorithms.federated import FedDPO
    from theory_lab.runner import make_oracle

    cfg = config(algorithm={"participation": 3})
    alg = FedDPO(cfg.algorithm, make_oracle(cfg), InProcessCommunicator(), torch.Generator().manual_seed(0), 10)
    seen = set()
    for _ in range(20):
        clients = alg.sample_participants()
        assert clients.shape == (2, 3)
        for row in clients.tolist():
            assert len(set(row)) == 3 and row == sorted(row)
            seen.update(row)
    assert seen == set(range(6))


def test_staleness_rules_agree_without_delay_and_differ_with_it():
    def floor(q, rule):
        cfg = config(run={"rounds": 60}, algorithm={"q_max": q, "stale_rule": rule, "lr": 1.0})
        return run(cfg, progress=False).table["subopt"].to_numpy()

    np.testing.assert_allclose(floor(0, "model_average"), floor(0, "delta"), rtol=1e-10, atol=1e-14)
    assert not np.allclose(floor(3, "model_average"), floor(3, "delta"))
    assert not np.allclose(floor(3, "model_average"), floor(0, "model_average"))


def test_same_config_and_seed_are_bit_identical():
    cfg = config(algorithm={"name": "feddpo", "participation": 4, "q_max": 2, "local_steps": 2})
    a, b = run(cfg, progress=False).table, run(cfg, progress=False).table
    metrics = [m for m in METRICS + ["consensus_error_pre"]]
    assert a[metrics].equals(b[metrics])


@pytest.mark.parametrize("name,opt_kwargs,torch_opt", [
    ("adamw", {"optimizer": "adamw", "lr": 0.1, "weight_decay": 0.01},
     lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)),
    ("sgd-momentum", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
])
def test_optimizer_matches_torch(name, opt_kwargs, torch_opt):
    cfg = AlgorithmConfig(**opt_kwargs)
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(2, 3, 4, dtype=torch.float64, generator=gen)
    ours = Optimizer(cfg, 2, 3, 4, torch.float64)
    param = torch.nn.Parameter(X.clone())
    ref = torch_opt([param])
    for _ in range(5):
        g = torch.randn(2, 3, 4, dtype=torch.float64, generator=gen)
        X = ours.step(X, g, cfg.lr)
        param.grad = g.clone()
        ref.step()
    torch.testing.assert_close(X, param.detach(), rtol=1e-12, atol=1e-12)


def test_optimizer_state_policies():
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(1, 3, 2, dtype=torch.float64, generator=gen)
    for policy in ("keep", "reset", "average"):
        opt = Optimizer(AlgorithmConfig(optimizer="adamw", state_policy=policy), 1, 3, 2, torch.float64)
        opt.step(torch.zeros(1, 3, 2, dtype=torch.float64), g, 0.1)
        before = opt.state["0.m"].clone()
        opt.communicate(average=lambda T: T.mean(1))
        after = opt.state["0.m"]
        if policy == "keep":
            assert torch.equal(after, before)
        elif policy == "reset":
            assert not after.any()
        else:
            torch.testing.assert_close(after, before.mean(1, keepdim=True).expand_as(before))


def test_partial_participation_steps_only_the_sampled_optimizer_rows():
    opt = Optimizer(AlgorithmConfig(optimizer="adamw"), 1, 4, 2, torch.float64)
    clients = torch.tensor([[1, 3]])
    opt.step(torch.zeros(1, 2, 2, dtype=torch.float64), torch.ones(1, 2, 2, dtype=torch.float64), 0.1, clients)
    assert opt.state["0.count"].tolist() == [[0, 1, 0, 1]]
    assert not opt.state["0.m"][0, [0, 2]].any() and opt.state["0.m"][0, [1, 3]].all()


def test_comm_bytes_count_messages():
    cfg = config(run={"rounds": 3}, algorithm={"name": "decdpo"}, topology={"name": "ring"})
    table = run(cfg, progress=False).table
    per_round = 6 * 2 * 5 * 8  # 6 nodes x 2 neighbours x dim 5 x float64
    assert table["comm_bytes"].iloc[-1] == 3 * per_round
    cfg = config(run={"rounds": 2}, algorithm={"name": "feddpo", "participation": 3})
    assert run(cfg, progress=False).table["comm_bytes"].iloc[-1] == 2 * (2 * 3 * 5 * 8)
