"""`WordFeatures`: one feature vector per whitespace-separated word (word vector + casing).

`WordFeaturesPreprocessor` turns sentences into what `WordFeatures` reads
(the ids of each word's pieces and its casing class) in the tf.data
pipeline; `WordFeatures` also still reads raw sentences itself, as it did
before it had a preprocessor.
"""

import tensorflow as tf

from ktransfer._keras import keras
from ktransfer.encoders.word_vector_encoder import WordVectorPreprocessor
from ktransfer.encoders.word_vector_encoder import check_token_encoder
from ktransfer.encoders.word_vector_encoder import string_batch

# Casing classes of a word, in priority order (0 is padding).
CASE_CLASSES = ("<pad>", "lower", "Title", "UPPER", "has_digit", "other")
_CASE_PATTERNS = (  # (class id, RE2 full-match pattern), first match wins
    (4, r".*\d.*"),  # "1996", "F-16", "3rd"
    (2, r"\p{Lu}[^\p{Lu}]*"),  # "Paris", "Mr.", "A"
    (3, r"[^\p{Ll}]*\p{Lu}[^\p{Ll}]*"),  # "EU", "U.S.", "NEW-YORK"
    (1, r"[^\p{Lu}]*\p{Ll}[^\p{Lu}]*"),  # "rejects", "o'clock"
)  # anything else (punctuation, "McDonald", "iPhone") is "other" (5)
UNK_ID = 1  # the `[UNK]` row of a WordVectorEncoder's embedding


def case_classes(words):
    """The casing class id (see `CASE_CLASSES`) of each word of a string tensor.

    Example:

    ```python
    from ktransfer.layers.word_features import case_classes
    case_classes(["the", "Paris", "EU", "1996", ",", "McDonald"])  # [1, 2, 3, 4, 5, 5]
    ```
    """
    words = tf.convert_to_tensor(words, tf.string)
    classes = tf.fill(tf.shape(words), tf.constant(5, tf.int32))
    for class_id, pattern in reversed(_CASE_PATTERNS):
        classes = tf.where(tf.strings.regex_full_match(words, pattern), class_id, classes)
    return classes


