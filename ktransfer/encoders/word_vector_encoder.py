"""`WordVectorEncoder`: pretrained word vectors as one Keras layer, and its preprocessor.

`WordVectorPreprocessor` (`encoder.preprocessor`) turns raw strings into
token ids in the tf.data pipeline; the encoder maps ids to vectors (and, for
code written before it had a preprocessor, still reads raw strings itself).
Tokens are whitespace-separated words, or, with a KerasHub subword
`tokenizer` (automatic for `kt.WordVectors.from_encoder` vectors), that
tokenizer's pieces.
"""

import collections
import os
import re

import numpy as np
import tensorflow as tf

from ktransfer._keras import keras
from ktransfer.encoders.base import Encoder
from ktransfer.encoders.keras_hub_adapter import tokenizer_pieces
from ktransfer.encoders.keras_hub_adapter import tokenizer_special_tokens
from ktransfer.vectors.word_vectors import WordVectors

STANDARDIZE_MODES = (
    "lower_and_strip_punctuation",
    "lower",
    "strip_punctuation",
    "lower_and_split_punctuation",
    None,
)
OOV_MODES = ("random", "zeros", "mean")
POOLING_MODES = (None, "mean", "max")
PADDING_TOKEN = ""
OOV_TOKEN = "[UNK]"
NUM_SPECIAL_TOKENS = 2  # row 0: padding, row 1: out-of-vocabulary
_ADAPT_BATCH_SIZE = 1024
# Missing words made of known words joined by these ("mind-numbingly",
# "and/or") start as the mean of their parts' vectors.
_COMPOUND_SEPARATORS = re.compile(r"[-/]")
_ROWS_PER_STEP = 1 << 16  # rows per step when computing the vectors' statistics

# Keras' "strip_punctuation" character class, kept identical.
_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'
# Characters that TensorFlow's whitespace split keeps inside tokens but that
# Python's `str.splitlines` treats as line breaks: Keras writes the vocabulary
# one token per line and reads it back with `splitlines`, so a token holding
# one would come back as two. They are separators in practice: make them spaces.
_LINE_SEPARATORS = "[\x1c\x1d\x1e\x85\u2028\u2029]"
# "lower_and_split_punctuation": Penn-Treebank-like rules (the tokenisation of
# GloVe 6B, word2vec's news text and SST) applied with RE2, inside the graph.
_SPLIT_PUNCTUATION_RULES = (
    ("[\u2018\u2019\u201b\u2032]", "'"),  # curly apostrophes
    ("[\u201c\u201d\u201e\u2033]", '"'),  # curly quotes
    (r"(\s)", r"\1 "),  # each rule below eats one space on each side: keep spares
    (r'([!?;:()\[\]{}"])', r" \1 "),  # always their own token
    (r"([^\s.])(\.\.\.)", r"\1 \2"),  # "wow..." -> "wow ..."
    (r"(^|\s)([^\s.]+)\.(\s|$)", r"\1\2 .\3"),  # final period; keeps "u.s.", "3.5"
    (r"([^\s]),(\s|$)", r"\1 ,\2"),  # "good, but" -> "good , but"; keeps "10,000"
    (r"(\w)(n't)\b", r"\1 \2"),  # "isn't" -> "is n't"
    (r"(\w)('s|'re|'ve|'ll|'d|'m)\b", r"\1 \2"),  # "it's" -> "it 's"
)


def standardize_texts(texts, standardize):
    """Apply one of `WordVectorEncoder`'s `standardize` modes to a string tensor.

    The encoder splits the result on whitespace. Lowercasing is Unicode-aware
    (`"Café"` -> `"café"`; Keras' own modes lowercase ASCII only).

    Args:
        texts: a `tf.string` tensor (any shape) or something convertible.
        standardize: one of `STANDARDIZE_MODES`:
            `"lower_and_strip_punctuation"` (Keras' default: lowercase, delete
            ASCII punctuation, so `"isn't"` -> `"isnt"`), `"lower"`,
            `"strip_punctuation"`, `"lower_and_split_punctuation"` (lowercase
            and cut punctuation and English clitics off words the Penn
            Treebank way, `"It's good."` -> `"it 's good ."`, which matches the
            tokenisation of GloVe 6B, and leaves already tokenised text such
            as SST-2 as it is) or None.

    Returns:
        A `tf.string` tensor of the same shape.

    Example:

    ```python
    from ktransfer.encoders.word_vector_encoder import standardize_texts
    standardize_texts(["It isn't bad, really!"], "lower_and_split_punctuation")
    # [b"it  is n't  bad ,  really ! "]  (the encoder splits on any whitespace)
    ```
    """
    _check_standardize(standardize)
    texts = tf.strings.regex_replace(texts, _LINE_SEPARATORS, " ")
    if standardize in ("lower", "lower_and_strip_punctuation", "lower_and_split_punctuation"):
        texts = tf.strings.lower(texts, encoding="utf-8")
    if standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
        texts = tf.strings.regex_replace(texts, _PUNCTUATION, "")
    if standardize == "lower_and_split_punctuation":
        for pattern, rewrite in _SPLIT_PUNCTUATION_RULES:
            texts = tf.strings.regex_replace(texts, pattern, rewrite)
    return texts


def string_batch(texts, layer_name):
    """`texts` as a 1-D `tf.string` batch (a `[batch, 1]` column is squeezed)."""
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    if texts.shape.rank == 2 and texts.shape[-1] == 1:
        texts = tf.squeeze(texts, axis=-1)
    if texts.shape.rank != 1:
        raise ValueError(
            f"{layer_name} takes a batch of strings of shape [batch] or "
            f"[batch, 1]. Received shape: {texts.shape}"
        )
    return texts


def _check_max_tokens(max_tokens):
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= NUM_SPECIAL_TOKENS:
        raise ValueError(
            f"`max_tokens` must be an int > {NUM_SPECIAL_TOKENS} (it counts the "
            f"padding and '{OOV_TOKEN}' tokens). Received: {max_tokens!r}"
        )


