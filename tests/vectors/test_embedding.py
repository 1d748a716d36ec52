"""The hashing embedder: deterministic across processes, unit vectors, similar texts close."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from server.errors import InvalidArgument, Unavailable
from server.vectors import HashingEmbedder, SentenceTransformerEmbedder, text_to_embed

TEXTS = ["Fixed the login bug in the auth service", "ünïcödé café naïve résumé", "", "!!!", "x " * 5000]
REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from server.vectors import HashingEmbedder
texts = {texts!r}
sys.stdout.write(HashingEmbedder(384).embed(texts).tobytes().hex())
"""


@pytest.mark.parametrize("hash_seed", ["1", "4242"])
def test_same_vectors_in_another_process_whatever_its_hash_seed(hash_seed: str) -> None:
    here = HashingEmbedder(384).embed(TEXTS).tobytes().hex()
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    child = subprocess.run([sys.executable, "-c", CHILD.format(texts=TEXTS)], cwd=REPO, env=env,
                           capture_output=True, text=True, check=True, timeout=60)
    assert child.stdout == here


def test_vectors_are_unit_length_even_without_features() -> None:
    vectors = HashingEmbedder(384).embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_related_texts_score_higher_than_unrelated_ones() -> None:
    query, related, inflected, unrelated = HashingEmbedder(384).embed(
        ["login bug", "fixed the login bug in auth", "logins are bugged", "sailing trip to the islands"]
    )
    assert float(query @ related) > float(query @ inflected) > float(query @ unrelated)
    assert float(query @ unrelated) < 0.1


def test_dimension_is_part_of_the_name_and_checked() -> None:
    assert HashingEmbedder(128).name == "hashing-v1/128"
    with pytest.raises(InvalidArgument, match=r"16\.\.4096"):
        HashingEmbedder(8)


def test_text_to_embed_prefers_the_string_then_its_text_field_then_canonical_json() -> None:
    assert text_to_embed('{"raw": "json text"}') == '{"raw": "json text"}'
    assert text_to_embed({"text": "the note", "other": 1}) == "the note"
    assert text_to_embed({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'


def test_sentence_transformers_absent_is_a_clear_error() -> None:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(Unavailable, match=r"pip install 'switchboard-mcp\[semantic\]'"):
            SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    else:
        with pytest.raises(Unavailable, match="from local files"):
            SentenceTransformerEmbedder("/nonexistent/model-directory")


def test_settings_pick_the_embedder(tmp_path: Path) -> None:
    from server.config import Settings
    from server.services import build_semantic_index

    assert build_semantic_index(Settings(data_dir=tmp_path)).embedder_name == "hashing-v1/384"
    assert build_semantic_index(Settings(data_dir=tmp_path, vector_dimensions=256)).embedder_name == "hashing-v1/256"
    with pytest.raises(Unavailable, match="needs SWITCHBOARD_VECTOR_MODEL"):
        build_semantic_index(Settings(data_dir=tmp_path, vector_embedder="sentence-transformers"))
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(Unavailable, match="optional package"):
            build_semantic_index(Settings(data_dir=tmp_path, vector_model="all-MiniLM-L6-v2"))


async def test_a_model_embeds_in_a_worker_thread_however_short_the_text() -> None:
    import threading

    from server.vectors import HnswIndex, IndexIdentity, SemanticIndex

    class ThreadNoting:
        """The hashing embedder, recording the thread each call ran on, and as costly as a model."""

        def __init__(self, inline_chars: int) -> None:
            self._inner = HashingEmbedder(16)
            self.name, self.dimensions, self.inline_chars = self._inner.name, 16, inline_chars
            self.default_min_score = None
            self.threads: list[str] = []

        def embed(self, texts: list[str]):  # type: ignore[no-untyped-def]
            self.threads.append(threading.current_thread().name)
            return self._inner.embed(texts)

    for inline_chars, on_loop in ((0, False), (2048, True)):
        embedder = ThreadNoting(inline_chars)
        index = HnswIndex(Path("/nonexistent/unused.hnsw"), IndexIdentity(embedder.name, 16))
        semantic = SemanticIndex(embedder, index, indexed_namespaces=["*"], save_every=10)
        await semantic.embed(["hi"])
        assert (embedder.threads == [threading.current_thread().name]) is on_loop
