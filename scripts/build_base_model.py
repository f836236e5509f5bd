"""Build sftkit's shipped base model (src/sftkit/base_model/) from text the project may ship.

    .venv/bin/python scripts/build_base_model.py [--minutes 17] [--out src/sftkit/base_model]

1. Corpus: the repo's copy of C4 demo text, the Alpaca zh/en demos and GSM8K *train* (chat records are
   rendered with the ChatML template, so the model learns the turn format), plus generated greetings.
   Nothing the demo or tests evaluate on (identity.json, GSM8K test) is used.
2. Tokenizer: byte-level BPE (8k vocab, Chinese + English) trained with `tokenizers`, with the special
   tokens of every built-in template and a ChatML chat_template.
3. Model: a Llama (hidden 256, 6 layers, 8 heads / 4 KV heads, tied embeddings, ~6.8M parameters),
   randomly initialised with a fixed seed, then pre-trained with sftkit's own trainer (method: full,
   packing on, loss on every token) for a fixed number of steps.
4. Saved in bf16 safetensors (~14 MB) with tokenizer and generation config.
Takes about 21 minutes on 2 CPU cores (340 steps).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
           "<|end_header_id|>", "<|eot_id|>"]
SEED = 1234


def greetings(rng: random.Random, n: int = 400) -> list[dict]:
    """Generated small talk so the model has seen short chat turns (no names or authors)."""
    asks = ["hi", "hello", "hey", "你好", "您好", "good morning", "早上好", "thanks", "谢谢", "how are you?", "你好吗？"]
    replies = ["Hello! How can I help you today?", "Hi there! What can I do for you?", "你好！有什么可以帮你的吗？",
               "您好！请问有什么需要帮助的？", "You're welcome!", "不客气！", "I'm doing well, thank you for asking.",
               "我很好，谢谢关心！"]
    return [{"messages": [{"role": "user", "content": rng.choice(asks)},
                          {"role": "assistant", "content": rng.choice(replies)}], "meta": {}} for _ in range(n)]


def corpus(tmp: Path) -> list[Path]:
    """Write the pre-training corpus as canonical JSONL files; return their paths."""
    from sftkit.data.pipeline import ConvertOptions, convert_files, sources_from_paths

    files = []
    for name, src in (("c4", DATA / "llamafactory" / "c4_demo.jsonl"), ("alpaca_zh", DATA / "llamafactory" / "alpaca_zh_demo.json"),
                      ("alpaca_en", DATA / "llamafactory" / "alpaca_en_demo.json"), ("gsm8k_train", DATA / "gsm8k" / "train.jsonl")):
        out = tmp / f"{name}.jsonl"
        opts = ConvertOptions()
        convert_files(sources_from_paths([src], opts), out, tmp / f"{name}.rejects.jsonl", opts)
        files.append(out)
    gen = tmp / "greetings.jsonl"
    gen.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in greetings(random.Random(SEED))))
    files.append(gen)
    return files


def train_tokenizer(files: list[Path], out: Path, vocab: int = 8192):
    """Byte-level BPE on the rendered corpus; saved as a PreTrainedTokenizerFast with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from sftkit.schema import record_kind
    from sftkit.tokenize.templates import get_template

    chatml = get_template("chatml")

    def texts():
        for f in files:
            for line in f.open(encoding="utf-8"):
                rec = json.loads(line)
                yield rec["text"] if record_kind(rec) == "text" else chatml.render(rec["messages"], None, "")[0]

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIAL, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, additional_special_tokens=SPECIAL[3:],
                                   model_max_length=2048)
    fast.chat_template = chatml.jinja()
    fast.save_pretrained(out)
    return fast


def init_model(tokenizer, out: Path) -> None:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=6,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                         tie_word_embeddings=True, rope_theta=10000.0, bos_token_id=None,
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    stop = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>")]
    GenerationConfig(eos_token_id=stop, pad_token_id=tokenizer.pad_token_id, do_sample=False).save_pretrained(out)


def training_card(steps: int, losses: list[dict]) -> str:
    """TRAINING.md shipped with the weights: how they were made, from what, under which licenses."""
    log = "\n".join(f"- step {m['step']}: loss {m['loss']:.3f}" for m in losses if "loss" in m)
    return f"""# sftkit-tiny

A 6.8M-parameter Llama (hidden 256, 6 layers, 8 heads / 4 KV heads, tied embeddings) with an 8k
byte-level BPE tokenizer (Chinese + English) and a ChatML chat template, built by
`scripts/build_base_model.py` (seed {SEED}, {steps} steps of 16 x 512 tokens, sftkit's own trainer).

Rebuild: `.venv/bin/python scripts/build_base_model.py` (about 20-25 minutes on 2 CPU cores).

Pre-training text (the repo's copies, see data/NOTICE.md): C4 demo (ODC-BY), LLaMA-Factory's Alpaca
zh/en demos (Apache-2.0), GSM8K train (MIT), and generated greetings. Not used, because the demo and
tests evaluate on them: LLaMA-Factory's identity.json and GSM8K test.

It is a toy for trying sftkit offline: it learns a persona and a reply format from a minute of LoRA,
not arithmetic or facts.

Loss log:

{log}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=340, help="pre-training steps of 16 x 512 tokens (~21 min on 2 CPU cores)")
    ap.add_argument("--out", default=str(REPO / "src" / "sftkit" / "base_model"))
    args = ap.parse_args()

    from sftkit.config import load_config
    from sftkit.train.sft import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = corpus(tmp)
        init = tmp / "init"
        tokenizer = train_tokenizer(files, init)
        init_model(tokenizer, init)
        cfg = load_config(raw={
            "model": str(init), "template": "chatml", "method": "full",
            "data": {"datasets": [{"path": str(f)} for f in files], "max_length": 512, "packing": True,
                     "train_on_prompt": True, "seed": SEED},
            "train": {"output_dir": str(tmp / "run"), "learning_rate": 3e-3, "lr_scheduler": "cosine",
                      "warmup_ratio": 0.03, "max_steps": args.steps, "batch_size": 16, "weight_decay": 0.01,
                      "save_steps": 10**9, "logging_steps": 25, "seed": SEED},
        })
        run = train(cfg)
        out = Path(args.out)
        shutil.rmtree(out, ignore_errors=True)
        from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

        model = LlamaForCausalLM.from_pretrained(run / "final", dtype=torch.bfloat16)
        model.config.use_cache = True
        model.save_pretrained(out, safe_serialization=True)
        PreTrainedTokenizerFast.from_pretrained(run / "final").save_pretrained(out)
        shutil.copy(init / "generation_config.json", out / "generation_config.json")
        losses = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        (out / "TRAINING.md").write_text(training_card(args.steps, losses))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
