"""A deterministic embedder for the vector tests (imported by their subprocesses too)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

DIMS = 64


def word_vector(word: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)


class CountingEmbedder:
    """A deterministic bag-of-words embedder that counts the texts it embeds."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> list[list[float]]:
        self.texts += texts
        out = []
        for text in texts:
            v = np.zeros(DIMS, np.float32)
            for w in text.lower().split():
                v += word_vector(w)
            out.append(v.tolist())
        return out


def index_of(embed: Any, fields: list[str] | None = None) -> dict[str, Any]:
    return {"dims": DIMS, "embed": embed, "fields": fields or ["text"]}
