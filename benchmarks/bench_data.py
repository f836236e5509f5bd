"""Data engine benchmark (not a timed test): conversion speed, memory growth, near-dedup time.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/bench_data.py``). Figures go to benchmarks/README.md.

1. Convert 200k Alpaca records (the zh + en demos cycled, JSONL) with sftkit, against a bare
   ``readline + json.loads + json.dumps`` loop over the same file, in the same run: ratio of speeds.
2. Peak memory (max RSS of a fresh process) converting 200k vs 20k records: ratio.
3. ``--dedup near`` (MinHash LSH) over 100k distinct records: wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LF = REPO / "data" / "llamafactory"


def make_alpaca(path: Path, n: int, distinct: bool = False) -> None:
    base = json.loads((LF / "alpaca_zh_demo.json").read_text("utf-8")) + json.loads((LF / "alpaca_en_demo.json").read_text("utf-8"))
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = dict(base[i % len(base)])
            if distinct:  # a different record each time (near-duplicates of the base ones beyond the first cycle)
                row["instruction"] = f"{row['instruction']} [{i}]"
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def bare_loop(src: Path, dst: Path) -> float:
    t = time.perf_counter()
    with open(src, encoding="utf-8") as fi, open(dst, "w", encoding="utf-8") as fo:
        for line in fi:
            fo.write(json.dumps(json.loads(line), ensure_ascii=False) + "\n")
    return time.perf_counter() - t


def sftkit_convert(src: Path, dst: Path, dedup: str | None = None) -> float:
    from sftkit.data.pipeline import ConvertOptions, convert_files, sources_from_paths

    opts = ConvertOptions(dedup=dedup)
    t = time.perf_counter()
    report = convert_files(sources_from_paths([src], opts), dst, None, opts)
    elapsed = time.perf_counter() - t
    assert report.balanced
    return elapsed


def peak_rss_mb(src: Path, dst: Path) -> float:
    """Max RSS of a fresh process that converts ``src`` (MB)."""
    code = ("import sys, resource; from benchmarks.bench_data import sftkit_convert; from pathlib import Path; "
            "sftkit_convert(Path(sys.argv[1]), Path(sys.argv[2])); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(src), str(dst)], check=True, capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big, small, distinct = tmp / "a200k.jsonl", tmp / "a20k.jsonl", tmp / "d100k.jsonl"
        make_alpaca(big, 200_000)
        make_alpaca(small, 20_000)
        make_alpaca(distinct, 100_000, distinct=True)
        bare = min(bare_loop(big, tmp / "bare.jsonl") for _ in range(2))
        ours = min(sftkit_convert(big, tmp / "ours.jsonl") for _ in range(2))
        results["convert_200k"] = {"bare_loop_s": round(bare, 2), "sftkit_s": round(ours, 2),
                                   "speed_ratio": round(bare / ours, 3), "target": ">= 0.5"}
        m_small, m_big = peak_rss_mb(small, tmp / "s.jsonl"), peak_rss_mb(big, tmp / "b.jsonl")
        results["peak_memory"] = {"rss_20k_mb": round(m_small, 1), "rss_200k_mb": round(m_big, 1),
                                  "ratio": round(m_big / m_small, 3), "target": "<= 2"}
        near = sftkit_convert(distinct, tmp / "near.jsonl", dedup="near")
        kept = sum(1 for _ in open(tmp / "near.jsonl"))
        results["near_dedup_100k"] = {"seconds": round(near, 1), "kept": kept, "target": "< 60 s"}
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
