"""SFT learning curve on the probe task: dev/test greedy accuracy per epoch (for choosing SFT settings)."""

from __future__ import annotations

import argparse
import importlib
import random

import torch
from common import Timer, accuracy, load, rows, sft_epoch

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--n-train", type=int, default=400)
p.add_argument("--save", default="")
p.add_argument("--task", default="routing")
p.add_argument("--slip", type=float, default=0.7)
a = p.parse_args()

torch.manual_seed(a.seed)
data = importlib.import_module(a.task).make_data(a.seed, n_train=a.n_train, slip_rate=a.slip)
model, tok, ren = load()
clock = Timer()
print("base dev", accuracy(model, tok, ren, data["dev"]), f"{clock():.1f}s")
train = rows(ren, data["train"])
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
rng = random.Random(a.seed)
for ep in range(1, a.epochs + 1):
    loss = sft_epoch(model, opt, train, a.batch, rng)
    t = clock()
    dev = accuracy(model, tok, ren, data["dev"])
    print(f"ep {ep} loss {loss:.3f} dev {dev} t={t:.1f}s", flush=True)
    if a.save:
        torch.save(model.state_dict(), f"{a.save}_ep{ep}.pt")
