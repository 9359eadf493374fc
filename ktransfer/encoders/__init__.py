"""Pretrained text encoders as Keras layers with trainable toggles."""

from ktransfer.encoders.bert_encoder import BertEncoder

__all__ = ["BertEncoder"]
