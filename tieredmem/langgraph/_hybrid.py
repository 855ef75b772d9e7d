"""Hybrid ranking: full-text (BM25) and vector results fused by reciprocal rank fusion.

An item's fused score is ``text_weight / (rrf_k + text_rank) + vector_weight / (rrf_k +
vector_rank)`` (ranks from 1; a list the item is missing from adds nothing), times
``1 + recency_weight * 0.5 ** (age / recency_half_life)`` when a half-life is set (age:
seconds since the item was last updated).  Fusion uses ranks, not raw scores, because
BM25 and cosine similarity live on unrelated scales.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..store import Item

__all__ = ["SEARCH_MODES", "HybridRanking", "fuse"]

#: ``TieredStore(search_mode=...)``: what a search with ``query`` runs when an index is set.
SEARCH_MODES = ("hybrid", "vector", "text")


@dataclass(frozen=True)
class HybridRanking:
    """How ``search_mode="hybrid"`` fuses its two result lists.

    :param float text_weight: weight of the full-text (BM25) ranking.
    :param float vector_weight: weight of the vector (cosine) ranking.
    :param int rrf_k: reciprocal rank fusion's constant (60 in the original paper): the
        larger, the flatter the weight of the first ranks.
    :param recency_half_life: seconds; if set, newer items are boosted, by up to
        ``1 + recency_weight`` for an item updated just now, half that boost at this age.
    :param float recency_weight: the largest recency boost (see above).
    :param int candidates: results taken from each list per result returned (at least
        20 in all).
    """

    text_weight: float = 1.0
    vector_weight: float = 1.0
    rrf_k: int = 60
    recency_half_life: float | None = None
    recency_weight: float = 0.5
    candidates: int = 3

    def __post_init__(self) -> None:
        for name in ("text_weight", "vector_weight", "recency_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
        if isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, int) or self.rrf_k < 0:
            raise ValueError(f"rrf_k must be an integer >= 0, not {self.rrf_k!r}")
        half = self.recency_half_life
        if half is not None and (isinstance(half, bool) or not half > 0):
            raise ValueError(f"recency_half_life must be seconds > 0 or None, not {half!r}")
        if not isinstance(self.candidates, int) or self.candidates < 1:
            raise ValueError(f"candidates must be an integer >= 1, not {self.candidates!r}")


def fuse(
    text: Sequence[Item],
    vector: Sequence[tuple[Item, float]],
    ranking: HybridRanking,
    now: float,
) -> list[tuple[Item, float]]:
    """Both lists (best first) fused, best first, each item once with its fused score."""
    scores: dict[tuple[tuple[str, ...], str], float] = {}
    items: dict[tuple[tuple[str, ...], str], Item] = {}
    k = ranking.rrf_k
    for rank, item in enumerate(text, 1):
        address = (item.namespace, item.key)
        items[address] = item
        scores[address] = scores.get(address, 0.0) + ranking.text_weight / (k + rank)
    for rank, (item, _) in enumerate(vector, 1):
        address = (item.namespace, item.key)
        items.setdefault(address, item)
        scores[address] = scores.get(address, 0.0) + ranking.vector_weight / (k + rank)
    half = ranking.recency_half_life
    if half is not None:
        for address, score in scores.items():
            age = max(0.0, now - items[address].updated)
            scores[address] = score * (1.0 + ranking.recency_weight * 0.5 ** (age / half))
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    return [(items[address], score) for address, score in ranked]
