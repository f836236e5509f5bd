"""`make demo`: the data engine on the real datasets shipped in data/ (training joins in the next stage).

Checks every LLaMA-Factory dataset in the registry copy and GSM8K, converts them to canonical JSONL
with rejects beside, prints the quality report of the Chinese + English Alpaca demos, and mixes a
training set by category share. Outputs land in out/demo/.
"""

from __future__ import annotations

from pathlib import Path

from sftkit.data.mix import mix
from sftkit.data.pipeline import ConvertOptions, Report, convert_files, iter_converted, sources_from_paths
from sftkit.data.quality import QualityStats
from sftkit.data.registry import load_registry, registry_sources
from sftkit.data.render import check_text, mix_text, stats_text

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
OUT = REPO / "out" / "demo"


def _title(text: str) -> None:
    print(f"\n=== {text} ===")


def main() -> None:
    """Run the demo end to end and print each report."""
    opts = ConvertOptions()
    lf = DATA / "llamafactory"
    names = [n for n, e in load_registry(lf).items() if e.get("file_name") and (lf / e["file_name"]).exists()]
    _title(f"1. convert {len(names)} LLaMA-Factory datasets through its registry + GSM8K")
    for name in names:
        report = convert_files(registry_sources(lf, [name], opts), OUT / f"{name}.jsonl", None, opts)
        f = report.files[0]
        print(f"  {name:<26} {f.format:<10} read {f.read:>5} = converted {f.converted:>5} + rejected {f.rejected}")
    report = convert_files(sources_from_paths([DATA / "gsm8k"], opts), OUT / "gsm8k.jsonl", None, opts)
    print(check_text(report))

    _title("2. quality report: alpaca zh + en demos (exact and near duplicates, noise, languages)")
    stats, report = QualityStats(), Report()
    paths = [lf / "alpaca_zh_demo.json", lf / "alpaca_en_demo.json"]
    for item, records, _ in iter_converted(sources_from_paths(paths, opts), opts, report):
        for rec in records or []:
            stats.add(rec, f"{Path(item.source).name}:{item.line}")
    print(stats_text(stats.result(), report))

    _title("3. mix by category share (examples/mix_zh_en.yaml)")
    print(mix_text(mix(REPO / "examples" / "mix_zh_en.yaml", OUT / "mix.jsonl")))
    print(f"\noutputs in {OUT.relative_to(REPO)}/")


if __name__ == "__main__":
    main()
