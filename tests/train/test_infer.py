"""Chat, generate and export on a short real fine-tune of the tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from sftkit.cli import main
from sftkit.infer import Chat, export
from sftkit.models import load_model
from sftkit.train.sft import train
from tests.conftest import write_jsonl
from tests.train.helpers import config


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    return train(config(tiny_model_dir, tmp_path_factory.mktemp("run") / "lora", "lora", max_steps=6))


def test_export_merges_lora_into_a_plain_model(lora_run, tmp_path):
    out = export(str(lora_run), str(tmp_path / "merged"))
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    adapted = load_model(str(lora_run), precision="fp32").eval()
    ids = torch.tensor([[5, 17, 300, 42, 9]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)


def test_chat_streams_and_generate_writes_predictions(lora_run, tmp_path, capsys):
    chat = Chat(str(lora_run))
    convo = [{"role": "user", "content": "Who are you?"}]
    streamed = "".join(chat.stream(convo, max_new_tokens=8))
    assert streamed == chat.generate([convo], max_new_tokens=8)[0]  # greedy: the same text either way
    data = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "hi", "output": "Hello"}, {"instruction": "你好", "output": "嗨"}])
    out = tmp_path / "pred.jsonl"
    assert main(["generate", "--model", str(lora_run), "--data", str(data), "-o", str(out), "--max-new-tokens", "4"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["reference"] for r in rows] == ["Hello", "嗨"] and all(isinstance(r["prediction"], str) for r in rows)
    assert main(["chat", "--model", str(lora_run), "--prompt", "hi", "--max-new-tokens", "4"]) == 0


def test_virtual_token_runs_cannot_be_merged(tiny_model_dir, tmp_path):
    from sftkit.errors import SftkitError

    run = train(config(tiny_model_dir, tmp_path / "prompt", "prompt", max_steps=2))
    with pytest.raises(SftkitError, match="cannot be merged"):
        export(str(run), str(tmp_path / "out"))
