"""DPO learning effect (issue 8): held-out preference accuracy and the style of greedy replies, before and after.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_dpo_effect.py [--sft-steps 80] [--steps 40] [--seed 0]
[--lr 3e-3] [--beta 0.1] [--sft-weight 1.0]`` (``--sft-weight``: ``rl.dpo_sft_weight``, the chosen reply's NLL).

Protocol (RLHF order, one config with two stages in one run folder): SFT on the training questions with plain
replies (a short factual body), then DPO on preference pairs for the same questions: the chosen reply wraps the
body as "Sure! <body> Hope this helps.", the rejected reply is the plain body, i.e. what the SFT model writes
now. Train and held-out sets are split by topic, so no held-out question's topic was seen in training. LoRA on
the shipped base ``sftkit-tiny`` through ``sftkit train`` (stages sft, dpo); nothing tuned on the held-out set.
"Before" is the SFT model (DPO's start and reference), "after" the DPO model.

Measures on the held-out pairs, computed here from the model's own log-probabilities (independent of trl):
- preference accuracy: share of pairs whose implicit reward beta * (log pi(y|x) - log pi_ref(y|x)) is higher
  for the chosen reply (ties count half: before training policy = reference, every reward is 0, so 50%);
  trl's own ``eval_rewards/accuracies`` of the final eval is printed beside it as a cross-check;
- likelihood preference: share of pairs where the model gives the chosen reply a higher log-probability;
- the chosen style in generation: mean log p("Sure!" | held-out prompt) (the chosen opener's tokens), and greedy
  replies (``sftkit.generation.generate``) to the held-out questions: share that open with "Sure!", share that
  end with "Hope this helps.", share whose first letter is the opener's ("S"), share that keep a body (>= 3 words
  besides opener and sign-off), and share of the chosen shape (opener, a body, one sign-off at the end).
Settings are chosen on a dev split (5 topics seen neither in training nor in the held-out set), never on held-out.
"""

from __future__ import annotations

import argparse
import json
import os
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
OPEN, CLOSE = "Sure!", "Hope this helps."


def pair(topic: str, rng: random.Random) -> dict:
    body = rng.choice(FACTS).format(t=topic, T=topic[0].upper() + topic[1:])
    question = rng.choice(ASK).format(t=topic)
    return {"messages": [{"role": "user", "content": question}],
            "chosen": {"role": "assistant", "content": f"{OPEN} {body} {CLOSE}"},
            "rejected": {"role": "assistant", "content": body}}


def make_data(out: Path, seed: int, per_topic: int = 6) -> tuple[Path, Path, Path, list[dict], list[dict]]:
    """(SFT file: the training questions with plain replies, DPO pairs, held-out pairs, held-out records, dev
    records). Topics: 10 held-out, 5 dev (for choosing settings), 25 train."""
    rng = random.Random(seed)
    topics = TOPICS[:]
    rng.shuffle(topics)
    held_topics, dev_topics, train_topics = topics[:10], topics[10:15], topics[15:]
    train = [pair(t, rng) for t in train_topics for _ in range(per_topic)]
    held = [pair(t, rng) for t in held_topics for _ in range(4)]
    dev = [pair(t, rng) for t in dev_topics for _ in range(4)]
    sft = [{"messages": [*p["messages"], p["rejected"]]} for p in train]
    paths = out / "sft.jsonl", out / "train.jsonl", out / "heldout.jsonl"
    for path, rows in zip(paths, (sft, train, held), strict=True):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return *paths, held, dev


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
    bodies = [t.replace(OPEN, " ").replace(CLOSE, " ").split() for t in texts]
    return {"opens_sure": sum(t.startswith(OPEN) for t in texts) / n,
            "ends_sign_off": sum(t.endswith(CLOSE) for t in texts) / n,
            "opens_with_S": sum(t.startswith("S") for t in texts) / n,
            # the chosen style is a wrapper around a body: a reply that drops the body is not the chosen style
            "has_body": sum(len(w) >= 3 for w in bodies) / n,
            "chosen_shape": sum(t.startswith(OPEN) and t.endswith(CLOSE) and t.count(CLOSE) == 1 and len(w) >= 3
                                for t, w in zip(texts, bodies, strict=True)) / n,
            "examples": texts[:3], "texts": texts}


def with_opener(rows: list[dict], tokenizer) -> list[dict]:
    """Rows with ``open_ids``: the first tokens of the chosen reply that spell the opener "Sure!"."""
    k = next(k for k in range(1, 8) if tokenizer.decode(rows[0]["chosen_ids"][:k]).strip() == OPEN)
    return [{**r, "open_ids": r["chosen_ids"][:k]} for r in rows]


