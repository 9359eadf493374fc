"""Embedding raw examples with any encoder, tokenising in the graph.

Shared by the few-shot learners: a `BertEncoder` (or any encoder with a
`preprocessor`) gets its texts tokenised inside the TensorFlow graph and each
batch trimmed to the length bucket of its longest text, as `kt.export.save`
does for serving; an encoder without a preprocessor (a `WordVectorEncoder`,
which vectorises strings itself, or a projection over cached feature vectors)
receives the examples as they are.
"""

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.pipeline import trim_to_longest


def check_encoder(encoder):
    if not isinstance(encoder, keras.layers.Layer):
        raise TypeError(
            "`encoder` must be a Keras layer that maps a batch of examples to one "
            "vector each, e.g. kt.encoders.BertEncoder.from_preset('minilm', "
            f"pooling='mean'). Received: {type(encoder).__name__}"
        )
    if getattr(encoder, "pooling", "mean") is None:
        raise ValueError(
            "Few-shot learners need one vector per text: build the encoder with "
            "pooling='mean' (or 'cls'/'pooled'), not pooling=None."
        )


def encode(encoder, examples, training=False):
    """`encoder` outputs (float32 `[batch, dim]`) for a batch of raw examples."""
    preprocessor = getattr(encoder, "preprocessor", None)
    if preprocessor is not None:
        features = preprocessor(examples)
        sequence_length = getattr(preprocessor, "sequence_length", None)
        if isinstance(features, dict):
            # The same trimming as the served graph, with its fixed buckets.
            features = trim_to_longest(features, sequence_length)
        examples = features
    return tf.cast(encoder(examples, training=training), tf.float32)


def as_examples(examples, name="texts"):
    """A list of strings or an array of vectors, checked, as a numpy array."""
    if isinstance(examples, str):
        raise TypeError(f"`{name}` must be a list of strings, not one string: wrap it in [...].")
    if isinstance(examples, tf.Tensor):
        examples = examples.numpy()
    array = np.asarray(examples if isinstance(examples, np.ndarray) else list(examples))
    if array.ndim == 0 or len(array) == 0:
        raise ValueError(f"`{name}` is empty: give at least one example.")
    if array.dtype.kind in "US":
        array = array.astype(object)
    if array.dtype == object and not all(isinstance(t, (str, bytes)) for t in array):
        raise TypeError(f"`{name}` must hold strings (or numeric feature vectors).")
    return array


class Embedder:
    """Batched, compiled `encode` for one encoder (traced once per input kind)."""

    def __init__(self, encoder, normalize=False):
        self.encoder = encoder
        self.normalize = normalize
        self._function = tf.function(self._embed, reduce_retracing=True)

    def _embed(self, examples):
        vectors = encode(self.encoder, examples, training=False)
        return tf.math.l2_normalize(vectors, axis=-1) if self.normalize else vectors

    def __call__(self, examples, batch_size=64):
        examples = as_examples(examples)
        if examples.dtype != object:
            examples = examples.astype("float32")
        outputs = [
            self._function(tf.constant(examples[start : start + batch_size]))
            for start in range(0, len(examples), batch_size)
        ]
        return np.concatenate([np.asarray(o) for o in outputs], axis=0)