@keras.saving.register_keras_serializable(package="ktransfer")
class WordFeaturesPreprocessor(keras.layers.Layer):
    """Sentences -> the ids of each word's pieces and its casing class, in tf.data.

    The words of a sentence are its whitespace-separated tokens
    (`tf.strings.split`), every one kept (no length limit). Each word goes
    through the encoder's preprocessor (`standardize`, then a split on
    whitespace: `"it's"` may become the pieces `"it"`, `"'s"`), and a word
    with no piece left (removed by `standardize`) reads `[UNK]`.

    Args:
        preprocessor: the `WordVectorPreprocessor` of the tagger's encoder
            (`encoder.preprocessor`), which holds the vocabulary.

    Returns:
        A dict: `token_ids` int32 `[batch, words, pieces]` (0 pads),
        `case_ids` int32 `[batch, words]` (`case_classes`, 0 on padding) and
        `padding_mask` bool `[batch, words]` (True on words); at least one
        word and one piece column, so that empty sentences still fit.

    Example:

    ```python
    import numpy as np, ktransfer as kt
    vectors = kt.WordVectors(["eu", "rejects", "german", "call"], np.eye(4, dtype="float32"))
    encoder = kt.encoders.WordVectorEncoder(vectors, standardize="lower")
    encoder.adapt(["eu rejects german call"])
    preprocessor = kt.layers.WordFeaturesPreprocessor(encoder.preprocessor)
    features = preprocessor(["EU rejects German call", "call"])
    features["token_ids"].shape  # (2, 4, 1): 2 sentences, 4 words, 1 piece each
    features["case_ids"][0]      # [3, 1, 2, 1]: UPPER, lower, Title, lower
    ```
    """

    def __init__(self, preprocessor, **kwargs):
        if isinstance(preprocessor, dict):  # from_config
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        if not isinstance(preprocessor, WordVectorPreprocessor):
            raise TypeError(
                "`preprocessor` must be the WordVectorPreprocessor of the encoder "
                f"(`encoder.preprocessor`). Received: {type(preprocessor).__name__}"
            )
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        self.preprocessor = preprocessor
        self.sequence_length = None  # every word is kept
        self.supports_jit = False  # string ops
        self._allow_non_tensor_positional_args = True
        self._convert_input_args = False
        self.built = True

    def call(self, sentences):
        sentences = string_batch(sentences, "WordFeatures")
        words = tf.strings.split(sentences)  # [batch, (words)]
        flat = words.flat_values
        pieces = self.preprocessor.vectorizer(flat)  # [total_words, (pieces)]
        width = tf.maximum(pieces.bounding_shape(axis=1), 1)
        ids = pieces.to_tensor(default_value=0, shape=tf.stack([tf.size(flat, tf.int64), width]))
        no_piece = tf.equal(pieces.row_lengths(), 0)[:, None]
        first_column = tf.equal(tf.range(tf.shape(ids)[1]), 0)[None, :]
        ids = tf.where(no_piece & first_column, tf.constant(UNK_ID, ids.dtype), ids)
        num_words = tf.maximum(words.bounding_shape(axis=1), 1)
        batch = words.nrows()
        token_ids = words.with_flat_values(tf.cast(ids, tf.int32)).to_tensor(
            default_value=0, shape=tf.stack([batch, num_words, tf.cast(width, tf.int64)])
        )
        case_ids = words.with_flat_values(case_classes(flat)).to_tensor(
            default_value=0, shape=tf.stack([batch, num_words])
        )
        return {
            "token_ids": token_ids,
            "case_ids": case_ids,
            "padding_mask": tf.not_equal(case_ids, 0),
        }

    def compute_output_spec(self, sentences):
        batch = sentences.shape[0] if sentences.shape else None
        return {
            "token_ids": keras.KerasTensor((batch, None, None), dtype="int32"),
            "case_ids": keras.KerasTensor((batch, None), dtype="int32"),
            "padding_mask": keras.KerasTensor((batch, None), dtype="bool"),
        }

    def get_config(self):
        config = super().get_config()
        config["preprocessor"] = keras.saving.serialize_keras_object(self.preprocessor)
        return config


