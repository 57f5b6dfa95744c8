"""A deterministic embedding for the store's semantic-search tests: one
dimension per word of VOCABULARY, counting its occurrences (case-insensitive),
so "cats" and "a cat" land near each other and far from "dogs" with no model
or network. Named from langgraph.json as "tests.store_embeddings:embed" (a
function), ":aembed" (an async one) or ":embeddings" (an Embeddings object)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from langchain_core.embeddings import Embeddings

VOCABULARY = ("cat", "dog", "fish", "bird")
DIMS = len(VOCABULARY)


def _vector(text: str) -> list[float]:
    words = [w.rstrip("s") for w in re.findall(r"[a-z]+", text.lower())]
    counts = [float(words.count(term)) for term in VOCABULARY]
    norm = math.sqrt(sum(c * c for c in counts))
    # Unrelated text gets a small constant vector: never all zeros, which
    # cosine distance cannot compare.
    return [c / norm for c in counts] if norm else [0.5] * DIMS


def embed(texts: Sequence[str]) -> list[list[float]]:
    return [_vector(text) for text in texts]


async def aembed(texts: Sequence[str]) -> list[list[float]]:
    return embed(texts)


class WordCountEmbeddings(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return _vector(text)


embeddings = WordCountEmbeddings()