def _check_sequence_length(sequence_length):
    if sequence_length is not None and (
        isinstance(sequence_length, bool)
        or not isinstance(sequence_length, int)
        or sequence_length < 1
    ):
        raise ValueError(
            f"`sequence_length` must be a positive int or None. Received: {sequence_length!r}"
        )


def _check_standardize(standardize, allow_auto=False):
    if not (allow_auto and standardize == "auto") and standardize not in STANDARDIZE_MODES:
        raise ValueError(
            f"`standardize` must be one of {STANDARDIZE_MODES}. Received: "
            f"{standardize!r}. For text that is already tokenised and lowercased "
            "(SST-2, CoNLL), 'lower' keeps punctuation tokens and clitics such as "
            "\"n't\" and \"'s\" that GloVe has vectors for."
        )


def resolve_standardize(standardize, tokenizer):
    """`"auto"` -> None with a subword tokenizer (it normalises text), else Keras' default."""
    _check_standardize(standardize, allow_auto=True)
    if standardize == "auto":
        return None if tokenizer is not None else "lower_and_strip_punctuation"
    return standardize


def check_tokenizer(tokenizer):
    """`tokenizer` if None or a KerasHub tokenizer (with `get_vocabulary`); else a TypeError."""
    if tokenizer is None:
        return None
    if not isinstance(tokenizer, keras.layers.Layer) or not callable(
        getattr(tokenizer, "get_vocabulary", None)
    ):
        raise TypeError(
            "`tokenizer` must be a KerasHub tokenizer (e.g. `bert_encoder.preprocessor.tokenizer`, "
            "a SentencePiece XLMRobertaTokenizer or a WordPiece BertTokenizer) or None "
            f"(split on whitespace). Received: {type(tokenizer).__name__}"
        )
    return tokenizer


# Pieces that would not survive TextVectorization's vocabulary file (one per
# line, read back with `splitlines`): they stay out of the vocabulary ([UNK]).
_LINE_BREAKING = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