@keras.saving.register_keras_serializable(package="ktransfer")
class WordFeatures(keras.layers.Layer):
    """Sentences -> one feature vector per word `[batch, words, dim]`.

    The words are the whitespace-separated tokens of each sentence. A word's
    features are its vector from `encoder` (the mean over the pieces its
    `standardize` mode cuts it into, e.g. "it's" -> "it 's" with
    `"lower_and_split_punctuation"`; the `[UNK]` vector when it has none)
    followed by a `case_dim`-sized trainable embedding of its casing class
    (`case_classes`; none with `case_dim=0`). Padding positions are exactly
    zero and the padding mask (a word or not) is attached to the output, so
    Keras RNN layers skip padding. Every word is kept: the encoder's
    `sequence_length` does not cut sentences here.

    Inputs: what `layer.preprocessor` (a `WordFeaturesPreprocessor`)
    returns, which the tagger task computes in the tf.data pipeline; or, as
    before it had a preprocessor, raw sentences `[batch]`.

    Args:
        encoder: an adapted `kt.encoders.WordVectorEncoder(pooling=None)`.
        case_dim: size of the casing embedding; 0 leaves casing out.

    Example:

    ```python
    import numpy as np, ktransfer as kt
    vectors = kt.WordVectors(["eu", "rejects", "german", "call"], np.eye(4, dtype="float32"))
    encoder = kt.encoders.WordVectorEncoder(vectors, standardize="lower")
    encoder.adapt(["eu rejects german call"])
    features = kt.layers.WordFeatures(encoder, case_dim=2)
    features(features.preprocessor(["EU rejects German call"])).shape  # (1, 4, 6): 4 + 2
    features(["EU rejects German call"]).shape  # the same, from raw sentences
    ```
    """

    def __init__(self, encoder, case_dim=8, **kwargs):
        if isinstance(encoder, dict):  # from_config
            encoder = keras.saving.deserialize_keras_object(encoder)
        check_token_encoder(encoder, "WordFeatures")
        if isinstance(case_dim, bool) or not isinstance(case_dim, int) or case_dim < 0:
            raise ValueError(f"`case_dim` must be an int >= 0. Received: {case_dim!r}")
        super().__init__(**kwargs)
        self.encoder = encoder
        self.case_dim = case_dim
        self.case_embedding = None
        if case_dim:
            self.case_embedding = keras.layers.Embedding(
                len(CASE_CLASSES), case_dim, name="case_embedding"
            )
        # Shares the encoder's vocabulary (the same WordVectorPreprocessor).
        self.preprocessor = WordFeaturesPreprocessor(encoder.preprocessor, name="preprocessor")
        self.supports_masking = True
        self.supports_jit = False  # when it reads raw sentences
        self._allow_non_tensor_positional_args = True
        self._convert_input_args = False

    @property
    def output_dim(self):
        return self.encoder.embedding_dim + self.case_dim

    def build(self, input_shape=None):
        self.encoder.build(input_shape)
        if self.case_embedding is not None:
            self.case_embedding.build((None,))
        self.built = True

    def _features(self, inputs):
        """The preprocessor's dict of `inputs` (computed here for raw sentences)."""
        if isinstance(inputs, dict):
            missing = {"token_ids", "case_ids"} - set(inputs)
            if missing:
                raise ValueError(
                    "WordFeatures takes the dict of its `preprocessor` (token_ids, "
                    f"case_ids) or raw sentences; the dict lacks {sorted(missing)}."
                )
            return inputs
        return self.preprocessor(inputs)

    def call(self, inputs):
        features = self._features(inputs)
        ids = features["token_ids"]  # [batch, words, pieces]
        is_word = tf.reduce_any(tf.not_equal(ids, 0), axis=-1)  # every word has a piece or [UNK]
        weights = tf.cast(tf.not_equal(ids, 0), self.compute_dtype)[..., None]
        vectors = self.encoder.embedding(ids)
        vectors = tf.reduce_sum(vectors * weights, axis=2) / tf.maximum(tf.reduce_sum(weights, axis=2), 1.0)
        if self.case_embedding is not None:
            cases = self.case_embedding(features["case_ids"])
            vectors = tf.concat([vectors, tf.cast(cases, vectors.dtype)], axis=-1)
        return vectors * tf.cast(is_word, vectors.dtype)[..., None]  # padding exactly zero

    def compute_mask(self, inputs, mask=None):
        if isinstance(inputs, dict):
            ids = inputs["token_ids"]
            if isinstance(ids, keras.KerasTensor):
                return keras.ops.any(keras.ops.not_equal(ids, 0), axis=-1)
            return tf.reduce_any(tf.not_equal(ids, 0), axis=-1)
        if isinstance(inputs, keras.KerasTensor):
            # Over raw strings, as in WordVectorEncoder: the mask is attached when the model runs.
            return None
        return self.preprocessor(inputs)["padding_mask"]

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            shape = tuple(input_shape["token_ids"])
            return (shape[0], shape[1], self.output_dim)
        batch = input_shape[0] if input_shape else None
        return (batch, None, self.output_dim)

    def compute_output_spec(self, inputs):
        if isinstance(inputs, dict):
            shape = {key: tuple(value.shape) for key, value in inputs.items()}
        else:
            shape = tuple(inputs.shape)
        return keras.KerasTensor(self.compute_output_shape(shape), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "case_dim": self.case_dim,
            }
        )
        return config
