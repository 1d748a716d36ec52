"""Seeded clustered vectors: the shape real embeddings have (topics), unlike uniform noise."""

from __future__ import annotations

import numpy as np
import pytest


def clustered_unit_vectors(count: int, dimensions: int, *, clusters: int = 50, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dimensions)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, count)] + 0.6 * rng.standard_normal((count, dimensions)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def vectors_5k() -> np.ndarray:
    return clustered_unit_vectors(5000, 384)