@keras.saving.register_keras_serializable(package="ktransfer")
class WordVectorPreprocessor(keras.layers.Layer):
    """Raw strings -> the token ids of a `WordVectorEncoder`, run in tf.data.

    The word-vector counterpart of BERT's preprocessor: standardises each
    text (`standardize_texts`), splits it on whitespace and maps the words to
    embedding rows (0 = padding, 1 = `[UNK]`) with a
    `keras.layers.TextVectorization` (`.vectorizer`) that holds the
    vocabulary. Run it in the `tf.data` pipeline (`kt.data.prepare(dataset,
    encoder.preprocessor)`, or a task's `fit`), so that the model itself only
    sees integer tensors: the same model then trains under any distribution
    strategy and on TPUs.

    With a `tokenizer` (a KerasHub subword tokenizer: SentencePiece for
    multilingual-e5, WordPiece for MiniLM / BERT) texts are cut into that
    tokenizer's pieces instead of whitespace-separated words, in the graph
    (the tokenizer's ids, then their pieces), and the pieces map to
    embedding rows: the tokenisation of `kt.WordVectors.from_encoder`
    vectors, which a `WordVectorEncoder` over them sets up by itself.

    Every `WordVectorEncoder` has one (`encoder.preprocessor`), and
    `encoder.adapt(texts)` sets its vocabulary; build one by hand only to
    preprocess for an encoder that was restored without it.

    Args:
        max_tokens: vocabulary size including the padding and `[UNK]` tokens.
        sequence_length: texts are cut to this many tokens and padded to it
            (a fixed shape, as BERT's preprocessor gives; `kt.data.prepare`
            then trims each batch to a length bucket). None pads each call to
            its longest text instead.
        standardize: one of `STANDARDIZE_MODES` (see `standardize_texts`),
            or `"auto"`: None with a `tokenizer` (it normalises text itself),
            else `"lower_and_strip_punctuation"`.
        tokenizer: None (split on whitespace) or a KerasHub tokenizer whose
            pieces are the tokens. Saved with the layer (its vocabulary
            travels in a `.keras` file as the tokenizer's asset).

    Call:
        `texts`: strings `[batch]` or `[batch, 1]` (a list, a numpy array or
        a `tf.string` tensor), or one string (as `dataset.map(preprocessor)`
        on an unbatched dataset gives: the outputs then have no batch axis).

    Returns:
        A dict: `token_ids` int32 `[batch, sequence_length]` and
        `padding_mask` bool (True on real tokens, i.e. `token_ids != 0`).

    Example:

    ```python
    import numpy as np, ktransfer as kt
    vectors = kt.WordVectors(["a", "great", "film"], np.eye(3, dtype="float32"))
    encoder = kt.encoders.WordVectorEncoder(vectors, sequence_length=4, fill_vocabulary=False)
    encoder.adapt(["a great film"])
    encoder.preprocessor(["a great film", "film zorg"])["token_ids"]
    # [[2, 4, 3, 0], [3, 1, 0, 0]]  ("a", "great", "film" by frequency then name; zorg -> [UNK])
    ```
    """

    def __init__(
        self,
        max_tokens=50_000,
        sequence_length=64,
        standardize="auto",
        tokenizer=None,
        **kwargs,
    ):
        _check_max_tokens(max_tokens)
        _check_sequence_length(sequence_length)
        if isinstance(tokenizer, dict):  # a config (from_config)
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        tokenizer = check_tokenizer(tokenizer)
        standardize = resolve_standardize(standardize, tokenizer)
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        self.max_tokens = max_tokens
        self.sequence_length = sequence_length
        self.standardize = standardize
        self.tokenizer = tokenizer
        # Caches, set past Keras' and TensorFlow's attribute tracking (plain data):
        # the tokenizer's pieces in id order (read on first use), and as an eager tensor.
        object.__setattr__(self, "_pieces", None)
        object.__setattr__(self, "_pieces_table", None)
        self.vectorizer = keras.layers.TextVectorization(
            max_tokens=max_tokens,
            standardize=self._standardize,
            split="whitespace" if tokenizer is None else self._split_into_pieces,
            output_mode="int",
            ragged=True,
            name="vectorizer",
        )
        self.supports_jit = False  # string ops
        # Accept Python lists of strings, as Keras' own TextVectorization does.
        self._allow_non_tensor_positional_args = True
        self._convert_input_args = False
        self.built = True

    def _standardize(self, texts):
        if self.tokenizer is not None and self.standardize is None:
            return texts  # exactly what the tokenizer reads
        return standardize_texts(texts, self.standardize)

    def tokenizer_pieces(self):
        """The tokenizer's pieces in id order (a list of str), or None without a tokenizer."""
        if self.tokenizer is None:
            return None
        if self._pieces is None:
            object.__setattr__(self, "_pieces", tokenizer_pieces(self.tokenizer))
        return self._pieces

    def _split_into_pieces(self, texts):
        ids = self.tokenizer(texts)
        if isinstance(ids, (list, tuple)):  # KerasHub's eager SentencePiece path: lists of ids
            ids = tf.ragged.constant(
                [list(row) for row in ids], dtype=tf.int64, ragged_rank=1, inner_shape=()
            )
        elif not isinstance(ids, tf.RaggedTensor):  # dense ids (a tokenizer that pads)
            ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(ids))
        if tf.executing_eagerly():  # one table for every eager call (250k pieces for e5)
            if self._pieces_table is None:
                object.__setattr__(
                    self, "_pieces_table", tf.constant(self.tokenizer_pieces(), dtype=tf.string)
                )
            table = self._pieces_table
        else:  # a constant of the graph being traced (tf.data, tf.function, the export)
            table = tf.constant(self.tokenizer_pieces(), dtype=tf.string)
        return tf.ragged.map_flat_values(tf.gather, table, tf.cast(ids, tf.int64))

    def split_words(self, texts):
        """The tokens of a 1-D batch of texts, before the vocabulary lookup: ragged `tf.string`.

        Standardised and split on whitespace, or the tokenizer's pieces.

        Example:

        ```python
        import ktransfer as kt
        preprocessor = kt.encoders.word_vector_encoder.WordVectorPreprocessor(standardize="lower")
        preprocessor.split_words(["A great film"]).to_list()   # [[b'a', b'great', b'film']]
        ```
        """
        texts = string_batch(texts, "WordVectorPreprocessor")
        texts = self._standardize(texts)
        if self.tokenizer is None:
            return tf.strings.split(texts)
        return self._split_into_pieces(texts)

    @property
    def vocabulary(self):
        """The words, in id order: `["", "[UNK]", most frequent, ...]` (the first two only before `adapt`)."""
        return [str(word) for word in self.vectorizer.get_vocabulary()]

    def set_vocabulary(self, words):
        """Set the words of ids 2, 3, ... (`WordVectorEncoder.adapt` calls it)."""
        self.vectorizer.set_vocabulary(list(words))

    def token_ids(self, texts, pad_to_sequence_length=False):
        """int64 `[batch, length]` ids (0 = padding, 1 = `[UNK]`), cut to `sequence_length`.

        Padded to the longest text of the batch (at least one column, so that
        empty texts still give one padding position), or to `sequence_length`
        with `pad_to_sequence_length=True` (when it is set).
        """
        texts = string_batch(texts, "WordVectorPreprocessor")
        ids = self.vectorizer(texts)
        if self.sequence_length is not None:
            ids = ids[:, : self.sequence_length]
        if pad_to_sequence_length and self.sequence_length is not None:
            width = tf.constant(self.sequence_length, tf.int64)
        else:
            width = tf.maximum(ids.bounding_shape(axis=1), 1)
        return ids.to_tensor(default_value=0, shape=tf.stack([tf.shape(texts, tf.int64)[0], width]))

    def call(self, texts):
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        single = texts.shape.rank == 0  # one example, as `dataset.map(preprocessor)` gives
        ids = tf.cast(self.token_ids(texts[None] if single else texts, pad_to_sequence_length=True), tf.int32)
        if self.sequence_length is not None:
            ids.set_shape([None, self.sequence_length])  # static, as TPUs want
        if single:
            ids = ids[0]
        return {"token_ids": ids, "padding_mask": tf.not_equal(ids, 0)}

    def compute_output_spec(self, texts):
        if not texts.shape:
            shape = (self.sequence_length,)
            return {
                "token_ids": keras.KerasTensor(shape, dtype="int32"),
                "padding_mask": keras.KerasTensor(shape, dtype="bool"),
            }
        shape = (texts.shape[0], self.sequence_length)
        return {
            "token_ids": keras.KerasTensor(shape, dtype="int32"),
            "padding_mask": keras.KerasTensor(shape, dtype="bool"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_tokens": self.max_tokens,
                "sequence_length": self.sequence_length,
                "standardize": self.standardize,
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer)
                if self.tokenizer is not None
                else None,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="ktransfer")
