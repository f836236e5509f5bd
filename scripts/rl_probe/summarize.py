"""Table of run.py results (one JSON line per seed): test accuracy and times per stage, mean over seeds."""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    runs = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    print("| seed | base | SFT plateau (epoch) | SFT + GRPO | control (+epochs) | returns: SFT / GRPO / control "
          "| CPU s: SFT / GRPO / control |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['seed']} | {r['base']['acc']:.1%} | {r['sft']['acc']:.1%} ({r['sft_epoch']}) | "
              f"{r['grpo']['acc']:.1%} | {r['control']['acc']:.1%} (+{r['control_epochs']}) | "
              f"{r['sft']['returns']:.0%} / {r['grpo']['returns']:.0%} / {r['control']['returns']:.0%} | "
              f"{r['t_sft']['cpu_s']:.0f} / {r['t_grpo']['cpu_s']:.0f} / {r['t_control']['cpu_s']:.0f} |")
    if runs:
        mean = {k: sum(r[k]["acc"] for r in runs) / len(runs) for k in ("base", "sft", "grpo", "control")}
        print(f"| mean of {len(runs)} | {mean['base']:.1%} | {mean['sft']:.1%} | {mean['grpo']:.1%} | "
              f"{mean['control']:.1%} | | |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/rl_probe/runs.jsonl")
