"""The parameter stack, the optimizer state and every algorithm state live on the model's device
(LLMOracle.stack_device), never crossing to the host each step. Tested without a GPU: the stack
lives on tests/second_device.py's stand-in device, which computes on the host but refuses, as
CUDA does, any operation mixing it with host tensors; the numbers must equal a host run exactly."""

import functools

import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from llm.oracle import LLMOracle  # noqa: E402
from llm.personal import PersonalConfig  # noqa: E402
from tests.second_device import second_device  # noqa: E402
from tests.test_llm_batched import ALGORITHMS, DATA, RUN, _run, oracle  # noqa: E402
from theory_lab.config import build_config, read_toml  # noqa: E402
from theory_lab.runner import run  # noqa: E402


def _host(state: dict) -> dict:
    return {k: v.cpu() for k, v in state.items() if torch.is_tensor(v)}


def _on_device(state: dict, device) -> bool:
    return all(v.device == device for v in state.values() if torch.is_tensor(v))


@pytest.mark.parametrize("mode", ["off", "on"], ids=["sequential", "client-batched"])
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_algorithm_state_lives_on_the_stack_device(name, mode):
    host, _ = _run(oracle(mode, sizes=(5, 5, 5, 5)), ALGORITHMS[name])
    with second_device() as dev:
        alg, _ = _run(oracle(mode, sizes=(5, 5, 5, 5), stack_device=dev), ALGORITHMS[name])
        state = alg.state_dict()
        assert _on_device(state, dev), {k: v.device for k, v in state.items() if torch.is_tensor(v)}
        metrics = {k: v.cpu() for k, v in alg.oracle.evaluate(alg.model()).items()}
        state = _host(state)
    for k, v in _host(host.state_dict()).items():
        assert torch.equal(state[k], v), k
    for k, v in host.oracle.evaluate(host.model()).items():
        torch.testing.assert_close(metrics[k], v, rtol=0, atol=0, equal_nan=True, msg=k)


@pytest.mark.parametrize("mode", ["off", "on"], ids=["sequential", "client-batched"])
def test_fedpdpo_runs_with_its_stack_on_the_device(mode):
    spec = dict(name="feddpo", local_steps=2, participation=2, optimizer="adamw")
    personal = lambda: PersonalConfig(enabled=True, lr=0.05)   # noqa: E731
    host, _ = _run(oracle(mode, sizes=(5, 5, 5), personal=personal()), spec, 2)
    with second_device() as dev:
        alg, _ = _run(oracle(mode, sizes=(5, 5, 5), personal=personal(), stack_device=dev), spec, 2)
        assert _on_device(alg.state_dict(), dev)
        every = alg.model().unsqueeze(1).expand(-1, 3, -1)   # the averaged model at each client
        state, personal_acc = _host(alg.state_dict()), alg.oracle.personal_accuracy(every).cpu()
    for k, v in _host(host.state_dict()).items():
        assert torch.equal(state[k], v), k
    every = host.model().unsqueeze(1).expand(-1, 3, -1)
    torch.testing.assert_close(personal_acc, host.oracle.personal_accuracy(every), rtol=0, atol=0, equal_nan=True)


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("name,extra", [("feddpo", dict(participation=3, q_max=1)), ("decdpo", {}),
                                        ("feddpo", dict(lora_aggregation="exact", participation=3)),
                                        ("feddpo", dict(lora_aggregation="fedsa"))],
                         ids=["feddpo-partial-stale", "decdpo", "feddpo-exact", "fedsa"])
def test_whole_run_with_the_stack_on_the_device_equals_the_host_run(tmp_path, monkeypatch, name, extra):
    """The runner's bookkeeping (metrics, personal rows, divergence checks, checkpoints, the table)
    around a stack that is not on the host: the same table."""
    (tmp_path / "c.toml").write_text(RUN.format(data=DATA, mode="auto", name=name, participation=0))
    overrides = ["run.checkpoint_every=1", *(f"algorithm.{k}={v!r}".replace("'", '"') for k, v in extra.items())]
    cfg = lambda: build_config(read_toml(tmp_path / "c.toml"), overrides)   # noqa: E731
    host = run(cfg(), checkpoint_dir=tmp_path / "host").table
    with second_device() as dev:
        monkeypatch.setattr(LLMOracle, "__init__", functools.partialmethod(LLMOracle.__init__, stack_device=dev))
        moved = run(cfg(), checkpoint_dir=tmp_path / "dev").table
    cols = [c for c in host.select_dtypes("number") if c != "wall_s"]
    pd.testing.assert_frame_equal(moved[cols], host[cols], check_exact=True)