class WordVectorEncoder(Encoder):
    """Pretrained word vectors (GloVe, word2vec, fastText) as one Keras layer.

    Returns one vector per token (`pooling=None`: `[batch, length, dim]`
    with a Keras mask, padding positions exactly zero) or one per text
    (`"mean"`, `"max"` over the real tokens: `[batch, dim]`). Two parts, as
    BERT encoders have: `encoder.preprocessor`, a `WordVectorPreprocessor`
    that standardises, splits on whitespace and maps words to ids (its
    `keras.layers.TextVectorization` is also `encoder.vectorizer`), and a
    `keras.layers.Embedding` (`.embedding`) whose rows are the pretrained
    vectors of the task's vocabulary.

    Inputs: what the preprocessor returns (a dict with `token_ids`, int
    `[batch, length]`; the mask is `token_ids != 0`), or int ids alone. Run
    the preprocessor in the tf.data pipeline (`kt.data.prepare(dataset,
    encoder.preprocessor)`; the word-vector tasks `kt.models.TextCNN`,
    `BiLSTMClassifier` and `BiLSTMTagger` do it in `fit` and `predict`), so
    that no string reaches the model: then it trains under any distribution
    strategy and on TPUs. For code written before the preprocessor, the
    encoder still takes raw strings `[batch]` (or `[batch, 1]`) and
    tokenises them itself (`encoder(["a great film"])`, a model over a string
    `keras.Input`): single-device `model.fit` reads datasets of raw strings
    then, and `ktransfer.export.save` writes a SavedModel that takes raw
    strings either way.

    The vocabulary comes from the task's data: `encoder.adapt(texts)` keeps
    the `max_tokens - 2` most frequent words of the texts, then (with
    `fill_vocabulary=True`) fills the remaining places with the most frequent
    words of the vectors, so that words never seen in training still get
    their pretrained vector when the model predicts (with frozen vectors the
    model handles them like the similar words it was trained on). Row 0 of
    the embedding is padding (zeros), row 1 the out-of-vocabulary token
    `[UNK]`, and each word gets its pretrained vector, or an `oov`
    initialisation when the vectors lack it. `encoder.coverage` says how many
    of the texts' words and tokens the vectors cover: check it when choosing
    `standardize`.

    Raw strings are padded to the longest text of the batch (at most
    `sequence_length` tokens), the preprocessor pads to `sequence_length`
    (and `kt.data.prepare` trims each batch to a length bucket), so short
    texts cost little. With `pooling=None` the padding mask is attached to
    the output (also inside a functional model), so Keras layers that read
    masks (`LSTM`, `GRU`, `GlobalAveragePooling1D`, attention,
    `MaxOverTimeConv1D`) skip padding.

    Args:
        vectors: a `ktransfer.WordVectors`, a path that `WordVectors.load`
            reads, or a ktransfer asset name (`"glove50"`). Kept by the
            encoder for `adapt` (not saved: a `.keras` file holds the
            embedding matrix instead).
        max_tokens: vocabulary size including the padding and `[UNK]` tokens
            (as in `TextVectorization`).
        sequence_length: texts are truncated to this many tokens; None keeps
            every token.
        standardize: see `standardize_texts`; `"lower"` or
            `"lower_and_split_punctuation"` for GloVe 6B (lowercased, keeps
            punctuation tokens). `"auto"` (default): None with a subword
            `tokenizer` (it normalises text itself), else
            `"lower_and_strip_punctuation"` (Keras' default).
        trainable: False (frozen vectors: Kim's CNN-static) or True
            (fine-tuned: CNN-non-static). Toggle later with
            `encoder.set_trainable(...)` (or `encoder.trainable = ...`) and
            compile again.
        oov: initial vector of the texts' words missing from `vectors`
            (except compounds of known words, "ham-fisted" or "and/or",
            which start as the mean of their parts' vectors):
            `"random"` (uniform in `[-a, a]` with the variance of the
            pretrained values, as in Kim 2014), `"zeros"`, or `"mean"` (the
            mean of all pretrained vectors). `[UNK]` starts at zeros (the mean
            with `"mean"`): no training text maps to it unless `max_tokens`
            cuts words, so a random vector there would stay an untrained
            signal that fires at prediction time.
        pooling: None (per-token), `"mean"` or `"max"` (over real tokens;
            an empty text gives zeros).
        seed: int seed of the `"random"` initialisation; None draws it from
            NumPy's global generator (which `keras.utils.set_random_seed` seeds).
        fill_vocabulary: True fills the vocabulary up to `max_tokens` with
            the vectors' most frequent words (published files list words by
            frequency) that `standardize` can produce; False keeps the texts'
            words only (a smaller embedding). With a `tokenizer`, the filling
            words are the vectors' pieces the tokenizer can produce (its
            special tokens excluded), in the vectors' order: for vectors from
            an encoder trimmed to the train and evaluation texts, the pieces
            of every evaluated text (of any language) keep their vector.
        tokenizer: how texts are cut into tokens. `"auto"` (default): the
            tokenizer of vectors built with `kt.WordVectors.from_encoder`
            (the encoder's SentencePiece or WordPiece model: the tokens are
            its pieces), else None (whitespace-separated words after
            `standardize`). Or a KerasHub tokenizer, or None. It runs inside
            the preprocessor (tf.data and the exported graph) and is saved
            with the encoder.

    Example:

    ```python
    import keras, ktransfer as kt
    vectors = kt.WordVectors.load(kt.assets.path("glove50"))
    encoder = kt.encoders.WordVectorEncoder(vectors, standardize="lower", pooling="mean")
    encoder.adapt(["a great film", "a dull film"])
    encoder.coverage["tokens"]          # 1.0
    features = encoder(encoder.preprocessor(["a great film"]))  # shape (1, 50)
    encoder(["a great film"])           # the same: raw strings are tokenised in place
    ```
    """

    def __init__(
        self,
        vectors,
        max_tokens=50_000,
        sequence_length=64,
        standardize="auto",
        trainable=False,
        oov="random",
        pooling=None,
        seed=None,
        fill_vocabulary=True,
        tokenizer="auto",
        **kwargs,
    ):
        # State restored by `from_config` (a `.keras` file) instead of `vectors`.
        embedding_dim = kwargs.pop("embedding_dim", None)
        vocabulary_size = kwargs.pop("vocabulary_size", None)
        coverage = kwargs.pop("coverage", None)
        vectors = _resolve_vectors(vectors, embedding_dim)
        _check_max_tokens(max_tokens)
        _check_sequence_length(sequence_length)
        if isinstance(tokenizer, str) and tokenizer == "auto":
            tokenizer = getattr(vectors, "tokenizer", None)
        elif isinstance(tokenizer, dict):  # a config (from_config)
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        tokenizer = check_tokenizer(tokenizer)
        standardize = resolve_standardize(standardize, tokenizer)
        if oov not in OOV_MODES:
            raise ValueError(f"`oov` must be one of {OOV_MODES}. Received: {oov!r}")
        if pooling not in POOLING_MODES:
            raise ValueError(f"`pooling` must be one of {POOLING_MODES}. Received: {pooling!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None. Received: {seed!r}")
        if not isinstance(trainable, bool):
            raise ValueError(
                f"`trainable` must be True or False. Received: {trainable!r}"
            )
        if not isinstance(fill_vocabulary, bool):
            raise ValueError(
                f"`fill_vocabulary` must be True or False. Received: {fill_vocabulary!r}"
            )
        super().__init__(trainable=trainable, **kwargs)
        self.max_tokens = max_tokens
        self.sequence_length = sequence_length
        self.standardize = standardize
        self.oov = oov
        self.pooling = pooling
        self.seed = seed
        self.fill_vocabulary = fill_vocabulary
        self.embedding_dim = vectors.dim if vectors is not None else int(embedding_dim)
        self._vectors = vectors
        self._coverage = coverage
        self.preprocessor = WordVectorPreprocessor(
            max_tokens=max_tokens,
            sequence_length=sequence_length,
            standardize=standardize,
            tokenizer=tokenizer,
            name="preprocessor",
        )
        self.embedding = None
        if vocabulary_size is not None:
            self._create_embedding(int(vocabulary_size))
        self.supports_masking = pooling is None
        self.supports_jit = False  # string ops
        # Accept Python lists of strings, as Keras' own TextVectorization does.
        self._allow_non_tensor_positional_args = True
        self._convert_input_args = False

    def _standardize(self, texts):
        return standardize_texts(texts, self.standardize)

    @property
    def vectorizer(self):
        """The `keras.layers.TextVectorization` of `encoder.preprocessor` (the vocabulary)."""
        return self.preprocessor.vectorizer

    @property
    def tokenizer(self):
        """The KerasHub subword tokenizer that cuts texts into tokens, or None (words)."""
        return self.preprocessor.tokenizer

    # --- the Encoder protocol ------------------------------------------------
    def layer_groups(self):
        """`[[embedding], []]`: the embedding is the only group (no blocks, no pooler).

        Empty groups before `adapt` (the embedding is sized to the vocabulary).
        """
        return [[self.embedding] if self.embedding is not None else [], []]

    @property
    def output_dim(self):
        """The size of the word vectors."""
        return self.embedding_dim

    # --- vocabulary ----------------------------------------------------------
    @property
    def vectors(self):
        """The `WordVectors` given at construction (None after loading a `.keras` file)."""
        return self._vectors

    @property
    def vocabulary(self):
        """The words, in embedding-row order: `["", "[UNK]", most frequent, ...]`."""
        return self.preprocessor.vocabulary

    @property
    def vocabulary_size(self):
        """Rows of the embedding matrix (padding and `[UNK]` included), or None before `adapt`."""
        return None if self.embedding is None else self.embedding.input_dim

    @property
    def coverage(self):
        """How much of the adapted data the pretrained vectors cover, or None before `adapt`.

        A dict: `vocabulary` (fraction of the vocabulary's words that have a
        pretrained vector), `tokens` (fraction of the running tokens of the
        adapt data that get one; tokens of words beyond `max_tokens` count
        as missed), `words`, `words_found`, `tokens_total`, `composed`
        (missing compounds such as "well-made" initialised from their parts),
        `missing` (the 20 most frequent words with neither: a quick check of
        `standardize`) and `filled_from_vectors` (see `fill_vocabulary`).
        """
        return None if self._coverage is None else dict(self._coverage)

    def adapt(self, texts, batch_size=None):
        """Build the vocabulary from the task's texts and fill the embedding.

        Keeps the `max_tokens - 2` most frequent words (ties in alphabetical
        order), computes `coverage`, and sets the embedding rows (see the
        class docstring). Call it once, before building a model on the
        encoder (the embedding matrix is sized to the vocabulary).

        Args:
            texts: a list (or array) of strings, or a `tf.data.Dataset` of
                strings or of `(text, label)` pairs (as `ktransfer.data`
                readers return), batched or not.
            batch_size: texts per standardisation step (default 1024).

        Returns:
            `self.coverage`.
        """
        if self._vectors is None:
            raise ValueError(
                "This encoder was loaded without its word vectors (a `.keras` file "
                "keeps the embedding matrix, not the vectors), so it cannot adapt "
                "to new texts. Build a new WordVectorEncoder from the vectors."
            )
        if self.embedding is not None:
            raise ValueError(
                f"This encoder is already adapted (a vocabulary of {self.vocabulary_size} "
                "rows, and its embedding matrix sized to it). Build a new "
                "WordVectorEncoder to adapt to other texts."
            )
        counts = self._count_words(_text_dataset(texts, batch_size or _ADAPT_BATCH_SIZE))
        if not counts:
            raise ValueError(
                "`adapt` found no words in `texts` (empty texts, or everything "
                "removed by `standardize`): give the training texts."
            )
        tokens_total = sum(counts.values())
        counts.pop(OOV_TOKEN, None)  # a literal "[UNK]" in the text stays out-of-vocabulary
        if self.tokenizer is not None:
            for word in [word for word in counts if _LINE_BREAKING.search(word)]:
                del counts[word]
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        words = [word for word, _ in ranked[: self.max_tokens - NUM_SPECIAL_TOKENS]]
        rows, found = self._lookup_rows(words)
        composed = self._compose_compounds(words, found)
        tokens_found = sum(counts[word] for word, hit in zip(words, found) if hit)
        self._coverage = {
            "vocabulary": float(np.mean(found)),
            "tokens": tokens_found / tokens_total,
            "words": len(words),
            "words_found": int(np.sum(found)),
            "tokens_total": int(tokens_total),
            "composed": len(composed),
            "missing": [
                word
                for position, (word, hit) in enumerate(zip(words, found))
                if not hit and position not in composed
            ][:20],
            "filled_from_vectors": 0,
        }
        if self.fill_vocabulary:
            extra_words, extra_rows = self._words_to_fill(set(words))
            words = words + extra_words
            rows = np.concatenate([rows, extra_rows])
            found = np.concatenate([found, np.ones(len(extra_words), bool)])
            self._coverage["filled_from_vectors"] = len(extra_words)
        self.preprocessor.set_vocabulary(words)
        matrix = self._initial_matrix(len(words), rows, found)
        for position, vector in composed.items():
            matrix[NUM_SPECIAL_TOKENS + position] = vector
        self._create_embedding(matrix.shape[0])
        self.embedding.embeddings.assign(matrix)
        return self.coverage

    def _words_to_fill(self, taken):
        """The vectors' first words (most frequent) that the texts lacked, up to `max_tokens`.

        Only words that the encoder can produce are kept: `standardize`
        leaves them unchanged and they hold no whitespace (e.g. no "Paris"
        when standardize lowercases, no "," when it strips punctuation).
        """
        room = self.max_tokens - NUM_SPECIAL_TOKENS - len(taken)
        if self.tokenizer is not None:
            return self._pieces_to_fill(taken, room)
        words, rows = [], []
        all_words = self._vectors.words
        start = 0
        while len(words) < room and start < len(all_words):
            chunk = all_words[start:start + 2 * room + 1024]
            standardized = standardize_texts(tf.constant(chunk), self.standardize).numpy()
            for offset, (word, same) in enumerate(zip(chunk, standardized)):
                if (
                    word not in taken
                    and word != OOV_TOKEN
                    and same.decode("utf-8", errors="replace") == word
                    and len(word.split()) == 1
                    and word.strip() == word
                ):
                    words.append(word)
                    rows.append(start + offset)
                    if len(words) == room:
                        break
            start += len(chunk)
        return words, np.asarray(rows, dtype=np.int64)

    def _pieces_to_fill(self, taken, room):
        """The vectors' words (in their order) that are pieces the tokenizer produces."""
        pieces = set(self.preprocessor.tokenizer_pieces())
        # The special tokens never come out of tokenising text, except the
        # unknown piece (e5's "<unk>", which keeps its vector; "[UNK]" is row 1).
        unknown = getattr(self.tokenizer, "unk_token", None)
        skip = (tokenizer_special_tokens(self.tokenizer) - {unknown}) | {OOV_TOKEN}
        words, rows = [], []
        for row, word in enumerate(self._vectors.words):
            if len(words) >= room:
                break
            if word in pieces and word not in taken and word not in skip \
                    and not _LINE_BREAKING.search(word):
                words.append(word)
                rows.append(row)
        return words, np.asarray(rows, dtype=np.int64)

    def _count_words(self, dataset):
        counts = collections.Counter()
        split_words = self.preprocessor.split_words

        def words_of(batch):
            words = split_words(batch).flat_values
            unique, _, number = tf.unique_with_counts(words)
            return unique, number

        for unique, number in dataset.map(words_of).as_numpy_iterator():
            counts.update(dict(zip(unique.tolist(), number.tolist())))
        words = collections.Counter()
        for word, number in counts.items():  # bytes -> str; invalid UTF-8 cannot match a vector
            words[word.decode("utf-8", errors="replace")] += number
        return words

    def _lookup_rows(self, words):
        rows = np.zeros(len(words), dtype=np.int64)
        found = np.zeros(len(words), dtype=bool)
        for position, word in enumerate(words):
            if word in self._vectors:
                rows[position] = self._vectors.index(word)
                found[position] = True
        return rows, found

    def _compose_compounds(self, words, found):
        """{position: mean of the parts' vectors} for missing compounds such as "well-made"."""
        composed = {}
        if self.tokenizer is not None:
            return composed  # pieces are not words joined by "-" or "/"
        for position in np.flatnonzero(~found):
            parts = [part for part in _COMPOUND_SEPARATORS.split(words[position]) if part]
            if len(parts) > 1 and all(part in self._vectors for part in parts):
                vectors = [np.asarray(self._vectors[part], np.float32) for part in parts]
                composed[int(position)] = np.mean(vectors, axis=0)
        return composed

    def _initial_matrix(self, num_words, rows, found):
        """`[num_words + 2, dim]` float32: padding, [UNK], then the words' vectors."""
        matrix = np.zeros((num_words + NUM_SPECIAL_TOKENS, self.embedding_dim), np.float32)
        words = matrix[NUM_SPECIAL_TOKENS:]
        if found.any():
            # Sorted reads: fast on memory-mapped vectors.
            order = np.argsort(rows[found], kind="stable")
            picked = np.asarray(self._vectors.matrix[rows[found][order]], dtype=np.float32)
            words[np.flatnonzero(found)[order]] = picked
        missing = NUM_SPECIAL_TOKENS + np.flatnonzero(~found)
        if self.oov == "zeros" or len(self._vectors) == 0:
            return matrix
        mean, std = _vector_statistics(self._vectors.matrix)
        if self.oov == "mean":
            matrix[1] = mean  # [UNK]
            matrix[missing] = mean
        else:
            seed = self.seed if self.seed is not None else np.random.randint(2**31 - 1)
            limit = np.sqrt(3.0) * std  # uniform [-a, a] has variance a^2 / 3
            generator = np.random.default_rng(seed)
            matrix[missing] = generator.uniform(
                -limit, limit, size=(len(missing), self.embedding_dim)
            )
        return matrix

    def _create_embedding(self, vocabulary_size, initializer="uniform"):
        self.embedding = keras.layers.Embedding(
            vocabulary_size,
            self.embedding_dim,
            embeddings_initializer=initializer,
            mask_zero=True,
            dtype=self.dtype_policy,
            name="embedding",
        )
        self.embedding.build()
        # A sublayer created after construction does not inherit the frozen state.
        self.embedding.trainable = self.trainable

    def place_in_strategy_scope(self):
        """Re-create the embedding in the current `tf.distribute` strategy's scope if it was made outside.

        `adapt` creates the embedding matrix; a model trained under a
        distribution strategy needs its variables created in the strategy's
        scope. The word-vector tasks call this when they are built in a
        scope, so an encoder adapted outside it (the natural order: adapt,
        then build the model in `strategy.scope()`) still trains. The values
        are kept. Does nothing outside a scope, before `adapt`, or when the
        embedding is already the scope's.

        Returns:
            True when the embedding was re-created.

        Example:

        ```python
        import numpy as np, tensorflow as tf, ktransfer as kt
        encoder = kt.encoders.WordVectorEncoder(kt.WordVectors(["a"], np.ones((1, 2), "float32")))
        encoder.adapt(["a"])
        with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
            encoder.place_in_strategy_scope()  # True: the matrix now belongs to the strategy
        ```
        """
        if self.embedding is None or not tf.distribute.has_strategy():
            return False
        strategy = tf.distribute.get_strategy()
        variable = self.embedding.embeddings
        if strategy.extended.variable_created_in_scope(getattr(variable, "value", variable)):
            return False
        values = np.asarray(variable.numpy())
        old = self.embedding
        # A built layer locks its state (Keras' tracker); this replaces state
        # on purpose, before any training, so unlock it for the swap.
        tracker = getattr(self, "_tracker", None)
        locked = bool(getattr(tracker, "locked", False))
        if locked:
            tracker.unlock()
        try:
            # Zeros: no draw from Keras' seed generator, so the layers built
            # next get the initial weights they get without a strategy.
            self._create_embedding(old.input_dim, initializer="zeros")
        finally:
            if locked:
                tracker.lock()
        self.embedding.embeddings.assign(values)
        # The encoder's layer list still holds the old embedding (Keras tracks
        # sublayers on assignment, and does not untrack the one replaced).
        self._layers[:] = [layer for layer in self._layers if layer is not old]
        return True

    # --- trainable toggle ----------------------------------------------------
    def set_trainable(self, trainable):
        """True (fine-tune the vectors) or False (frozen); compile again afterwards.

        Same as `encoder.trainable = trainable`: Keras builds a model's train
        step for the variables trainable when `compile` is called. As in the
        `Encoder` protocol an int k trains the top k blocks; a word-vector
        encoder has none, so only `0` (the same as False) is valid.
        """
        if not isinstance(trainable, bool) and isinstance(trainable, int) and trainable == 0:
            trainable = False
        if not isinstance(trainable, bool):
            raise ValueError(
                "`trainable` must be True or False (or 0, the same as False: a "
                f"word-vector encoder has no blocks to unfreeze). Received: {trainable!r}"
            )
        self.trainable = trainable

    # --- forward -------------------------------------------------------------
    def build(self, input_shape=None):
        if self.embedding is None:
            raise ValueError(
                "WordVectorEncoder has no vocabulary yet: call `encoder.adapt(texts)` "
                "with the training texts before using it in a model."
            )
        self.built = True

    def token_ids(self, texts):
        """int64 `[batch, length]` row ids (0 = padding, 1 = `[UNK]`), padded to the longest text."""
        return self.preprocessor.token_ids(texts)

    def _ids(self, inputs):
        """The int ids `[batch, length]` of `inputs`: preprocessor dict, ids, or raw strings."""
        if isinstance(inputs, dict):
            if "token_ids" not in inputs:
                raise ValueError(
                    "WordVectorEncoder takes the dict of `encoder.preprocessor` (with "
                    f"`token_ids`), int ids, or raw strings. Received a dict with keys {sorted(inputs)}."
                )
            inputs = inputs["token_ids"]
        if isinstance(inputs, (str, bytes)):
            raise ValueError(
                "WordVectorEncoder takes a batch of strings of shape [batch] or "
                "[batch, 1], not a single string: wrap it in a list."
            )
        if not tf.is_tensor(inputs):
            inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype == tf.string:
            return self.token_ids(inputs)  # code written before the preprocessor
        if inputs.dtype.is_floating:
            # As keras.layers.Embedding does (Keras traces a model's default
            # signature with float inputs when it exports it).
            inputs = tf.cast(inputs, tf.int32)
        if not inputs.dtype.is_integer:
            raise ValueError(
                "WordVectorEncoder takes int token ids (from `encoder.preprocessor`) or "
                f"raw strings. Received dtype {inputs.dtype.name}."
            )
        if inputs.shape.rank != 2:
            raise ValueError(
                "WordVectorEncoder takes token ids of shape [batch, length]. "
                f"Received shape: {inputs.shape}"
            )
        if self.sequence_length is not None:
            inputs = inputs[:, : self.sequence_length]
        return inputs

    def call(self, inputs):
        ids = self._ids(inputs)
        mask = tf.not_equal(ids, 0)
        vectors = self.embedding(ids)
        weights = tf.cast(mask, vectors.dtype)[..., None]
        vectors = vectors * weights  # padding rows exactly zero, even when fine-tuned
        if self.pooling == "mean":
            return tf.reduce_sum(vectors, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
        if self.pooling == "max":
            lowest = tf.constant(vectors.dtype.min, vectors.dtype)
            pooled = tf.reduce_max(tf.where(mask[..., None], vectors, lowest), axis=1)
            return tf.where(tf.reduce_any(mask, axis=1, keepdims=True), pooled, tf.zeros_like(pooled))
        return vectors

    def compute_mask(self, inputs, mask=None):
        if self.pooling is not None:
            return None
        ids = inputs["token_ids"] if isinstance(inputs, dict) else inputs
        if isinstance(ids, keras.KerasTensor):
            if ids.dtype == "string":
                # Building a functional model over raw strings: a symbolic mask
                # would have to be a graph edge computed by Keras ops, which
                # cannot read strings. The mask is attached when the model runs
                # (below), and Keras layers read it from their input tensor then.
                return None
            ids = ids[:, : self.sequence_length] if self.sequence_length is not None else ids
            return keras.ops.not_equal(ids, 0)
        return tf.not_equal(self._ids(inputs), 0)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["token_ids"]
        input_shape = tuple(input_shape) if input_shape else ()
        batch = input_shape[0] if input_shape else None
        if self.pooling is not None:
            return (batch, self.embedding_dim)
        length = input_shape[1] if len(input_shape) == 2 else None
        if length is not None and self.sequence_length is not None:
            length = min(length, self.sequence_length)
        return (batch, length, self.embedding_dim)

    def compute_output_spec(self, inputs):
        ids = inputs["token_ids"] if isinstance(inputs, dict) else inputs
        shape = tuple(ids.shape)
        if ids.dtype == "string":
            shape = shape[:1]  # the length is the texts' (a column [batch, 1] too)
        return keras.KerasTensor(self.compute_output_shape(shape), dtype=self.compute_dtype)

    # --- serialisation -------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vectors": None,
                "max_tokens": self.max_tokens,
                "sequence_length": self.sequence_length,
                "standardize": self.standardize,
                "oov": self.oov,
                "pooling": self.pooling,
                "seed": self.seed,
                "fill_vocabulary": self.fill_vocabulary,
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer)
                if self.tokenizer is not None
                else None,
                "embedding_dim": self.embedding_dim,
                "vocabulary_size": self.vocabulary_size,
                "coverage": self._coverage,
            }
        )
        return config


