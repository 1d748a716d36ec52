"""int8 scalar quantisation of the SQLite copy: small, and close to the original."""

from __future__ import annotations

import numpy as np
import pytest

from server.errors import InvalidArgument
from server.vectors.quantization import blob_bytes, dequantize, quantize
from tests.vectors.conftest import clustered_unit_vectors


def test_round_trip_error_is_at_most_half_a_step_and_cosine_is_kept() -> None:
    vectors = clustered_unit_vectors(500, 384)
    restored = dequantize(quantize(vectors), 384)
    steps = np.abs(vectors).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(restored - vectors) <= steps / 2 + 1e-7)
    cosine = np.sum(restored * vectors, axis=1) / np.linalg.norm(restored, axis=1)
    assert cosine.min() > 0.999


def test_a_stored_vector_is_at_least_3_9_times_smaller_than_float32() -> None:
    blob = quantize(clustered_unit_vectors(1, 384))[0]
    assert len(blob) == blob_bytes(384) == 388
    assert 384 * 4 / len(blob) >= 3.9


def test_zero_vector_and_wrong_blob_size() -> None:
    assert np.array_equal(dequantize(quantize(np.zeros((1, 8))), 8), np.zeros((1, 8)))
    with pytest.raises(InvalidArgument, match="not 12 bytes"):
        dequantize([b"\x00" * 11], 8)
