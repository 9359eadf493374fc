"""Pretrained word vectors (GloVe, word2vec, fastText, native) read from disk."""

from ktransfer.vectors.word_vectors import WordVectors
from ktransfer.vectors.word_vectors import WordVectorsFormatError

__all__ = ["WordVectors", "WordVectorsFormatError"]
