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
    """Cohen's kappa of two equally long label lists, plus observed/expected agreement and per-label agreement."""
    if len(a) != len(b):
        raise ValueError("label lists differ in length")
    n = len(a)
    if not n:
        raise SftkitError("no records carry labels from both annotators")
    ca, cb = Counter(a), Counter(b)
    both = Counter(x for x, y in zip(a, b, strict=True) if x == y)
    po = sum(both.values()) / n
    pe = sum(ca[label] * cb[label] for label in ca) / (n * n)
    kappa = (po - pe) / (1 - pe) if pe < 1 else (1.0 if po == 1 else 0.0)
    labels = sorted(set(ca) | set(cb), key=str)
    per_label = {str(lb): {"annotator_a": ca[lb], "annotator_b": cb[lb],
                           "agreement": round(2 * both[lb] / (ca[lb] + cb[lb]), 4)} for lb in labels}
    return {"n": n, "kappa": round(kappa, 4), "observed_agreement": round(po, 4),
            "expected_agreement": round(pe, 4), "per_label": per_label, "threshold": THRESHOLD,
            "acceptable": kappa > THRESHOLD}


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
    return all(item.error is None and "id" in item.raw for item in iter_file(path))


def kappa_files(path_a: str | Path, path_b: str | Path, field: str, key: str | None = None) -> dict:
    """Kappa between two annotation files, aligned by ``key`` (a field; ``id`` when every record has one)
    or else by record position."""
    if key is None and _has_ids(path_a) and _has_ids(path_b):
        key = "id"
    a, skip_a = read_labels(path_a, field, key)
    b, skip_b = read_labels(path_b, field, key)
    da, db = dict(a), dict(b)
    if key and (len(da) < len(a) or len(db) < len(b)):
        raise SftkitError(f"key field {key!r} is not unique within a file")
    common = [k for k, _ in a if k in db]
    only = sorted(set(da) ^ set(db))
    result = cohen_kappa([da[k] for k in common], [db[k] for k in common])
    result.update({"field": field, "aligned_by": key or "position", "unmatched": len(only),
                   "skipped": {"a": skip_a, "b": skip_b}})
    return result
