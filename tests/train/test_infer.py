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


def test_lora_continued_from_a_lora_run_names_the_root_base(lora_run, tiny_model_dir, tmp_path):
    cfg = config(str(lora_run), tmp_path / "more", "lora", max_steps=2)
    run = train(cfg)
    info = json.loads((run / "final" / "sftkit.json").read_text())
    assert info["adapter"] and info["base_model"] == str(tiny_model_dir)
    before, after = load_model(str(lora_run), precision="fp32").eval(), load_model(str(run), precision="fp32").eval()
    ids = torch.tensor([[5, 17, 300, 42, 9]])
    with torch.no_grad():
        assert not torch.allclose(before(ids).logits, after(ids).logits)  # the continued adapter trained further


def test_chat_streams_and_generate_writes_predictions(lora_run, tmp_path, capsys):
    chat = Chat(str(lora_run))
    convo = [{"role": "user", "content": "Who are you?"}]
    stream = chat.stream(convo, max_new_tokens=8)
    streamed = "".join(stream)
    assert streamed == chat.generate([convo], max_new_tokens=8)[0]  # greedy: the same text either way
    assert stream.completion.text == streamed and stream.completion.completion_tokens <= 8
    data = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "hi", "output": "Hello"}, {"prompt": "你好"},
                                             {"messages": [{"role": "user", "content": "hey"}]}, {"nothing": 1}])
    out = tmp_path / "pred.jsonl"
    assert main(["generate", "--model", str(lora_run), "--data", str(data), "-o", str(out), "--max-new-tokens", "4"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["hi", "你好", "hey"] and rows[0]["reference"] == "Hello"
    assert all(isinstance(r["prediction"], str) and r["finish_reason"] in ("stop", "length") for r in rows)
    assert "p.jsonl:4" in capsys.readouterr().err  # the line with no prompt is reported, not silently dropped
    assert main(["chat", "--model", str(lora_run), "--prompt", "hi", "--max-new-tokens", "4"]) == 0


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


@pytest.fixture(scope="module")
def tool_run(tiny_model_dir, tmp_path_factory):
    """A tiny model taught one tool call (prompt rendered with the tool definitions, as training does)."""
    from sftkit.config import load_config

    d = tmp_path_factory.mktemp("tools")
    rec = {"messages": [{"role": "user", "content": "Weather in Paris?"},
                        {"role": "assistant", "content": "", "tool_calls": [CALL]}], "tools": TOOLS}
    data = write_jsonl(d / "tools.jsonl", [rec] * 8)
    cfg = load_config(raw={"model": str(tiny_model_dir), "method": "full",
                           "data": {"datasets": [{"path": str(data)}], "max_length": 256},
                           "train": {"output_dir": str(d / "run"), "max_steps": 60, "batch_size": 2,
                                     "learning_rate": 1e-2, "lr_scheduler": "constant", "logging_steps": 20,
                                     "save_steps": 1000}})
    return train(cfg), data


def test_tool_calls_come_back_parsed_in_chat_and_generate(tool_run, tmp_path, capsys):
    run, data = tool_run
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps(TOOLS))
    assert main(["chat", "--model", str(run), "--tools", str(tools_file), "--prompt", "Weather in Paris?",
                 "--max-new-tokens", "64"]) == 0
    out = capsys.readouterr().out
    assert '] get_weather({"city": "Paris"})' in out  # the parsed call is printed
    pred = tmp_path / "pred.jsonl"
    assert main(["generate", "--model", str(run), "--data", str(data), "-o", str(pred), "--max-new-tokens", "64",
                 "--stop", "never-there"]) == 0
    row = json.loads(pred.read_text().splitlines()[0])
    assert row["tools"] == TOOLS and row["finish_reason"] == "tool_calls" and row["content"] == ""
    call = row["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert row["reference"] == "" and row["prediction"].startswith("<tool_call>")
    # the stop option cuts generation (here right after the call's opening tag)
    assert main(["generate", "--model", str(run), "--data", str(data), "-o", str(pred), "--max-new-tokens", "64",
                 "--stop", '"name"']) == 0
    row = json.loads(pred.read_text().splitlines()[0])
    assert (row["prediction"], row["finish_reason"], row["tool_calls"]) == ("<tool_call>{", "stop", [])
    for bad in ("[1, 2]", "{oops"):
        tools_file.write_text(bad)
        assert main(["chat", "--model", str(run), "--tools", str(tools_file), "--prompt", "x"]) == 2
        err = capsys.readouterr().err
        assert str(tools_file) in err and "Traceback" not in err


def test_virtual_token_runs_cannot_be_merged(tiny_model_dir, tmp_path):
    from sftkit.errors import SftkitError

    run = train(config(tiny_model_dir, tmp_path / "prompt", "prompt", max_steps=2))
    with pytest.raises(SftkitError, match="cannot be merged"):
        export(str(run), str(tmp_path / "out"))


def test_ia3_runs_export_and_bottleneck_runs_load_for_chat(tiny_model_dir, tmp_path):
    """Export asks the method registry what can be merged; a bottleneck-adapter run loads on its base for use."""
    from sftkit.errors import SftkitError

    ids = torch.tensor([[5, 17, 300, 42, 9]])
    run = train(config(tiny_model_dir, tmp_path / "ia3", "ia3", max_steps=3))
    out = export(str(run), str(tmp_path / "merged"))
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    adapted = load_model(str(run), precision="fp32").eval()
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)

    run = train(config(tiny_model_dir, tmp_path / "adapter", "adapter", max_steps=3, learning_rate=5e-2))
    loaded = load_model(str(run), precision="fp32").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        assert not torch.allclose(loaded(ids).logits, base(ids).logits, atol=1e-4)  # the trained adapter is there
    assert Chat(str(run)).generate([[{"role": "user", "content": "hi"}]], max_new_tokens=4)
    with pytest.raises(SftkitError, match="cannot be merged"):
        export(str(run), str(tmp_path / "out2"))


def test_train_cli_with_overrides_neftune_and_checkpointing(tiny_model_dir, tmp_path, capsys):
    import yaml

    from tests.conftest import LF

    cfg = {"model": str(tiny_model_dir), "method": "lora", "template": "qwen",
           "data": {"datasets": [{"path": str(LF / "identity.json")}], "max_samples": 16, "max_length": 128},
           "train": {"output_dir": str(tmp_path / "run"), "batch_size": 4, "logging_steps": 1}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = main(["train", str(path), "train.max_steps=3", "train.neftune_alpha=5", "train.gradient_checkpointing=true"])
    assert code == 0 and "run folder" in capsys.readouterr().out
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 3
    saved = (tmp_path / "run" / "final" / "chat_template.jinja").read_text()
    assert "<tool_response>" in saved  # the built-in template chosen for training travels with the model
    assert main(["train", str(path), "train.lerning_rate=1"]) == 2
    assert "did you mean 'learning_rate'" in capsys.readouterr().err


def test_interactive_chat_keeps_history_and_clears(lora_run, monkeypatch, capsys):
    from sftkit.infer import repl

    chat = Chat(str(lora_run))
    seen = []
    real_stream = chat.stream

    def spy(history, *args, **kw):
        seen.append([m["content"] for m in history])
        return real_stream(history, *args, **kw)

    monkeypatch.setattr(chat, "stream", spy)
    lines = iter(["hi", "again", "/clear", "new", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    repl(chat, system="S", max_new_tokens=3)
    assert seen[0] == ["S", "hi"] and seen[1][:3] == ["S", "hi", seen[1][2]] and seen[1][-1] == "again"
    assert seen[2] == ["S", "new"]  # /clear kept the system prompt only
    assert capsys.readouterr().out.count("bot> ") == 3


def test_a_qwen2_architecture_model_trains_and_chats(tokenizer, tmp_path):
    """Any causal LM works the same way: here a tiny Qwen2 built from a config (its folder says qwen2)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    path = tmp_path / "qwen2-tiny"
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    run = train(config(path, tmp_path / "run", "lora", max_steps=3))
    chat = Chat(str(run))
    assert chat.tokenizer("你好")["input_ids"] == tokenizer("你好")["input_ids"]  # our tokenizer.json, not Qwen's
    assert isinstance(chat.generate([[{"role": "user", "content": "hi"}]], max_new_tokens=3)[0], str)


def test_interactive_chat_sends_tool_results_after_a_call(tool_run, monkeypatch, capsys):
    from sftkit.infer import repl

    run, _ = tool_run
    chat = Chat(str(run))
    seen = []
    real_stream = chat.stream

    def spy(history, *args, **kw):
        seen.append([dict(m) for m in history])
        return real_stream(history, *args, **kw)

    monkeypatch.setattr(chat, "stream", spy)
    lines = iter(["Weather in Paris?", "/tool Sunny, 21 C", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    repl(chat, tools=TOOLS, max_new_tokens=64)
    assert "get_weather" in capsys.readouterr().out
    reply, result = seen[1][1], seen[1][2]
    assert reply["role"] == "assistant" and reply["tool_calls"][0]["function"]["name"] == "get_weather"
    assert result == {"role": "tool", "content": "Sunny, 21 C"}
