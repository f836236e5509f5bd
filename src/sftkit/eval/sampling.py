"""Several answers per prompt: pass@k and majority vote (self-consistency), as pure functions.

- ``pass_at_k(n, c, k)``: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
  Trained on Code"): with n samples of which c are correct, the probability that at least one of k
  samples drawn without replacement from them is correct, ``1 - C(n-c, k) / C(n, k)``. Exact integer
  binomials (``math.comb``), so no rounding before the one division. pass@1 is c / n.
- ``majority_vote(answers)``: the answer most samples give (Wang et al. 2022, self-consistency; the ReFT
  paper's "voting"). Answers vote together when they compare equal with eval's compare
  (``answers.answers_match``: numerically when the group's first answer is a number, so ``72``,
  ``72.0`` and ``$72`` are one vote group); a sample without an extracted answer does not vote; a tie
  goes to the group whose first sample came earliest; with no answer at all there is no winner.
"""

from __future__ import annotations

import math

from sftkit.eval.answers import answers_match


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k of the n samples is correct, c of them being correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def k_values(n: int) -> list[int]:
    """The k reported for n samples: powers of two up to n, and n itself (1, 2, 4, ..., n)."""
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else [*ks, n]


def vote_groups(answers: list[str | None]) -> list[list[int]]:
    """Sample indices grouped by equal answer, groups in order of their first sample; no-answer samples
    are left out. An answer joins the first group whose first answer it matches (eval's compare)."""
    groups: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for g in groups:
            if answers_match(answer, answers[g[0]]):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def majority_vote(answers: list[str | None]) -> tuple[str | None, int, bool]:
    """(the winning answer as its group's first sample wrote it, its votes, whether the top was tied);
    (None, 0, False) when no sample has an answer. Ties go to the group that appeared first."""
    groups = vote_groups(answers)
    if not groups:
        return None, 0, False
    top = max(len(g) for g in groups)
    winner = next(g for g in groups if len(g) == top)  # the earliest of the tied groups
    return answers[winner[0]], top, sum(len(g) == top for g in groups) > 1


def item_sampling(answers: list[str | None], final: str) -> dict:
    """One prompt's samples scored against its final answer: correct per sample, pass@k, the vote."""
    correct = [answers_match(a, final) for a in answers]
    n, c = len(answers), sum(correct)
    winner, votes, tied = majority_vote(answers)
    return {
        "correct": correct,
        "correct_samples": c,
        "pass@k": {str(k): pass_at_k(n, c, k) for k in k_values(n)},
        "majority_answer": winner,
        "majority_votes": votes,
        "majority_tied": tied,
        "majority_correct": answers_match(winner, final),
    }


def corpus_sampling(per_item: list[dict], n: int) -> dict:
    """Mean pass@k and maj@n over the items with a final answer (``per_item``: :func:`item_sampling`)."""
    m = len(per_item)
    return {
        "pass@k": {
            str(k): round(sum(p["pass@k"][str(k)] for p in per_item) / m, 4) if m else None
            for k in k_values(n)
        },
        f"maj@{n}": round(sum(p["majority_correct"] for p in per_item) / m, 4) if m else None,
    }
