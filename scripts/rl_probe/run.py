"""One seed of the ReFT-protocol probe: base -> SFT to the dev plateau -> GRPO vs. more SFT (control).

1. base: greedy test accuracy of the shipped base.
2. SFT (one demonstration per training question) epoch by epoch; dev accuracy after each epoch; stop when it
   has not risen for ``--patience`` epochs; the best-dev epoch is the plateau checkpoint.
3. GRPO from the plateau on the same questions (reward: answer match against meta.final_answer).
4. control: SFT from the plateau (same optimizer state) for the same CPU time GRPO took.
5. test accuracy of each. Dev decides everything; test is only read for the report.
Times: wall seconds and process CPU seconds (the machine is shared; CPU time is the budget the control matches).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import random
import time

import torch
from common import accuracy, load, rows, sft_epoch
from grpo import add_args
from grpo import train as grpo_train


class Clock:
    def __init__(self):
        self.w, self.c = time.time(), time.process_time()

    def __call__(self) -> dict:
        return {"wall_s": round(time.time() - self.w, 1), "cpu_s": round(time.process_time() - self.c, 1)}


def sft_to_plateau(model, tok, ren, train, dev, a, rng):
    """SFT epochs until dev accuracy has not risen for ``patience`` epochs; returns best state + history."""
    opt = torch.optim.AdamW(model.parameters(), lr=a.sft_lr, weight_decay=0.0)
    best, best_state, history, since = -1.0, None, [], 0
    for ep in range(1, a.max_epochs + 1):
        loss = sft_epoch(model, opt, train, a.batch, rng)
        acc = accuracy(model, tok, ren, dev)
        history.append((ep, round(loss, 3), acc["acc"]))
        print(f"  sft epoch {ep} loss {loss:.3f} dev {acc}", flush=True)
        if acc["acc"] > best:
            best, since = acc["acc"], 0
            best_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), ep)
        else:
            since += 1
            if since >= a.patience:
                break
    return best_state, history


def control(model, tok, ren, train, dev, opt_state, a, rng, cpu_budget: float):
    """More SFT epochs from the plateau for ``cpu_budget`` CPU seconds (whole epochs, at least one)."""
    opt = torch.optim.AdamW(model.parameters(), lr=a.sft_lr, weight_decay=0.0)
    opt.load_state_dict(opt_state)
    c0, epochs = time.process_time(), 0
    while epochs == 0 or time.process_time() - c0 < cpu_budget:
        sft_epoch(model, opt, train, a.batch, rng)
        epochs += 1
    return epochs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default="routing")
    p.add_argument("--slip", type=float, default=0.7)
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--sft-lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--out", default="")
    add_args(p)
    a = p.parse_args()
    a.eval_every = 0 if a.eval_every is None else a.eval_every
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    data = importlib.import_module(a.task).make_data(a.seed, n_train=a.n_train, slip_rate=a.slip)
    model, tok, ren = load()
    res = {"seed": a.seed, "args": vars(a)}
    clock = Clock()
    res["base"] = accuracy(model, tok, ren, data["test"])
    res["t_base_eval"] = clock()
    print("base", res["base"], res["t_base_eval"], flush=True)

    clock = Clock()
    train_rows = rows(ren, data["train"])
    (state, opt_state, ep), res["sft_history"] = sft_to_plateau(model, tok, ren, train_rows, data["dev"], a, rng)
    res["t_sft"] = clock()
    model.load_state_dict(state)
    res["sft_epoch"] = ep
    res["sft"] = accuracy(model, tok, ren, data["test"])
    print("sft plateau", ep, res["sft"], res["t_sft"], flush=True)

    clock = Clock()
    grpo_train(model, tok, ren, data["train"], data["dev"], a, a.seed)
    res["t_grpo"] = clock()
    res["grpo"] = accuracy(model, tok, ren, data["test"])
    print("grpo", res["grpo"], res["t_grpo"], flush=True)

    model.load_state_dict(state)
    clock = Clock()
    res["control_epochs"] = control(model, tok, ren, train_rows, data["dev"], opt_state, a, rng,
                                    res["t_grpo"]["cpu_s"])
    res["t_control"] = clock()
    res["control"] = accuracy(model, tok, ren, data["test"])
    print("control", res["control_epochs"], res["control"], res["t_control"], flush=True)
    print("SUMMARY", json.dumps({k: res[k]["acc"] for k in ("base", "sft", "grpo", "control")}))
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
