"""`SiameseEncoder`: one shared encoder for two texts, cosine similarity out.

A *bi-encoder* (siamese network, as in Sentence-BERT): both texts of a pair go
through the same pooled encoder separately and the model returns the cosine
similarity of the two embeddings. Unlike a cross-encoder (one BERT reading
`[CLS] a [SEP] b [SEP]`, which `kt.data.prepare` builds from text pairs), the
embeddings can be computed once per text and compared by a dot product, so it
suits matching and retrieval over many candidates.

`SiameseEncoder.preprocessor` tokenises a `(text_a, text_b)` pair into one
flat feature dict, so `kt.data.prepare` batches pairs, buckets them by their
longer text, and `kt.export.save_pair` serves them from two string inputs.
`kt.tasks.SentenceSimilarity` is the same bi-encoder as a task (raw text
pairs in `fit` / `predict`, its own export); `SentenceSimilarity.from_model`
wraps a `SiameseEncoder`. Both compute the score with `pair_similarity`.

Example:

```python
import keras, ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
siamese = kt.models.SiameseEncoder(encoder)
pairs = kt.data.from_lists([("a man eats", "someone is eating"), ("a man eats", "it rains")], [1, 0])
batches = kt.data.prepare(pairs, siamese.preprocessor, batch_size=16)
siamese.compile(optimizer=keras.optimizers.Adam(2e-5), loss="mse")
siamese.fit(batches)
embeddings = siamese.embed(encoder.preprocessor(["a query", "a document"]))
```
"""

from ktransfer._keras import keras

FEATURES = ("token_ids", "segment_ids", "padding_mask")


@keras.saving.register_keras_serializable(package="ktransfer")
class PairPreprocessor(keras.layers.Layer):
    """Tokenise both texts of a pair separately, into one flat feature dict.

    Calling it on `(text_a, text_b)` (batches of strings) returns
    `token_ids_a`, `segment_ids_a`, `padding_mask_a`, the same keys with `_b`,
    and `padding_mask`: the element-wise maximum of the two masks, which is
    what `kt.data.prepare` reads to cut a batch to the length bucket of its
    longest text (so neither side is truncated by bucketing).

    Args:
        preprocessor: the single-text preprocessor (`encoder.preprocessor`).
    """

    def __init__(self, preprocessor, **kwargs):
        if not callable(preprocessor):
            raise TypeError("`preprocessor` must be callable, e.g. `encoder.preprocessor`.")
        super().__init__(**kwargs)
        self.preprocessor = preprocessor

    def build(self, input_shape=None):
        self.built = True  # no weights: the wrapped preprocessor holds the vocabulary

    @property
    def sequence_length(self):
        return getattr(self.preprocessor, "sequence_length", None)

    def call(self, x):
        import tensorflow as tf

        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise ValueError(
                "PairPreprocessor takes a (text_a, text_b) pair of string batches, "
                "e.g. from kt.data.from_lists([(a, b), ...]) or from_tsv(text=(col_a, col_b))."
            )
        features = {}
        for side, text in zip(("a", "b"), x):
            single = self.preprocessor(text)
            for key in FEATURES:
                value = single[key]
                if key == "padding_mask":
                    value = tf.cast(value, tf.int32)
                features[f"{key}_{side}"] = value
        features["padding_mask"] = tf.maximum(features["padding_mask_a"], features["padding_mask_b"])
        return features

    def get_config(self):
        config = super().get_config()
        config["preprocessor"] = keras.saving.serialize_keras_object(self.preprocessor)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)


def normalized_embeddings(encoder, features, training=False):
    """float32 L2-normalised `encoder(features)`: one unit vector per text."""
    embeddings = keras.ops.cast(encoder(features, training=training), "float32")
    return keras.ops.normalize(embeddings, axis=-1, order=2)


def pair_similarity(encoder, features, training=False):
    """The cosine similarity, float32 `[batch]`, of the two texts of each pair.

    `features` is the flat dict of `PairPreprocessor` (`token_ids_a`, ...,
    `token_ids_b`, ...); both sides go through the same `encoder`. Shared by
    `SiameseEncoder` and `kt.tasks.SentenceSimilarity`.
    """
    if not isinstance(features, dict) or "token_ids_a" not in features:
        raise TypeError(
            "A siamese model takes the dict of `PairPreprocessor((text_a, text_b))` "
            "(token_ids_a, ..., token_ids_b, ...), e.g. through "
            "kt.data.prepare(pairs, siamese.preprocessor); for raw text pairs use "
            "kt.tasks.SentenceSimilarity.predict((texts_a, texts_b))."
        )
    a = normalized_embeddings(encoder, {k: features[f"{k}_a"] for k in FEATURES}, training)
    b = normalized_embeddings(encoder, {k: features[f"{k}_b"] for k in FEATURES}, training)
    return keras.ops.sum(a * b, axis=-1)


@keras.saving.register_keras_serializable(package="ktransfer")
class SiameseEncoder(keras.Model):
    """Cosine similarity of two texts embedded by one shared, pooled encoder.

    Args:
        encoder: a pooled text encoder layer, e.g.
            `BertEncoder(pooling="mean")` (its `preprocessor` is used to
            tokenise each text).

    Call it on the features of `preprocessor` (`..._a`, `..._b` keys);
    it returns the cosine similarity, float32 `[batch]`, in [-1, 1]. Train it
    with a regression loss on similarity targets (e.g. `"mse"` against 1 for
    matching pairs and 0 for the others, as Sentence-BERT's
    CosineSimilarityLoss) or any loss on the score.
    """

    def __init__(self, encoder, **kwargs):
        if not isinstance(encoder, keras.layers.Layer):
            raise TypeError(
                "`encoder` must be a Keras layer, e.g. "
                f"kt.encoders.BertEncoder(pooling='mean'). Received: {type(encoder).__name__}"
            )
        if getattr(encoder, "pooling", "mean") is None:
            raise ValueError(
                "SiameseEncoder needs one vector per text: build the encoder with "
                "pooling='mean' (or 'cls'/'pooled'), not pooling=None."
            )
        super().__init__(**kwargs)
        self.encoder = encoder
        base = getattr(encoder, "preprocessor", None)
        self.preprocessor = PairPreprocessor(base) if base is not None else None

    def embed(self, features, training=False):
        """The L2-normalised embeddings of single-text `features`."""
        return normalized_embeddings(self.encoder, features, training=training)

    def call(self, inputs, training=None):
        return pair_similarity(self.encoder, inputs, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape["token_ids_a"][0],)

    def get_config(self):
        return {
            "name": self.name,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