def check_token_encoder(encoder, model_name):
    """Check that `encoder` is an adapted `WordVectorEncoder` returning one vector per token.

    Raises a `TypeError` (not a `WordVectorEncoder`) or a `ValueError`
    (pooled, or not adapted yet) that names `model_name` and the fix.

    Example:

    ```python
    import numpy as np, ktransfer as kt
    from ktransfer.encoders.word_vector_encoder import check_token_encoder
    encoder = kt.encoders.WordVectorEncoder(kt.WordVectors(["a"], np.ones((1, 2), "float32")))
    encoder.adapt(["a"])
    check_token_encoder(encoder, "TextCNN")  # passes: per-token and adapted
    ```
    """
    if not isinstance(encoder, WordVectorEncoder):
        raise TypeError(
            f"{model_name} reads raw strings through a "
            "`kt.encoders.WordVectorEncoder(vectors, pooling=None)`. Received: "
            f"{type(encoder).__name__}. For BERT encoders, use "
            "`keras.Sequential([encoder, kt.heads.ClassificationHead(n)])`."
        )
    if encoder.pooling is not None:
        raise ValueError(
            f"{model_name} needs one vector per token: build the encoder with "
            f"pooling=None (it has pooling={encoder.pooling!r})."
        )
    if encoder.vocabulary_size is None:
        raise ValueError(
            "The encoder has no vocabulary yet: call `encoder.adapt(train_texts)` "
            f"before building the {model_name}."
        )

