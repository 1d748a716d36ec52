"""Semantic memory underneath `MemoryStore`: embedders, the vector index backends, and `SemanticIndex`.

`QdrantIndex` lives in `server.vectors.qdrant` and is not imported here: qdrant-client adds
about 60 MiB to the resident size of every process, and only a Qdrant deployment needs it.
"""

from server.vectors.embedding import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from server.vectors.hnsw import HnswIndex
from server.vectors.index import Hit, IndexIdentity, VectorIndex
from server.vectors.semantic import SemanticIndex, VectorChange, text_to_embed

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "Hit",
    "HnswIndex",
    "IndexIdentity",
    "SemanticIndex",
    "SentenceTransformerEmbedder",
    "VectorChange",
    "VectorIndex",
    "text_to_embed",
]
