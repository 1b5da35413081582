"""The saved adapter outside the toolkit: it records a portable base-model reference, saves
without warnings, and loads with plain transformers + peft (the README's snippet)."""

import json
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")

from llm.model import base_reference, load_model  # noqa: E402
from theory_lab.cli import main  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_smollm2_records_its_hub_id_not_a_venv_path():
    assert base_reference("smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_reference("models/my-llama") == "models/my-llama"


@pytest.mark.skipif(not DATA.is_dir(), reason="shared data not found")
def test_adapter_loads_with_plain_transformers_and_peft(tmp_path):
    from peft import AutoPeftModelForCausalLM
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_model("tiny")          # a base model in a plain Hugging Face folder
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    cfg = tmp_path / "llm.toml"
    cfg.write_text(f"""track = "llm"
[run]
rounds = 2
[llm]
model = "{tmp_path / 'base'}"
data_dir = "{DATA}"
dataset = "imdb-cad"
n_clients = 2
pairs_per_client = 4
heldout_per_client = 2
max_length = 40
max_prompt_length = 12
[algorithm]
name = "feddpo"
batch_size = 2
lr = 0.05
""")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)   # saving must not warn (peft's base-model lookup)
        assert main(["llm", "--config", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    adapter = tmp_path / "o" / "adapter"
    recorded = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == str(tmp_path / "base")

    # the README's snippet: the base from the recorded reference, the adapter on top
    peft_model = AutoPeftModelForCausalLM.from_pretrained(adapter)
    base = AutoModelForCausalLM.from_pretrained(recorded)
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    loaded = {k.replace(".default", ""): v for k, v in peft_model.state_dict().items() if "lora_" in k}
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)   # trained, not the init
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert not torch.allclose(peft_model(ids).logits, base(ids).logits)   # the adapter is applied
