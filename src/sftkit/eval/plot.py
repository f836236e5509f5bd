"""`sftkit plot RUN [RUN ...]`: loss and eval curves of one or more runs to a PNG."""

from __future__ import annotations

import json
from pathlib import Path

from sftkit.errors import SftkitError


def _series(run: Path) -> dict[str, list[tuple[int, float]]]:
    path = run / "metrics.jsonl"
    if not path.exists():
        raise SftkitError(f"{run}: no metrics.jsonl (is it a sftkit run folder?)")
    out: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_text().splitlines():
        m = json.loads(line)
        for k, v in m.items():
            if k in ("step", "epoch") or not isinstance(v, int | float) or k.startswith("train_") or k.endswith(
                    ("_runtime", "_per_second", "grad_norm", "learning_rate")):
                continue
            out.setdefault(k, []).append((m["step"], float(v)))
    return out


def plot_runs(runs: list[str], out: str | Path) -> Path:
    """One panel per metric (loss, eval_loss, eval metrics), one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {r: _series(Path(r)) for r in runs}
    keys = sorted({k for s in data.values() for k in s}, key=lambda k: (k != "loss", k != "eval_loss", k))
    if not keys:
        raise SftkitError("no metrics to plot yet")
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 3 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        for run, series in data.items():
            if key in series:
                steps, values = zip(*series[key], strict=True)
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=Path(run).name)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
