"""Shared test helpers: the repo's copy of the real data, and small-file writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
LF = DATA / "llamafactory"
GSM8K = DATA / "gsm8k"


def write_jsonl(path: Path, rows: list) -> Path:
    """Write rows (objects or raw strings) as JSONL, one per line."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture
def jsonl(tmp_path):
    """Factory: jsonl(rows, name="data.jsonl") -> path of a written JSONL file."""

    def make(rows: list, name: str = "data.jsonl") -> Path:
        return write_jsonl(tmp_path / name, rows)

    return make


@pytest.fixture(scope="session")
def tokenizer():
    """The shipped base model's tokenizer (byte-level BPE, zh + en, chat special tokens)."""
    from sftkit.models import load_tokenizer

    return load_tokenizer("sftkit-tiny")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A tiny randomly initialised Llama (built from a config) saved with the shipped tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    path = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
