"""`sftkit plot RUN [RUN ...]`: loss and eval curves of one or more runs to a PNG."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sftkit.errors import SftkitError


def _lines(path: Path) -> list[dict]:
    """The metric objects of a metrics.jsonl. A last line without its newline that does not parse is what a
    running or killed run leaves: it is skipped with a note on stderr. Any other bad line is an error."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SftkitError(f"{path}: cannot read ({e.strerror or e})") from None
    lines = data.split(b"\n")
    unterminated = lines.pop() if lines else b""  # empty when the file ends with a newline
    out = []
    for number, raw in enumerate([*lines, unterminated], 1):
        if not raw.strip():
            continue
        try:
            m = json.loads(raw.decode("utf-8"))
            if not isinstance(m, dict):
                raise ValueError(f"a JSON {type(m).__name__}, not an object")
            step = m.get("step")
            if not isinstance(step, int | float) or isinstance(step, bool):
                raise ValueError("no number in 'step'")
        except UnicodeDecodeError as e:
            problem = f"not UTF-8 text (byte {e.start}); is it a binary file?"
        except ValueError as e:
            problem = str(e)
        else:
            out.append(m)
            continue
        if number == len(lines) + 1:  # the unterminated last line
            print(f"sftkit: note: {path}:{number}: skipped the incomplete last line ({problem})", file=sys.stderr)
            continue
        raise SftkitError(f"{path}:{number}: not a metrics line ({problem})")
    return out


def _series(run: Path) -> dict[str, list[tuple[int, float]]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SftkitError(f"{run}: no metrics.jsonl (is it a sftkit run folder?)")
    out: dict[str, list[tuple[int, float]]] = {}
    for m in _lines(path):
        for k, v in m.items():
            if k in ("step", "epoch") or not isinstance(v, int | float) or isinstance(v, bool) or k.startswith(
                    "train_") or k.endswith(("_runtime", "_per_second", "grad_norm", "learning_rate")):
                continue
            out.setdefault(k, []).append((m["step"], float(v)))
    return out


def _output(out: str | Path, supported: dict[str, str]) -> Path:
    """The image path to write: an existing folder gets curves.png inside it, no suffix means .png, and an
    unsupported suffix is an error listing the supported ones."""
    out = Path(out)
    if out.is_dir():
        return out / "curves.png"
    if not out.suffix:
        return out.with_name(out.name + ".png")
    if out.suffix[1:].lower() not in supported:
        raise SftkitError(f"{out}: cannot write a {out.suffix!r} image; use one of "
                          + ", ".join("." + s for s in sorted(supported)))
    return out


def plot_runs(runs: list[str], out: str | Path) -> Path:
    """One panel per metric (loss, eval_loss, eval metrics), one line per run; returns the file written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = _output(out, FigureCanvasAgg.get_supported_filetypes())
    data = {r: _series(Path(r)) for r in runs}
    keys = sorted({k for s in data.values() for k in s}, key=lambda k: (k != "loss", k != "eval_loss", k))
    if not keys:
        raise SftkitError(f"no metrics to plot yet in {', '.join(str(Path(r) / 'metrics.jsonl') for r in runs)}")
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
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
