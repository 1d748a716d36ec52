"""Semantic memory underneath `MemoryStore`: embedders, the vector index backends, and `SemanticIndex`."""

from server.vectors.embedding import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from server.vectors.hnsw import HnswIndex
from server.vectors.index import Hit, IndexIdentity, VectorIndex
from server.vectors.qdrant import QdrantIndex
from server.vectors.semantic import SemanticIndex, VectorChange, text_to_embed

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "Hit",
    "HnswIndex",
    "IndexIdentity",
    "QdrantIndex",
    "SemanticIndex",
    "SentenceTransformerEmbedder",
    "VectorChange",
    "VectorIndex",
    "text_to_embed",
]
