"""Annotation consistency: Cohen's kappa between two annotators, with per-label agreement.

Practitioners accept a labelling guideline when kappa > 0.8; below that the labels disagree too
often to train or evaluate on.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sftkit.data.readers import iter_file
from sftkit.errors import SftkitError

THRESHOLD = 0.8


def cohen_kappa(a: list, b: list) -> dict:
    """Cohen's kappa of two equally long label lists, plus observed/expected agreement and per-label agreement.

    Kappa is undefined (``None``, with the reason in ``undefined``, and never acceptable) when fewer than two
    pairs are compared or the expected agreement is 1 (both annotators used one and the same label throughout):
    then (po - pe) / (1 - pe) divides by zero and no agreement beyond chance can be measured.
    """
    if len(a) != len(b):
        raise ValueError("label lists differ in length")
    n = len(a)
    if not n:
        raise SftkitError("no records carry labels from both annotators")
    ca, cb = Counter(a), Counter(b)
    both = Counter(x for x, y in zip(a, b, strict=True) if x == y)
    po = sum(both.values()) / n
    chance = sum(ca[label] * cb[label] for label in ca)
    pe = chance / (n * n)
    undefined = None
    if n < 2:
        undefined = f"only {n} record compared (kappa needs at least 2)"
    elif chance == n * n:
        undefined = (f"both annotators gave every one of the {n} records the same label {next(iter(ca))!r}, "
                     "so agreement by chance is 1")
    kappa = None if undefined else (po - pe) / (1 - pe)
    labels = sorted(set(ca) | set(cb), key=str)
    per_label = {str(lb): {"annotator_a": ca[lb], "annotator_b": cb[lb],
                           "agreement": round(2 * both[lb] / (ca[lb] + cb[lb]), 4)} for lb in labels}
    return {"n": n, "kappa": None if kappa is None else round(kappa, 4), "undefined": undefined, "observed_agreement": round(po, 4),
            "expected_agreement": round(pe, 4), "per_label": per_label, "threshold": THRESHOLD,
            "acceptable": kappa is not None and kappa > THRESHOLD}


def _get(raw: dict, dotted: str):
    cur = raw
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _label(value) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value).strip().lower() if isinstance(value, bool) else str(value).strip()


def read_labels(path: str | Path, field: str, key: str | None) -> tuple[list[tuple], list[dict]]:
    """(key or position, label) pairs of a file, and the records skipped with their reason."""
    pairs, skipped = [], []
    for item in iter_file(path):
        if item.error:
            skipped.append({"where": item.where(), "reason": item.error})
            continue
        label = _label(_get(item.raw, field))
        k = _get(item.raw, key) if key else item.index
        if label is None:
            skipped.append({"where": item.where(), "reason": f"no label in field {field!r}"})
        elif k is None:
            skipped.append({"where": item.where(), "reason": f"no key in field {key!r}"})
        else:
            pairs.append((str(k), label))
    return pairs, skipped


def _has_ids(path: str | Path) -> bool:
    """True when the file has records and every one is an object with an ``id``."""
    seen = False
    for item in iter_file(path):
        if item.error is not None or not isinstance(item.raw, dict) or "id" not in item.raw:
            return False
        seen = True
    return seen


def _why_none(path: str | Path, skipped: list[dict]) -> str:
    """Why a file gave no (key, label) pair: empty, or what its records lack (the commonest reason first)."""
    if not skipped:
        return f"{path} has no records"
    reasons = Counter(s["reason"] for s in skipped)
    reason, count = reasons.most_common(1)[0]
    first = next(s for s in skipped if s["reason"] == reason)
    return (f"{path}: none of its {len(skipped)} record(s) is usable ({count} x {reason}, "
            f"first at {first['where']})")


def _unique(path: str | Path, pairs: list[tuple], key: str) -> dict:
    out: dict = {}
    for k, label in pairs:
        if k in out:
            raise SftkitError(f"{path}: key field {key!r} is not unique (value {k!r} repeats)")
        out[k] = label
    return out


def kappa_files(path_a: str | Path, path_b: str | Path, field: str, key: str | None = None) -> dict:
    """Kappa between two annotation files, aligned by ``key`` (a field; ``id`` when every record of both files
    has one) or else by record position.

    Raises:
        SftkitError: no record pairs up, naming the files, the field and the key (and which side lacks them).
    """
    auto = key is None and _has_ids(path_a) and _has_ids(path_b)
    key = "id" if auto else key
    a, skip_a = read_labels(path_a, field, key)
    b, skip_b = read_labels(path_b, field, key)
    da, db = (_unique(path_a, a, key), _unique(path_b, b, key)) if key else (dict(a), dict(b))
    common = [k for k, _ in a if k in db]
    if not common:
        wanted = f"a label in field {field!r}" + (f" and a key in field {key!r}" if key else "")
        why = [_why_none(p, s) for p, pairs, s in ((path_a, a, skip_a), (path_b, b, skip_b)) if not pairs]
        if not why:
            why = [f"{path_a} ({len(a)} labelled) and {path_b} ({len(b)} labelled) share no "
                   + (f"value of key {key!r}" if key else "record position")]
        raise SftkitError(f"no records carry labels from both annotators (wanted {wanted}): " + "; ".join(why))
    only = sorted(set(da) ^ set(db))
    result = cohen_kappa([da[k] for k in common], [db[k] for k in common])
    alignment = ("field 'id', found in every record of both files (no --key given)" if auto
                 else f"field {key!r}" if key else "record position")
    result.update({"field": field, "aligned_by": key or "position", "alignment": alignment,
                   "unmatched": len(only), "skipped": {"a": skip_a, "b": skip_b}})
    return result
