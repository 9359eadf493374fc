"""Pretrained text encoders as Keras layers with trainable toggles."""

from ktransfer.encoders.bert_encoder import BertEncoder
from ktransfer.encoders.word_vector_encoder import WordVectorEncoder

__all__ = ["BertEncoder", "WordVectorEncoder"]
