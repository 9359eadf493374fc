"""Pretrained text encoders as Keras layers with trainable toggles.

All subclass `Encoder` (the protocol export, predict and the tasks use:
`preprocessor`, `layer_groups()`, `output_dim`, `set_trainable`);
`find_encoder(model)` finds one in a model.
"""

from ktransfer.encoders.base import Encoder
from ktransfer.encoders.base import find_encoder
from ktransfer.encoders.base import iter_layers
from ktransfer.encoders.bert_encoder import BertEncoder
from ktransfer.encoders.word_vector_encoder import WordVectorEncoder

__all__ = ["BertEncoder", "Encoder", "WordVectorEncoder", "find_encoder", "iter_layers"]