def measure(model, tokenizer, renderer, rows, held, ref_logps=None) -> tuple[dict, tuple]:
    """Held-out figures of ``model``; ``ref_logps`` None: the model is its own reference (before training)."""
    model.eval()
    c, r = seq_logps(model, rows, "chosen_ids"), seq_logps(model, rows, "rejected_ids")
    ref_logps = ref_logps or (c, r)
    rc = [a - b for a, b in zip(c, ref_logps[0], strict=True)]
    rr = [a - b for a, b in zip(r, ref_logps[1], strict=True)]
    opener = seq_logps(model, rows, "open_ids")
    return {"preference_accuracy": accuracy(rc, rr), "likelihood_preference": accuracy(c, r),
            "mean_margin_logp": sum(a - b for a, b in zip(rc, rr, strict=True)) / len(rc),
            "mean_logp_opener": sum(opener) / len(opener),  # log p("Sure!" | prompt): the chosen style's start
            **style(model, tokenizer, renderer, held)}, (c, r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft-steps", type=int, default=80)
    ap.add_argument("--steps", type=int, default=40, help="DPO steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3, help="DPO learning rate (chosen on the dev split)")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--sft-weight", type=float, default=1.0, help="rl.dpo_sft_weight (0: pure DPO)")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_dpo"))
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import torch

    from sftkit.config import load_config
    from sftkit.models import load_model, load_tokenizer
    from sftkit.tokenize.render import Renderer
    from sftkit.train import run_stage
    from sftkit.train.pref_rows import PrefRenderer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sft_path, train_path, held_path, held, dev = make_data(out, a.seed)
    tokenizer = load_tokenizer("sftkit-tiny")
    renderer = Renderer(tokenizer)
    rows = with_opener(PrefRenderer(tokenizer, None, "dpo", 1024).rows(held), tokenizer)
    dev_rows = with_opener(PrefRenderer(tokenizer, None, "dpo", 1024).rows(dev), tokenizer)
    lora = {"r": 8, "alpha": 16, "dropout": 0.0, "targets": "all-linear"}
    cfg = load_config(raw={
        "model": "sftkit-tiny", "method": "lora", "lora": lora, "rl": {"beta": a.beta, "dpo_sft_weight": a.sft_weight},
        "data": {"datasets": [{"path": str(sft_path)}], "max_length": 256},
        "train": {"output_dir": str(out / "run"), "max_steps": a.sft_steps, "batch_size": 8, "learning_rate": 3e-3,
                  "lr_scheduler": "cosine", "logging_steps": 10, "save_steps": 10_000, "seed": a.seed,
                  "overwrite": True},
        "stages": [{"stage": "sft"},
                   {"stage": "dpo", "data": {"datasets": [{"path": str(train_path)}], "eval_file": str(held_path)},
                    "train": {"max_steps": a.steps, "learning_rate": a.lr, "eval_steps": a.steps}}]})
    t0 = time.perf_counter()
    root = run_stage(cfg)
    t_train = time.perf_counter() - t0

    t1 = time.perf_counter()
    sft = load_model(str(root / "1-sft" / "final"), precision="fp32")
    before, ref = measure(sft, tokenizer, renderer, rows, held, ref_logps=None)
    dev_before, dev_ref = measure(sft, tokenizer, renderer, dev_rows, dev, ref_logps=None)
    del sft
    trained = load_model(str(root / "2-dpo" / "final"), precision="fp32")
    after, _ = measure(trained, tokenizer, renderer, rows, held, ref_logps=ref)
    dev_after, _ = measure(trained, tokenizer, renderer, dev_rows, dev, ref_logps=dev_ref)
    t_measure = time.perf_counter() - t1
    trl_acc = json.loads((root / "2-dpo" / "final" / "sftkit.json").read_text())["metrics"].get(
        "eval_rewards/accuracies")
    result = {"seed": a.seed, "sft_steps": a.sft_steps, "dpo_steps": a.steps, "dpo_lr": a.lr, "beta": a.beta, "dpo_sft_weight": a.sft_weight,
              "threads": torch.get_num_threads(), "load_average_at_end": os.getloadavg(),
              "train_pairs": sum(1 for _ in open(train_path, encoding="utf-8")), "heldout_pairs": len(rows),
              "dev (for choosing settings)": {"before": dev_before, "after": dev_after},
              "before_dpo (SFT model)": before, "after_dpo": after, "trl_eval_rewards_accuracies": trl_acc,
              "seconds": {"train_sft_then_dpo": round(t_train, 1), "measure": round(t_measure, 1)}}
    (out / "result.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