def _resolve_vectors(vectors, embedding_dim):
    if isinstance(vectors, WordVectors):
        return vectors
    if vectors is None:
        if embedding_dim is None:
            raise ValueError(
                "`vectors` is required: a ktransfer.WordVectors, a path that "
                "WordVectors.load reads, or an asset name such as 'glove50'."
            )
        return None
    if isinstance(vectors, (str, os.PathLike)):
        from ktransfer import assets

        if isinstance(vectors, str) and vectors in assets.ASSETS:
            vectors = assets.path(vectors)
        return WordVectors.load(vectors)
    raise TypeError(
        "`vectors` must be a ktransfer.WordVectors, a path to a word vectors "
        f"file, or an asset name. Received: {type(vectors).__name__}"
    )


def _text_dataset(texts, batch_size):
    """Batched `tf.data.Dataset` of `tf.string` from a list or a dataset."""
    if isinstance(texts, tf.data.Dataset):
        spec = texts.element_spec
        if isinstance(spec, tuple):  # (text, label) as kt.data readers give
            spec = spec[0]
            texts = texts.map(lambda text, *_: text)
        if not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.string:
            raise ValueError(
                "`adapt` needs a dataset of strings or of (text, label) pairs with a "
                f"single text; got elements {texts.element_spec}."
            )
        if spec.shape.rank == 0:
            texts = texts.batch(batch_size)
        elif spec.shape.rank == 2:
            texts = texts.map(lambda batch: tf.reshape(batch, [-1]))
        return texts
    if isinstance(texts, (str, bytes)):
        raise ValueError("`texts` must be a list of strings, not a single string.")
    texts = list(texts)
    if not texts:
        raise ValueError("`texts` is empty: give the training texts to build the vocabulary.")
    for position, text in enumerate(texts):
        if not isinstance(text, (str, bytes)):
            raise ValueError(
                f"`texts` must hold strings; texts[{position}] is {type(text).__name__}."
            )
    return tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string)).batch(batch_size)


def _vector_statistics(matrix):
    """Mean vector and overall standard deviation, read in bounded chunks."""
    total = np.zeros(matrix.shape[1], np.float64)
    squares = 0.0
    for start in range(0, matrix.shape[0], _ROWS_PER_STEP):
        rows = np.asarray(matrix[start:start + _ROWS_PER_STEP], dtype=np.float64)
        total += rows.sum(axis=0)
        squares += float(np.einsum("ij,ij->", rows, rows))
    count = matrix.shape[0]
    mean = total / count
    variance = squares / (count * matrix.shape[1]) - float(np.mean(mean)) ** 2
    return mean.astype(np.float32), float(np.sqrt(max(variance, 0.0)))
