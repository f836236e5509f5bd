"""Human review: a blind annotation sheet from one or two evaluations, then scores and annotator agreement."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from sftkit.data.kappa import cohen_kappa
from sftkit.errors import SftkitError

KEY_SUFFIX = ".key.json"  # which model is behind "response_1" / "response_2" on each row (kept away from annotators)


def _predictions(d: str | Path) -> list[dict]:
    path = Path(d) / "predictions.jsonl"
    if not path.exists():
        raise SftkitError(f"{d}: no predictions.jsonl (run `sftkit eval ... -o {d}` first)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def make_sheet(dirs: list[str], out: str | Path, seed: int = 42) -> Path:
    """CSV for annotators: id, prompt, reference, response(s), empty score columns; shuffled, models hidden."""
    if not 1 <= len(dirs) <= 2:
        raise SftkitError("give one evaluation folder, or two to compare blind")
    runs = [_predictions(d) for d in dirs]
    if len(runs) == 2 and [p["prompt"] for p in runs[0]] != [p["prompt"] for p in runs[1]]:
        raise SftkitError("the two evaluations cover different samples; evaluate both on the same data")
    rng = random.Random(seed)
    order = list(range(len(runs[0])))
    rng.shuffle(order)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    key = {"dirs": [str(d) for d in dirs], "seed": seed, "rows": {}}
    n = len(runs)
    if n == 1:
        header = ["id", "prompt", "reference", "prediction", "score", "comment"]
    else:
        header = ["id", "prompt", "reference", "response_1", "response_2", "score_1", "score_2", "comment"]
    with open(out, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row_id, i in enumerate(order):
            models = list(range(n))
            rng.shuffle(models)  # blind: which run is response_1 changes from row to row
            key["rows"][str(row_id)] = {"sample": i, "models": models}
            w.writerow([row_id, runs[0][i]["prompt"], runs[0][i]["reference"]]
                       + [runs[m][i]["prediction"] for m in models] + [""] * n + [""])
    Path(str(out) + KEY_SUFFIX).write_text(json.dumps(key, indent=2))
    return out


def _read_scores(path: str | Path) -> dict[str, dict[int, float]]:
    """row id -> {response column index: score} for the filled cells of a sheet."""
    out: dict[str, dict[int, float]] = {}
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), 2):
            for col, value in row.items():
                if col and (col == "score" or col.startswith("score_")) and value and value.strip():
                    try:
                        index = int(col.split("_")[1]) - 1 if "_" in col else 0
                        out.setdefault(row["id"], {})[index] = float(value)
                    except ValueError:
                        raise SftkitError(f"{path}:{line}: field {col!r}: score {value!r} is not a number") from None
    return out


def _find_key(sheet_a: Path, sheet_b: Path) -> Path:
    for candidate in (Path(str(sheet_a) + KEY_SUFFIX), Path(str(sheet_b) + KEY_SUFFIX)):
        if candidate.exists():
            return candidate
    found = sorted({*sheet_a.parent.glob("*" + KEY_SUFFIX), *sheet_b.parent.glob("*" + KEY_SUFFIX)})
    if len(found) == 1:
        return found[0]
    raise SftkitError(f"cannot tell which {KEY_SUFFIX} maps these sheets back to models "
                      f"({len(found)} found next to them); pass --key REVIEW.csv{KEY_SUFFIX}")


def human_scores(sheet_a: str | Path, sheet_b: str | Path, key_path: str | Path | None = None) -> dict:
    """Mean score per model (unblinded with the sheet's key) and Cohen's kappa between the two annotators."""
    key_path = Path(key_path) if key_path else _find_key(Path(sheet_a), Path(sheet_b))
    key = json.loads(key_path.read_text())
    a, b = _read_scores(sheet_a), _read_scores(sheet_b)
    per_model: dict[str, list[float]] = {d: [] for d in key["dirs"]}
    labels_a, labels_b = [], []
    for row_id, scores in a.items():
        for col, score in scores.items():
            model = key["dirs"][key["rows"][row_id]["models"][col]]
            per_model[model].append(score)
            other = b.get(row_id, {}).get(col)
            if other is not None:
                labels_a.append(str(score))
                labels_b.append(str(other))
                per_model[model].append(other)
    if not labels_a:
        raise SftkitError("the two sheets share no scored cells: both annotators must score the same sheet")
    agreement = cohen_kappa(labels_a, labels_b)
    return {"mean_score": {m: round(sum(v) / len(v), 4) if v else None for m, v in per_model.items()},
            "scored": {m: len(v) for m, v in per_model.items()}, "kappa": agreement}
