"""Per-question accuracy over k sampled responses: mean@k, exact maj@k and verl's bootstrap maj@k.

For one question with k responses, each carrying the scorer's ``pred`` (the extracted answer that alone
decides the reward) and ``acc`` (0/1):

  mean@k             = (1/k) sum_i acc_i
  maj@k (exact)      = acc of the FIRST response whose pred is the most frequent pred among the k
                       (ties: the pred seen first wins)
  maj@k (bootstrap)  = verl's ``process_validation_metrics``: draw R = 1000 index vectors of size k with
                       replacement from a numpy RandomState seeded with 42 (the same draws for every question,
                       as verl reseeds per question), take the exact majority above on each resample
                       (in resample order), average the R values.

Benchmark numbers are the means of these per-question values over the questions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 42


def _vote_keys(preds: Sequence[object]) -> list[str]:
    """Votes as strings; a missing pred (None) votes as the empty answer."""
    return ["" if pred is None else str(pred) for pred in preds]


def _check(preds: Sequence[object], accs: Sequence[float]) -> None:
    if len(preds) != len(accs):
        raise ValueError(f"got {len(preds)} preds but {len(accs)} accs")
    if len(preds) == 0:
        raise ValueError("need at least one response")


def mean_accuracy(accs: Sequence[float]) -> float:
    """mean@k of one question: the average acc of its k responses."""
    if len(accs) == 0:
        raise ValueError("need at least one response")
    return float(np.mean(np.asarray(accs, dtype=np.float64)))


def exact_majority_accuracy(preds: Sequence[object], accs: Sequence[float]) -> float:
    """maj@k of one question: acc of the first response carrying the most frequent pred (ties: first seen)."""
    _check(preds, accs)
    votes = _vote_keys(preds)
    counts: dict[str, int] = {}
    for vote in votes:
        counts[vote] = counts.get(vote, 0) + 1
    winner = max(counts, key=counts.__getitem__)  # dicts keep insertion order, so ties go to the first seen
    return float(accs[votes.index(winner)])


def bootstrap_indices(
    num_responses: int, subset_size: int, *, n_bootstrap: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """The [n_bootstrap, subset_size] resample indices verl draws (``np.random.seed(seed); np.random.choice``)."""
    return np.random.RandomState(seed).choice(num_responses, size=(n_bootstrap, subset_size), replace=True)


def bootstrap_majority_accuracy(
    preds: Sequence[object],
    accs: Sequence[float],
    *,
    subset_size: int | None = None,
    n_bootstrap: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> float:
    """verl's bootstrap maj@k of one question (see the module docstring); ``subset_size`` defaults to k.

    Vectorised: votes become integer codes [k]; each resample's codes [R, s] are counted per code with a
    one-hot sum [R, C]; the first position (in resample order) holding a maximal count's code picks the acc.
    Among tied codes the one appearing first in the resample wins, as with verl's insertion-ordered dict.
    """
    _check(preds, accs)
    votes = _vote_keys(preds)
    codes_of = {vote: code for code, vote in enumerate(dict.fromkeys(votes))}
    codes = np.array([codes_of[vote] for vote in votes])
    acc_values = np.asarray(accs, dtype=np.float64)
    size = len(votes) if subset_size is None else subset_size
    index = bootstrap_indices(len(votes), size, n_bootstrap=n_bootstrap, seed=seed)  # [R, s]
    resampled = codes[index]  # [R, s]
    counts = (resampled[:, :, None] == np.arange(len(codes_of))[None, None, :]).sum(1)  # [R, C]
    count_at_position = np.take_along_axis(counts, resampled, axis=1)  # [R, s]: votes for the code at each slot
    is_winner = count_at_position == counts.max(1, keepdims=True)  # [R, s]
    first_winner = is_winner.argmax(1)  # the first slot whose code has the maximal count
    chosen = index[np.arange(len(index)), first_winner]
    return float(acc_values[chosen].mean())
