"""Human review: a blind annotation sheet from one or two evaluations, then scores and annotator agreement."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from sftkit.data.kappa import cohen_kappa
from sftkit.errors import SftkitError
from sftkit.eval.report import read_predictions

KEY_SUFFIX = ".key.json"  # which model is behind "response_1" / "response_2" on each row (kept away from annotators)


def make_sheet(dirs: list[str], out: str | Path, seed: int = 42) -> Path:
    """CSV for annotators: id, prompt, reference, response(s), empty score columns; shuffled, models hidden."""
    if not 1 <= len(dirs) <= 2:
        raise SftkitError("give one evaluation folder, or two to compare blind")
    runs = [read_predictions(d) for d in dirs]
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
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            if "id" not in (reader.fieldnames or []):
                raise SftkitError(f"{path}: not a review sheet (no 'id' column; make one with `sftkit eval sheet`)")
            for line, row in enumerate(reader, 2):
                for col, value in row.items():
                    if not (isinstance(col, str) and (col == "score" or col.startswith("score_"))):
                        continue
                    if isinstance(value, str) and value.strip():
                        try:
                            index = int(col.split("_")[1]) - 1 if "_" in col else 0
                            out.setdefault(row["id"], {})[index] = float(value)
                        except ValueError:
                            raise SftkitError(f"{path}:{line}: field {col!r}: score {value!r} is not a number") from None
    except FileNotFoundError:
        raise SftkitError(f"{path}: no such review sheet (CSV)") from None
    except UnicodeDecodeError as e:
        raise SftkitError(f"{path}: not UTF-8 text (byte {e.start}); is it the CSV sheet?") from None
    except csv.Error as e:
        raise SftkitError(f"{path}: not a readable CSV ({e})") from None
    except OSError as e:
        raise SftkitError(f"{path}: cannot read ({e.strerror or e})") from None
    return out


def _read_key(path: Path) -> dict:
    """The unblinding key of a sheet, checked to be what make_sheet writes."""
    try:
        key = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise SftkitError(f"{path}: no such key file") from None
    except UnicodeDecodeError as e:
        raise SftkitError(f"{path}: not UTF-8 text (byte {e.start}); is it the {KEY_SUFFIX} of the sheet?") from None
    except ValueError as e:
        raise SftkitError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise SftkitError(f"{path}: cannot read ({e.strerror or e})") from None
    if not (isinstance(key, dict) and isinstance(key.get("dirs"), list) and all(isinstance(d, str) for d in key["dirs"])
            and isinstance(key.get("rows"), dict)):
        raise SftkitError(f"{path}: not a review-sheet key (written by `sftkit eval sheet` as REVIEW.csv{KEY_SUFFIX})")
    return key


def _model(key: dict, key_path: Path, sheet: str | Path, row_id: str, col: int) -> str:
    try:
        return key["dirs"][key["rows"][row_id]["models"][col]]
    except (KeyError, IndexError, TypeError):
        raise SftkitError(f"{sheet}: row {row_id!r}, score {col + 1} is not in {key_path} "
                          "(is it the key of this sheet?)") from None


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
    a, b = _read_scores(sheet_a), _read_scores(sheet_b)  # a missing sheet is the first thing to report
    key_path = Path(key_path) if key_path else _find_key(Path(sheet_a), Path(sheet_b))
    key = _read_key(key_path)
    per_model: dict[str, list[float]] = {d: [] for d in key["dirs"]}
    labels_a, labels_b = [], []
    for row_id, scores in a.items():
        for col, score in scores.items():
            model = _model(key, key_path, sheet_a, row_id, col)
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
