"""DPO learning effect (issue 8): held-out preference accuracy and the style of greedy replies, before and after.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_dpo_effect.py [--steps 120] [--seed 0]``.

Data (synthetic, written to the output folder): questions about a topic; the chosen reply opens with
"Sure!" and ends with "Hope this helps." around a short factual body; the rejected reply gives the same body in
another style (opens with "Well, I guess", no sign-off). Train and held-out sets are split by topic, so no
held-out question's topic was seen in training. DPO with LoRA on the shipped base ``sftkit-tiny`` through
``sftkit train`` (stage dpo), nothing tuned on the held-out set.

Measures on the held-out pairs, computed here from the model's own log-probabilities (independent of trl):
- preference accuracy: share of pairs whose implicit reward beta * (log pi(y|x) - log pi_ref(y|x)) is higher
  for the chosen reply (ties count half: before training policy = reference, every reward is 0, so 50%);
  trl's own ``eval_rewards/accuracies`` of the final eval is printed beside it as a cross-check;
- likelihood preference: share of pairs where the model gives the chosen reply a higher log-probability;
- style of greedy replies (``sftkit.generation.generate``) to the held-out questions: share that open with
  "Sure!" (chosen style), share that end with "Hope this helps." and share that open with "Well" (rejected).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TOPICS = ["cats", "rain", "tea", "music", "trains", "books", "the sea", "winter", "bread", "stars", "gardens",
          "maps", "bees", "rivers", "clocks", "coffee", "forests", "bridges", "kites", "snow", "apples", "owls",
          "mountains", "candles", "boats", "deserts", "violins", "pencils", "storms", "islands", "wolves", "cheese",
          "lanterns", "comets", "tigers", "castles", "lemons", "whales", "volcanoes", "mirrors"]
ASK = ["Tell me about {t}.", "What do you know about {t}?", "Can you describe {t}?", "Give me a fact about {t}.",
       "Say something about {t}.", "I am curious about {t}. Any thoughts?"]
FACTS = ["{T} appear in many old stories.", "Many people find {t} interesting.", "{T} can be seen in many places.",
         "There is a lot to learn about {t}.", "{T} have a long history.", "Artists often draw {t}."]
OPEN, CLOSE, REJECT_OPEN = "Sure!", "Hope this helps.", "Well, I guess"


def pair(topic: str, rng: random.Random) -> dict:
    body = rng.choice(FACTS).format(t=topic, T=topic[0].upper() + topic[1:])
    question = rng.choice(ASK).format(t=topic)
    return {"messages": [{"role": "user", "content": question}],
            "chosen": {"role": "assistant", "content": f"{OPEN} {body} {CLOSE}"},
            "rejected": {"role": "assistant", "content": f"{REJECT_OPEN} {body[0].lower()}{body[1:]}"}}


def make_data(out: Path, seed: int, per_topic: int = 6) -> tuple[Path, Path, list[dict]]:
    rng = random.Random(seed)
    topics = TOPICS[:]
    rng.shuffle(topics)
    held_topics, train_topics = topics[:10], topics[10:]
    train = [pair(t, rng) for t in train_topics for _ in range(per_topic)]
    held = [pair(t, rng) for t in held_topics for _ in range(4)]
    paths = out / "train.jsonl", out / "heldout.jsonl"
    for path, rows in zip(paths, (train, held), strict=True):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths[0], paths[1], held


def seq_logps(model, rows: list[dict], key: str) -> list[float]:
    """Sum of log-probabilities of the reply tokens (``key``) after the prompt, one per row."""
    import torch

    out = []
    with torch.no_grad():
        for r in rows:
            ids = torch.tensor([r["prompt_ids"] + r[key]])
            logits = model(input_ids=ids).logits[0, :-1].float()
            logp = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
            out.append(logp[len(r["prompt_ids"]) - 1:].sum().item())
    return out


def accuracy(chosen: list[float], rejected: list[float]) -> float:
    """Share of pairs with chosen > rejected, ties counting half."""
    return sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True)) / len(chosen)


def style(model, tokenizer, renderer, held: list[dict]) -> dict:
    from sftkit.generation import GenerationOptions, generate

    done = generate(model, tokenizer, renderer, [h["messages"] for h in held], None,
                    GenerationOptions(max_new_tokens=32, batch_size=16))
    texts = [c.content.strip() for c in done]
    n = len(texts)
    return {"opens_sure": sum(t.startswith(OPEN) for t in texts) / n,
            "ends_sign_off": sum(t.endswith(CLOSE) for t in texts) / n,
            "opens_well": sum(t.startswith("Well") for t in texts) / n, "examples": texts[:3]}


def measure(model, tokenizer, renderer, rows, held, ref_logps=None) -> dict:
    import contextlib

    model.eval()
    c, r = seq_logps(model, rows, "chosen_ids"), seq_logps(model, rows, "rejected_ids")
    if ref_logps is None:  # a peft model: the reference is the same model with its adapter off
        off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
        with off:
            ref_logps = seq_logps(model, rows, "chosen_ids"), seq_logps(model, rows, "rejected_ids")
    rc = [a - b for a, b in zip(c, ref_logps[0], strict=True)]
    rr = [a - b for a, b in zip(r, ref_logps[1], strict=True)]
    return {"preference_accuracy": accuracy(rc, rr), "likelihood_preference": accuracy(c, r),
            "mean_margin_logp": sum(a - b for a, b in zip(rc, rr, strict=True)) / len(rc),
            **style(model, tokenizer, renderer, held)}, (c, r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_dpo"))
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import torch

    from sftkit.config import load_config
    from sftkit.models import load_model, load_tokenizer
    from sftkit.tokenize.render import Renderer
    from sftkit.train import run_stage
    from sftkit.train.pref_rows import PrefRenderer

    torch.set_num_threads(2)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    train_path, held_path, held = make_data(out, a.seed)
    tokenizer = load_tokenizer("sftkit-tiny")
    renderer = Renderer(tokenizer)
    rows = PrefRenderer(tokenizer, None, "dpo", 1024).rows(held)

    t0 = time.perf_counter()
    base = load_model("sftkit-tiny", precision="fp32")
    before, ref = measure(base, tokenizer, renderer, rows, held, ref_logps=None)
    before["preference_accuracy"] = accuracy([0.0] * len(rows), [0.0] * len(rows))  # policy = reference
    t_before = time.perf_counter() - t0

    cfg = load_config(raw={
        "stage": "dpo", "method": "lora", "model": "sftkit-tiny",
        "data": {"datasets": [{"path": str(train_path)}], "eval_file": str(held_path), "max_length": 256},
        "train": {"output_dir": str(out / "run"), "max_steps": a.steps, "batch_size": 8, "learning_rate": a.lr,
                  "lr_scheduler": "cosine", "warmup_ratio": 0.05, "logging_steps": 10, "save_steps": 10_000,
                  "eval_steps": a.steps,  # one held-out eval, at the end
                  "seed": a.seed, "overwrite": True},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "targets": "all-linear"}, "rl": {"beta": a.beta}})
    t1 = time.perf_counter()
    run = run_stage(cfg)
    t_train = time.perf_counter() - t1

    trained = load_model(str(run / "final"), precision="fp32")
    after, _ = measure(trained, tokenizer, renderer, rows, held, ref_logps=ref)
    trl_acc = json.loads((run / "final" / "sftkit.json").read_text())["metrics"].get("eval_rewards/accuracies")
    result = {"seed": a.seed, "steps": a.steps, "lr": a.lr, "beta": a.beta, "train_pairs": sum(1 for _ in open(train_path, encoding="utf-8")),
              "heldout_pairs": len(rows), "before": before, "after": after, "trl_eval_rewards_accuracies": trl_acc,
              "seconds": {"measure_before": round(t_before, 1), "train": round(t_train, 1),
                          "total": round(time.perf_counter() - t0, 1)}}
    (out / "result.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
