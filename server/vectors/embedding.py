"""Embedders turn text into unit vectors. The default, `HashingEmbedder`, needs no model download.

Every embedder has a ``name`` that says which model (and version of its recipe) produced a
vector; the index and the SQLite copy record it so vectors of two embedders are never mixed.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from typing import Any, Protocol

import numpy as np

from server.errors import InvalidArgument, Unavailable

# Only the start of a very long value is embedded: it bounds the cost of one store, and the
# opening of a text says most about what it is.
EMBED_MAX_CHARS = 8192

_WORD = re.compile(r"\w+")
# Relative weights of the three feature families: whole words say the most, character
# n-grams mostly rescue inflections and typos.
_UNIGRAM_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.7
_CHAR_GRAM_WEIGHT = 0.35
_CHAR_GRAM_SIZES = (3, 4)
# A text with no features at all (empty, only punctuation) still needs a unit vector.
_NO_FEATURES = "\x00no-features"
# Cap on memoised words; beyond it the memo starts over (features are recomputed identically).
_MEMO_MAX = 200_000


class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    @property
    def name(self) -> str:
        """Identifies the model and recipe, including the dimension, e.g. ``hashing-v1/384``."""
        ...

    @property
    def dimensions(self) -> int: ...

    @property
    def inline_chars(self) -> int:
        """Texts this short in all are embedded on the event loop; longer ones in a worker thread."""
        ...

    @property
    def default_min_score(self) -> float | None:
        """The score below which a search hit is unrelated noise (measured), or None when unknown."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """A ``(len(texts), dimensions)`` float32 array of unit vectors. Blocking: call it from a worker thread."""
        ...


class HashingEmbedder:
    """Feature hashing: word unigrams and bigrams plus character 3- and 4-grams of each word, each
    hashed with blake2b (stable across processes and machines, unlike Python's salted ``hash()``)
    to a signed slot, weighted ``1 + log(tf)`` of its word or bigram, then L2-normalised.

    Texts sharing words and word pieces land close together; it knows nothing of synonyms.
    """

    def __init__(self, dimensions: int = 384) -> None:
        if not 16 <= dimensions <= 4096:
            raise InvalidArgument(f"the hashing embedder takes 16..4096 dimensions; got {dimensions}")
        self._dimensions = dimensions
        self._words: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def name(self) -> str:
        return f"hashing-v1/{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def inline_chars(self) -> int:
        return 2048  # about 0.2 ms of hashing: less than the hop to a worker thread and back

    @property
    def default_min_score(self) -> float | None:
        # benchmarks/relevance_bench.py: related pairs score 0.29..0.59; at 0.2 every one is kept (with a
        # margin) and 2.1% of unrelated pairs pass (those sharing a word); unrelated texts score 0.
        return 0.2

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row] = self._embed_one(text)
        return vectors

    def _embed_one(self, text: str) -> np.ndarray:
        words = _WORD.findall(unicodedata.normalize("NFKC", text[:EMBED_MAX_CHARS]).casefold())
        slot_parts: list[np.ndarray] = []
        value_parts: list[np.ndarray] = []
        # A word brings its unigram and its character n-grams, all weighted by the word's 1 + log(tf).
        for word, tf in Counter(words).items():
            slots, values = self._word_features(word)
            slot_parts.append(slots)
            value_parts.append(values * (1.0 + math.log(tf)))
        bigrams = Counter(zip(words, words[1:]))
        if bigrams:
            hashed = [self._slot(f"b:{first} {second}") for first, second in bigrams]
            slot_parts.append(np.array([slot for slot, _ in hashed], dtype=np.int64))
            value_parts.append(
                np.array([sign * _BIGRAM_WEIGHT * (1.0 + math.log(tf)) for (_, sign), tf in zip(hashed, bigrams.values())])
            )
        if not slot_parts:
            slot, sign = self._slot(_NO_FEATURES)
            slot_parts, value_parts = [np.array([slot])], [np.array([sign])]
        vector = np.bincount(np.concatenate(slot_parts), weights=np.concatenate(value_parts), minlength=self._dimensions)
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:  # every feature cancelled out by sign: use the no-feature vector
            slot, sign = self._slot(_NO_FEATURES)
            vector[slot], norm = sign, 1.0
        return (vector / norm).astype(np.float32)

    def _word_features(self, word: str) -> tuple[np.ndarray, np.ndarray]:
        """Slots and signed weights of a word's unigram and character n-grams (memoised)."""
        known = self._words.get(word)
        if known is not None:
            return known
        padded = f"<{word}>"
        features = [(f"w:{word}", _UNIGRAM_WEIGHT)] + [
            (f"c:{padded[i:i + size]}", _CHAR_GRAM_WEIGHT)
            for size in _CHAR_GRAM_SIZES
            for i in range(len(padded) - size + 1)
        ]
        hashed = [(self._slot(feature), weight) for feature, weight in features]
        result = (
            np.array([slot for (slot, _), _ in hashed], dtype=np.int64),
            np.array([sign * weight for (_, sign), weight in hashed], dtype=np.float64),
        )
        if len(self._words) >= _MEMO_MAX:
            self._words.clear()
        self._words[word] = result
        return result

    def _slot(self, feature: str) -> tuple[int, float]:
        digest = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
        # Low bits pick the slot, the top bit the sign, so the two are independent.
        return (digest & 0x7FFF_FFFF_FFFF_FFFF) % self._dimensions, (1.0 if digest >> 63 else -1.0)


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from local files only (no download at run time).

    Needs the optional extra: ``pip install 'switchboard-mcp[semantic]'``.
    """

    def __init__(self, model: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise Unavailable(
                "SWITCHBOARD_VECTOR_EMBEDDER=sentence-transformers needs the optional package: "
                "pip install 'switchboard-mcp[semantic]' (or use the built-in 'hashing' embedder)"
            ) from None
        try:
            self._model: Any = SentenceTransformer(model, device="cpu", local_files_only=True)
        except Exception as error:  # the library raises several types for a missing or broken model
            raise Unavailable(
                f"cannot load the sentence-transformers model {model!r} from local files ({error}); "
                "set SWITCHBOARD_VECTOR_MODEL to a model directory or a model already in the local cache"
            ) from error
        measure = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self._dimensions = int(measure())
        self._model_name = model

    @property
    def name(self) -> str:
        return f"sentence-transformers:{self._model_name}/{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def inline_chars(self) -> int:
        return 0  # a forward pass of a model takes milliseconds even for one word: always a worker thread

    @property
    def default_min_score(self) -> float | None:
        return None  # depends on the model: set SWITCHBOARD_VECTOR_MIN_SCORE from its measured scores

    def embed(self, texts: list[str]) -> np.ndarray:
        clipped = [text[:EMBED_MAX_CHARS] for text in texts]
        vectors = self._model.encode(clipped, convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self._dimensions)
