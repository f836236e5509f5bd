"""Exact and near-duplicate detection (MinHash LSH over character n-grams, so Chinese works).

Near-duplicates use datasketch's MinHash and MinHashLSH; only the shingle hashing is vectorised here
(numpy over the text's code points) because a Python loop per n-gram would dominate the run time.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
from datasketch import MinHash, MinHashLSH

from sftkit.schema import record_kind
from sftkit.textutil import has_cjk

NUM_PERM = 64
_WS = re.compile(r"\s+")
_TEMPLATE = MinHash(num_perm=NUM_PERM, seed=1)  # its permutations are reused for every signature


def normalize(text: str) -> str:
    """Normalisation for duplicate checks: NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def record_text(rec: dict) -> str:
    """All the text of a canonical record, turn by turn (what two duplicates share)."""
    if record_kind(rec) == "text":
        return rec["text"]
    parts = [m.get("content") or "" for m in rec["messages"]]
    for key in ("chosen", "rejected"):
        if key in rec:
            parts.append(rec[key].get("content") or "")
    return "\x1f".join(parts)


def exact_key(text: str) -> bytes:
    """A 16-byte digest of the normalised text."""
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).digest()


def shingle_hashes(text: str) -> np.ndarray:
    """Unique 32-bit hashes of the character n-grams of the normalised text (n=3 for CJK, else 5)."""
    norm = normalize(text).replace(" ", "")
    n = 3 if has_cjk(norm[:200]) else 5
    cps = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(cps) < n:
        cps = np.concatenate([cps, np.zeros(n - len(cps), dtype=np.uint64)])
    h = np.zeros(len(cps) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * np.uint64(1000003) + cps[k:len(cps) - n + 1 + k]
        h = (h * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    return np.unique(h)


def _identity(x: int) -> int:
    return x


def minhash(text: str) -> MinHash:
    """MinHash signature of a text: our n-gram hashes fed to datasketch's (affine32) permutations."""
    m = MinHash(num_perm=NUM_PERM, seed=1, hashfunc=_identity, permutations=_TEMPLATE.permutations, scheme="affine32")
    m.update_batch(shingle_hashes(text).tolist())
    return m


class Deduper:
    """Streaming duplicate finder: ``check(records, where)`` returns where the first copy was, or None."""

    def __init__(self, mode: str, threshold: float = 0.7):
        if mode not in ("exact", "near"):
            raise ValueError(f"dedup mode must be 'exact' or 'near', got {mode!r}")
        self.mode, self.threshold = mode, threshold
        self.seen: dict[bytes, str] = {}
        self.lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM) if mode == "near" else None
        self.sigs: dict[str, MinHash] = {}

    def check(self, records: list[dict], where: str) -> str | None:
        """Return the location of an earlier (near-)duplicate, else remember these records and return None."""
        text = "\x1e".join(record_text(r) for r in records)
        key = exact_key(text)
        if key in self.seen:
            return self.seen[key]
        if self.lsh is not None:
            sig = minhash(text)
            for cand in self.lsh.query(sig):
                if sig.jaccard(self.sigs[cand]) >= self.threshold:
                    return cand
            if where in self.sigs:
                where = f"{where}#{len(self.sigs)}"
            self.lsh.insert(where, sig)
            self.sigs[where] = sig
        self.seen[key] = where
        return None
