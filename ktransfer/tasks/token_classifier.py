"""`TokenClassifier`: one tag per word (NER, POS), raw sentences in, entity spans out.

A BERT encoder with per-token output (`pooling=None`) and a
`kt.heads.TokenClassificationHead`. Words are the whitespace-separated
tokens of a sentence (Python's `str.split()`); each word is split into
WordPiece sub-tokens in the tf.data pipeline (`kt.data.conll.align_words`)
and tagged by its first sub-token, in training, in `predict` and in the
exported SavedModel alike.

```python
import ktransfer as kt
tagger = kt.tasks.TokenClassifier.from_preset("minilm", tags=["O", "B-PER", "I-PER"],
                                              sequence_length=64)
tagger.fit(x=["Peter Blackburn spoke"], y=[["B-PER", "I-PER", "O"]], epochs=1)
tagger.predict_tags(["Peter spoke"])       # [["B-PER", "O"]] once trained enough
tagger.predict_entities(["Peter spoke"])   # [[{"type": "PER", "text": "Peter", "start": 0, ...}]]
tagger.export("saved_models/ner/1")       # serving_default(text) -> tags, words
```

`TokenClassifier.from_model(model, tags)` wraps a Sequential or functional
tagger (`keras.Sequential([BertEncoder(pooling=None), TokenClassificationHead(n)])`);
`tagger_function(model, tags)` is the served graph as an in-memory function.
"""

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.conll import align_words
from ktransfer.data.conll import check_tags
from ktransfer.data.conll import check_token_dataset
from ktransfer.data.conll import prepare_tokens
from ktransfer.data.pipeline import AUTOTUNE
from ktransfer.data.pipeline import batch_examples
from ktransfer.data.pipeline import bucket_boundaries
from ktransfer.data.pipeline import trim_to_longest
from ktransfer.encoders.base import Encoder
from ktransfer.encoders.base import find_encoder
from ktransfer.encoders.base import iter_layers
from ktransfer.heads.token_classification_head import TokenClassificationHead
from ktransfer.metrics import entities
from ktransfer.tasks.serving import SERVING_BUCKET_STEP
from ktransfer.tasks.serving import takes_raw_strings
from ktransfer.tasks.serving import text_signature
from ktransfer.tasks.task import Task

DEFAULT_BATCH_SIZE = 32
TOKENIZE_BATCH_SIZE = 256


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


@keras.saving.register_keras_serializable(package="ktransfer")
class TaggingPreprocessor(keras.layers.Layer):
    """Sentences (or word lists) -> BERT features, each word aligned to its first sub-token.

    Wraps a KerasHub BERT preprocessor (`encoder.preprocessor`) and uses its
    `tokenizer` and `sequence_length`. Called on a 1-D `tf.string` tensor of
    sentences (split into words on whitespace, as `str.split()` does) or on a
    `tf.RaggedTensor` `[batch, (words)]` of words, it returns the feature
    dict a `BertEncoder` takes (`token_ids`, `segment_ids`, `padding_mask`,
    int32 `[batch, sequence_length]`). `align(words, tag_ids)` also returns
    each word's first sub-token position and the per-token training targets
    (see `kt.data.conll.align_words`).

    Args:
        preprocessor: a KerasHub text preprocessor with a `tokenizer` and a
            `sequence_length` (`BertEncoder.preprocessor`).

    Example:

    ```python
    import tensorflow as tf, ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=16, pooling=None)
    preprocessor = kt.tasks.TaggingPreprocessor(encoder.preprocessor)
    features = preprocessor(tf.constant(["Peter visited Paris"]))
    features["token_ids"].shape   # (1, 16)
    ```
    """

    def __init__(self, preprocessor, **kwargs):
        tokenizer = getattr(preprocessor, "tokenizer", None)
        sequence_length = getattr(preprocessor, "sequence_length", None)
        if tokenizer is None or not sequence_length:
            raise TypeError(
                "A tagger needs the encoder's KerasHub preprocessor (with a `tokenizer` "
                "and a `sequence_length`), e.g. `BertEncoder.from_preset(..., "
                f"pooling=None).preprocessor`. Received: {type(preprocessor).__name__}"
            )
        super().__init__(**kwargs)
        self.preprocessor = preprocessor
        self.built = True  # no weights: the wrapped preprocessor holds the vocabulary

    @property
    def tokenizer(self):
        return self.preprocessor.tokenizer

    @property
    def sequence_length(self):
        return self.preprocessor.sequence_length

    def build(self, input_shape=None):
        self.built = True

    def align(self, words, tag_ids=None):
        """`(features, word_starts, labels, weights)` of `align_words` for `[batch, (words)]`."""
        return align_words(words, self.tokenizer, self.sequence_length, tag_ids)

    def call(self, x):
        if not isinstance(x, tf.RaggedTensor):
            x = tf.convert_to_tensor(x)
            if x.dtype != tf.string or x.shape.rank != 1:
                raise ValueError(
                    "TaggingPreprocessor takes a 1-D batch of sentences (tf.string) or a "
                    f"RaggedTensor [batch, (words)] of words. Received: {x}"
                )
            x = tf.strings.split(x)
        features, _, _, _ = self.align(x)
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


def _tagging_preprocessor(preprocessor):
    if preprocessor is None or isinstance(preprocessor, TaggingPreprocessor):
        return preprocessor
    return TaggingPreprocessor(preprocessor)


def tagger_function(model, tags, preprocessor=None):
    """`fn(sentences) -> {"tags", "words"}`: the graph a tagger's export serves.

    `sentences` is a 1-D `tf.string` tensor; words are its whitespace-
    separated tokens (`tf.strings.split`). The result holds string
    `[batch, max_words]` tensors, one tag per word and the words themselves,
    padded with `""` after each sentence's last word. Each word is tagged
    by its first WordPiece sub-token; words past the encoder's
    `sequence_length` (in sub-tokens) are tagged `"O"`.

    Args:
        model: a token classifier taking the encoder's feature dict and
            returning tag logits `[batch, length, len(tags)]` (a
            `TokenClassifier`, or `keras.Sequential([BertEncoder(pooling=None),
            TokenClassificationHead(len(tags))])`).
        tags: the tag names in tag-index order.
        preprocessor: the encoder's KerasHub preprocessor or a
            `TaggingPreprocessor`; defaults to the one of the model's encoder.

    Returns:
        A `tf.function` with input signature `[tf.TensorSpec([None], tf.string)]`.

    Example:

    ```python
    import keras, tensorflow as tf, ktransfer as kt
    tags = ["O", "B-PER", "I-PER", "B-LOC"]
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=32, pooling=None)
    model = keras.Sequential([encoder, kt.heads.TokenClassificationHead(len(tags))])
    tag = kt.tasks.token_classifier.tagger_function(model, tags)
    tag(tf.constant(["Peter Blackburn visited Paris"]))["tags"]
    # once trained: [[b"B-PER", b"I-PER", b"O", b"B-LOC"]]
    ```
    """
    tags = check_tags(tags)
    if preprocessor is None:
        preprocessor = getattr(model, "preprocessor", None)
        if preprocessor is None:
            encoder = find_encoder(model)
            preprocessor = getattr(encoder, "preprocessor", None)
    if preprocessor is None:
        raise ValueError(
            "A tagger needs the encoder's KerasHub preprocessor (with a `tokenizer` and "
            "a `sequence_length`); pass `preprocessor=` when the model's encoder has none."
        )
    preprocessor = _tagging_preprocessor(preprocessor)
    sequence_length = preprocessor.sequence_length
    tag_table = tf.constant(tags)
    num_tags = len(tags)

    @tf.function(input_signature=[tf.TensorSpec(shape=(None,), dtype=tf.string)])
    def tag(text):
        words = tf.strings.split(text)  # [batch, (words)], whitespace-separated
        features, word_starts, _, _ = preprocessor.align(words)
        features = trim_to_longest(features, sequence_length, SERVING_BUCKET_STEP)
        logits = model(features, training=False)
        tf.debugging.assert_equal(
            tf.shape(logits)[-1],
            num_tags,
            message=f"the model's output size differs from len(tags)={num_tags}",
        )
        width = tf.shape(logits)[1]
        starts = word_starts.to_tensor(default_value=0)
        in_window = starts < width
        scores = tf.gather(logits, tf.where(in_window, starts, 0), batch_dims=1)
        predicted = tf.gather(tag_table, tf.argmax(scores, axis=-1, output_type=tf.int32))
        predicted = tf.where(in_window, predicted, "O")
        is_word = tf.ones_like(word_starts, dtype=tf.bool).to_tensor(default_value=False)
        return {
            "tags": tf.where(is_word, predicted, ""),
            "words": words.to_tensor(default_value=""),
        }

    return tag


def _word_lists(x, what="x"):
    """A list of word lists from sentences (str, split on whitespace) or word lists."""
    if isinstance(x, (str, bytes)):
        raise ValueError(
            f"{what} must be a list of sentences or word lists; received one string "
            f"{x[:40]!r}. Wrap a single sentence in a list: [sentence]."
        )
    if isinstance(x, (tf.Tensor, tf.RaggedTensor)):
        x = x.to_list() if isinstance(x, tf.RaggedTensor) else x.numpy().tolist()
    try:
        rows = list(x)
    except TypeError:
        raise TypeError(
            f"{what} must be a list of sentences (str) or of word lists. Received: "
            f"{type(x).__name__}"
        ) from None
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, bytes):
            row = row.decode("utf-8")
        if isinstance(row, (str, np.str_)):
            out.append(str(row).split())
            continue
        if isinstance(row, np.ndarray):
            row = row.tolist()
        if not isinstance(row, (list, tuple)):
            raise TypeError(
                f"{what}[{i}] is a {type(row).__name__} ({row!r:.60}): give a sentence (str) "
                "or a list of words."
            )
        words = []
        for word in row:
            if isinstance(word, bytes):
                word = word.decode("utf-8")
            if not isinstance(word, (str, np.str_)):
                raise TypeError(f"{what}[{i}] holds {word!r}, not a word (str).")
            words.append(str(word))
        out.append(words)
    return out


def _as_text(value, i):
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, (str, np.str_)):
        raise TypeError(
            f"texts[{i}] is a {type(value).__name__}: predict_entities takes sentences "
            "(str), so that it can return character offsets into them."
        )
    return str(value)


def word_offsets(text):
    """`[(start, end), ...]`: the character span of each whitespace-separated word of `text`.

    The words are those of `text.split()`; `end` is exclusive.

    Example:

    ```python
    from ktransfer.tasks.token_classifier import word_offsets
    word_offsets("Peter  visited Paris")   # [(0, 5), (7, 14), (15, 20)]
    ```
    """
    spans, position = [], 0
    for word in text.split():
        start = text.index(word, position)
        position = start + len(word)
        spans.append((start, position))
    return spans


@keras.saving.register_keras_serializable(package="ktransfer")
class TokenClassifier(Task):
    """Tag every word of a sentence: a per-token encoder and a `TokenClassificationHead`.

    Args:
        encoder: a `kt.encoders.BertEncoder` with `pooling=None` (one vector
            per token) and a preprocessor; see `from_preset`.
        tags: the tag names in tag-index order, e.g.
            `kt.data.tag_vocabulary(train)` (`["O", "B-LOC", ...]`).
        dropout: dropout of the head.
        preprocessor: `"auto"` (a `TaggingPreprocessor` over the encoder's
            preprocessor), or a KerasHub preprocessor / `TaggingPreprocessor`.
        model: instead of `encoder`, a whole Keras tagger to wrap (see
            `from_model`).

    Data: `fit(x, y)` takes `x` as sentences (str; words are split on
    whitespace) or word lists, and `y` as one list of tags (names or ids)
    per sentence, one tag per word; or `x` a `tf.data.Dataset` of
    `(words, tags)` as `kt.data.from_conll` reads it (then no `y`). Each
    word's tag goes on its first sub-token; other positions get sample
    weight 0. Batches are length-bucketed like `kt.data.prepare_tokens`.
    Words past `sequence_length` sub-tokens are not trained on and are
    tagged `"O"`.

    Outputs: `predict(x)` float32 `[n, max_words, len(tags)]` tag
    probabilities per word (zeros past a sentence's last word and for words
    past the window); `predict_tags(x)` one tag list per sentence;
    `predict_entities(texts)` the entity spans; `export(path)` the
    SavedModel of `kt.export.save_tagger` (`text` -> `tags`, `words`).

    Example:

    ```python
    import ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=64, pooling=None)
    tagger = kt.tasks.TokenClassifier(encoder, tags=["O", "B-LOC", "I-LOC"])
    tagger.compile()
    tagger.fit(x=["I live in New York"], y=[["O", "O", "O", "B-LOC", "I-LOC"]], epochs=1)
    tagger.predict_entities(["I live in New York"])
    ```
    """

    preset_pooling = None

    def __init__(self, encoder=None, tags=None, dropout=0.1, preprocessor="auto", model=None,
                 **kwargs):
        super().__init__(**kwargs)
        if tags is None:
            raise ValueError(
                "Give `tags`, the tag names in tag-index order, e.g. "
                "tags=kt.data.tag_vocabulary(train) or ['O', 'B-PER', 'I-PER']."
            )
        self.tags = check_tags(tags)
        self._preprocessor_choice = "auto" if _is_auto(preprocessor) else "given"
        if model is not None:
            self._init_wrapped(model, encoder, preprocessor)
        else:
            self._init_own(encoder, dropout, preprocessor)

    # --- construction ---------------------------------------------------------
    def _init_own(self, encoder, dropout, preprocessor):
        if not isinstance(encoder, Encoder):
            raise TypeError(
                "`encoder` must be a kt.encoders.Encoder, e.g. kt.encoders.BertEncoder."
                "from_preset('minilm', pooling=None); to wrap a whole Keras tagger use "
                f"TokenClassifier.from_model(model, tags). Received: {type(encoder).__name__}"
            )
        if getattr(encoder, "pooling", None) is not None:
            raise ValueError(
                "TokenClassifier needs one vector per token: build the encoder with "
                f"pooling=None (it has pooling={encoder.pooling!r})."
            )
        self.encoder = encoder
        self._network = None
        self.dropout = float(dropout)
        self.head = TokenClassificationHead(len(self.tags), dropout=dropout, name="token_head")
        self.head.build((None, None, encoder.output_dim))
        if _is_auto(preprocessor):
            preprocessor = encoder.preprocessor
        self.preprocessor = _tagging_preprocessor(preprocessor)

    def _init_wrapped(self, model, encoder, preprocessor):
        if encoder is not None:
            raise ValueError("Pass `encoder` (a new head is built) or `model` (wrapped), not both.")
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"`model` must be a keras.Model (Sequential or functional). Received: "
                f"{type(model).__name__}"
            )
        if takes_raw_strings(model):
            raise ValueError(
                "This tagger reads raw sentences itself (e.g. kt.models.BiLSTMTagger over "
                "word vectors); TokenClassifier wraps taggers over a BERT encoder's "
                "features. Export it with kt.export.save_tagger(model, path, tags)."
            )
        self._network = model
        self.dropout = None
        if _is_auto(preprocessor):
            found = find_encoder(model)
            preprocessor = getattr(found, "preprocessor", None)
            if preprocessor is None:
                raise ValueError(
                    "The model has no encoder with a preprocessor (kt.encoders.BertEncoder."
                    "from_preset(...)): pass `preprocessor=` (the KerasHub BERT preprocessor)."
                )
        self.preprocessor = _tagging_preprocessor(preprocessor)
        head = self.head
        if head is not None and head.num_tags != len(self.tags):
            raise ValueError(
                f"`tags` has {len(self.tags)} names but the model's TokenClassificationHead "
                f"has {head.num_tags} outputs: give one name per tag, in tag-index order."
            )
        if not all(layer.built for layer in iter_layers(model) if isinstance(layer, keras.layers.Layer)) \
                or head is None:
            logits = model(self.preprocessor(tf.constant(["a"])), training=False)
            if int(logits.shape[-1]) != len(self.tags):
                raise ValueError(
                    f"`tags` has {len(self.tags)} names but the model outputs "
                    f"{int(logits.shape[-1])} scores per token."
                )

    @classmethod
    def from_model(cls, model, tags, preprocessor="auto"):
        """Wrap a trained Keras tagger (Sequential or functional) into a task.

        Args:
            model: a `keras.Model` mapping the encoder's features to tag
                logits `[batch, length, len(tags)]`, e.g.
                `keras.Sequential([encoder, kt.heads.TokenClassificationHead(n)])`.
                A `TokenClassifier` is returned as it is (when `tags` match).
            tags: the tag names in tag-index order.
            preprocessor: `"auto"` (the preprocessor of the model's encoder),
                a KerasHub preprocessor, or a `TaggingPreprocessor`.

        Example:

        ```python
        import keras, ktransfer as kt
        tags = ["O", "B-LOC", "I-LOC"]
        encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=32, pooling=None)
        model = keras.Sequential([encoder, kt.heads.TokenClassificationHead(len(tags))])
        tagger = kt.tasks.TokenClassifier.from_model(model, tags)
        tagger.export("saved_models/ner/1")
        ```
        """
        if isinstance(model, TokenClassifier) and _is_auto(preprocessor) \
                and list(check_tags(tags)) == model.tags:
            return model
        return cls(model=model, tags=tags, preprocessor=preprocessor)

    @property
    def encoder(self):
        network = getattr(self, "_network", None)
        if network is not None:
            return find_encoder(network)
        return getattr(self, "_encoder", None)

    @encoder.setter
    def encoder(self, value):
        self._encoder = value

    @property
    def head(self):
        """The `TokenClassificationHead` (of the wrapped model, with `from_model`), or None."""
        network = getattr(self, "_network", None)
        if network is not None:
            found = None
            for layer in iter_layers(network):
                if isinstance(layer, TokenClassificationHead):
                    found = layer
            return found
        return getattr(self, "_head", None)

    @head.setter
    def head(self, value):
        self._head = value

    @property
    def model(self):
        """The wrapped Keras model (`from_model`), or None."""
        return getattr(self, "_network", None)

    @property
    def num_tags(self):
        return len(self.tags)

    # --- forward ----------------------------------------------------------------
    def call(self, inputs, training=None):
        if self._network is not None:
            return self._network(inputs, training=training)
        return self.head(self.encoder(inputs, training=training), training=training)

    def predict_step(self, data):
        x, word_starts, _ = keras.utils.unpack_x_y_sample_weight(data)
        probabilities = tf.nn.softmax(tf.cast(self(x, training=False), tf.float32), axis=-1)
        if word_starts is None:  # prepared features: one row per sub-token
            return probabilities
        width = tf.shape(probabilities)[1]
        valid = (word_starts >= 0) & (word_starts < width)
        per_word = tf.gather(probabilities, tf.where(valid, word_starts, 0), batch_dims=1)
        per_word = tf.where(valid[..., None], per_word, 0.0)
        return per_word, tf.reduce_sum(tf.cast(word_starts >= 0, tf.int32), axis=-1)

    # --- training defaults ----------------------------------------------------------
    def compile(self, optimizer="auto", loss="auto", metrics="auto", weighted_metrics="auto",
                **kwargs):
        """Configure training; `"auto"` picks the defaults.

        Args:
            optimizer: `"auto"` (`kt.optimizers.FusedAdamW(5e-5)`) or any optimizer.
            loss: `"auto"`: the head's `default_loss()`, cross-entropy
                averaged over the words (first sub-tokens).
            metrics: `"auto"`: none unweighted (padding and continuation
                sub-tokens would count).
            weighted_metrics: `"auto"`: word-level accuracy (`"accuracy"`,
                weighted by the sample weights of the alignment).
        """
        if _is_auto(metrics):
            metrics = None
            if _is_auto(weighted_metrics):
                weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if _is_auto(weighted_metrics):
            weighted_metrics = None
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        weighted_metrics=weighted_metrics, **kwargs)

    def default_loss(self):
        head = self.head
        if head is not None:
            return head.default_loss()
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        )

    def bucket_boundaries(self):
        return bucket_boundaries(self.preprocessor.sequence_length)

    # --- the tf.data pipeline -------------------------------------------------------
    def make_dataset(self, x, y=None, batch_size=DEFAULT_BATCH_SIZE, shuffle=False, seed=None,
                     sample_weight=None, labelled=None):
        """Sentences / word lists (and their tags) -> batches for the tagger.

        Args:
            x: sentences (str), word lists, or an unbatched `tf.data.Dataset`
                of `(words, tags)` (`kt.data.from_conll`), of `words` (1-D
                `tf.string`) or of sentences (scalar `tf.string`). A dataset
                of prepared features is returned as it is.
            y: with in-memory `x`, one list of tags (names or ids) per sentence.
            batch_size, shuffle, seed: as in `kt.data.prepare_tokens`.
            labelled: False builds prediction batches `(features, word_starts)`
                (tags are dropped); otherwise `(features, tag_ids,
                sample_weights)` batches, which need tags.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
        if sample_weight is not None:
            raise ValueError(
                "TokenClassifier takes no `sample_weight`: the weights of a batch are "
                "per token (1 on each word's first sub-token), set by the alignment."
            )
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise ValueError(
                    "When `x` is a tf.data.Dataset, its elements carry the tags ((words, "
                    "tags) as kt.data.from_conll reads them): do not pass `y`."
                )
            return self._from_tf_data(x, batch_size, shuffle, seed, labelled)
        words = _word_lists(x)
        if not words:
            raise ValueError("`x` is empty: give at least one sentence.")
        if y is None or labelled is False:
            if labelled:
                raise ValueError(
                    "Training and evaluation need tags: pass y=[[tag, ...], ...], one tag "
                    "per word of each sentence."
                )
            dataset = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(words, dtype=tf.string))
            return self._prediction_batches(dataset.map(lambda w: w), len(words), batch_size)
        tag_lists = self._tag_lists(y, words)
        dataset = tf.data.Dataset.from_tensor_slices(
            (tf.ragged.constant(words, dtype=tf.string), tf.ragged.constant(tag_lists, dtype=tf.string))
        ).map(lambda w, t: (w, t))
        return prepare_tokens(
            dataset, self.preprocessor, self.tags, batch_size=batch_size, shuffle=shuffle,
            seed=seed, shuffle_buffer=max(len(words), 1),
        )

    def _tag_lists(self, y, words):
        if isinstance(y, (str, bytes)):
            raise ValueError("`y` must hold one list of tags per sentence, not one string.")
        rows = y.to_list() if isinstance(y, tf.RaggedTensor) else list(y)
        if len(rows) != len(words):
            raise ValueError(
                f"`y` has {len(rows)} tag lists for {len(words)} sentences: give one per sentence."
            )
        known = set(self.tags)
        out = []
        for i, (row, sentence) in enumerate(zip(rows, words)):
            if isinstance(row, (str, bytes)):
                raise ValueError(
                    f"y[{i}] is the string {row!r:.60}: give a list of tags, one per word."
                )
            row = list(row.tolist() if isinstance(row, np.ndarray) else row)
            if len(row) != len(sentence):
                raise ValueError(
                    f"y[{i}] has {len(row)} tags for the {len(sentence)} words "
                    f"{sentence[:8]!r}{'...' if len(sentence) > 8 else ''}: give one tag per "
                    "(whitespace-separated) word."
                )
            names = []
            for tag in row:
                if isinstance(tag, bytes):
                    tag = tag.decode("utf-8")
                if isinstance(tag, (int, np.integer)) and not isinstance(tag, bool):
                    if not 0 <= int(tag) < len(self.tags):
                        raise ValueError(
                            f"Tag id {int(tag)} in y[{i}] is out of range: there are "
                            f"{len(self.tags)} tags {self.tags}."
                        )
                    tag = self.tags[int(tag)]
                if not isinstance(tag, str) or tag not in known:
                    raise ValueError(
                        f"Unknown tag {tag!r} in y[{i}]: the tagger's tags are {self.tags}. "
                        "Fix the data, or build the tagger with tags that cover it "
                        "(kt.data.tag_vocabulary(train))."
                    )
                names.append(tag)
            out.append(names)
        return out

    def _from_tf_data(self, dataset, batch_size, shuffle, seed, labelled):
        spec = dataset.element_spec
        if isinstance(spec, dict) or (isinstance(spec, tuple) and isinstance(spec[0], dict)):
            return dataset  # prepared features go to Keras as they are
        if isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string and spec.shape.rank == 0:
            dataset = dataset.map(tf.strings.split)  # sentences -> words
            spec = dataset.element_spec
        elif (
            isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], tf.TensorSpec)
            and spec[0].dtype == tf.string and spec[0].shape.rank == 0
        ):
            dataset = dataset.map(lambda sentence, tags: (tf.strings.split(sentence), tags))
        has_tags = check_token_dataset(dataset, need_tags=bool(labelled))
        if labelled is False:
            if has_tags:
                dataset = dataset.map(lambda words, tags: words)
            return self._prediction_batches(dataset, int(dataset.cardinality()), batch_size)
        return prepare_tokens(
            dataset, self.preprocessor, self.tags, batch_size=batch_size, shuffle=shuffle,
            seed=seed,
        )

    def _prediction_batches(self, words, num_examples, batch_size):
        """`(features, word_starts)` batches; `word_starts` int32 `[batch, sequence_length]`, -1 padded."""
        preprocessor = self.preprocessor
        sequence_length = preprocessor.sequence_length

        def align(batch):
            features, word_starts, _, _ = preprocessor.align(batch)
            return features, word_starts.to_tensor(default_value=-1, shape=[None, sequence_length])

        dataset = words.ragged_batch(TOKENIZE_BATCH_SIZE)
        dataset = dataset.map(align, num_parallel_calls=AUTOTUNE, deterministic=True)
        dataset = dataset.unbatch()
        dataset = batch_examples(
            dataset, num_examples if num_examples > 0 else -1, batch_size,
            boundaries=self.bucket_boundaries(),
        )
        return dataset.prefetch(AUTOTUNE)

    # --- inference ------------------------------------------------------------------------
    def predict(self, x, batch_size=None, **kwargs):
        """Tag probabilities of every word, float32 `[n, max_words, len(tags)]`.

        Row `i, j` is the softmax over the tags at word `j`'s first
        sub-token. `max_words` is the most words any sentence has within
        the encoder's window (at most `sequence_length`); entries past a
        sentence's last word, and for words past the window, are 0.
        Prepared feature batches give per-sub-token probabilities instead.

        `x`: sentences (str), word lists, or a dataset (see `make_dataset`).
        """
        outputs = super().predict(x, batch_size=batch_size, **kwargs)
        if not isinstance(outputs, (tuple, list)):
            return _dense(outputs)
        probabilities, counts = outputs
        probabilities = _dense(probabilities)
        counts = np.asarray(counts)
        width = int(min(counts.max(initial=0), probabilities.shape[1]))
        return probabilities[:, :width]

    def predict_tags(self, x, batch_size=None, **kwargs):
        """One list of tags per sentence (one tag per word; `"O"` past the window).

        `x`: sentences (str; words are split on whitespace) or word lists.
        """
        words = _word_lists(x)
        probabilities = self.predict(words, batch_size=batch_size, **kwargs)
        return [self._decode_tags(probabilities[i], len(sentence))[0]
                for i, sentence in enumerate(words)]

    def _decode_tags(self, probabilities, num_words):
        tags, scores = [], []
        for j in range(num_words):
            row = probabilities[j] if j < probabilities.shape[0] else None
            if row is None or not row.any():  # past the window
                tags.append("O")
                scores.append(0.0)
                continue
            best = int(np.argmax(row))
            tags.append(self.tags[best])
            scores.append(float(row[best]))
        return tags, scores

    def predict_entities(self, texts, batch_size=None, **kwargs):
        """The entities of each text: spans with type, text, character offsets and score.

        Words are the whitespace-separated tokens of each text; each gets
        its most probable tag, and the tags are read as entity chunks with
        the rules of `kt.metrics.entities` (IOB2 / BIO: an entity opens at
        `B-X`, continues over `I-X`; an `I-X` after `O` or another type
        also opens one, as conlleval reads IOB1; IOBES `E-`/`S-` work too).

        Args:
            texts: a list of str.
            batch_size: sentences per forward pass.

        Returns:
            For each text, a list of dicts ordered by position:
            `{"type": "PER", "text": "Peter Blackburn", "start": 0, "end": 15,
            "score": 0.97}`. `start` / `end` are character offsets into the
            text (`text[start:end]` is the span, `end` exclusive); `score` is
            the mean over the entity's words of the probability of the tag
            chosen for each word (in [0, 1]).

        Example:

        ```python
        import ktransfer as kt
        tagger = kt.tasks.TokenClassifier.from_preset("minilm", tags=["O", "B-PER", "I-PER", "B-LOC"],
                                                      sequence_length=32)
        tagger.predict_entities(["Peter Blackburn visited Paris"])
        # once trained:
        # [[{"type": "PER", "text": "Peter Blackburn", "start": 0, "end": 15, "score": 0.98},
        #   {"type": "LOC", "text": "Paris", "start": 24, "end": 29, "score": 0.99}]]
        ```
        """
        if isinstance(texts, (str, bytes)):
            raise ValueError(
                "`texts` must be a list of texts; wrap a single text in a list: [text]."
            )
        texts = [_as_text(text, i) for i, text in enumerate(texts)]
        if not texts:
            return []
        words = [text.split() for text in texts]
        probabilities = self.predict(words, batch_size=batch_size, **kwargs)
        results = []
        for i, text in enumerate(texts):
            offsets = word_offsets(text)
            tags, scores = self._decode_tags(probabilities[i], len(offsets))
            spans = []
            for type_, first, last in entities(tags):
                start, end = offsets[first][0], offsets[last][1]
                spans.append({
                    "type": type_,
                    "text": text[start:end],
                    "start": start,
                    "end": end,
                    "score": float(np.mean(scores[first:last + 1])),
                })
            results.append(spans)
        return results

    # --- export ------------------------------------------------------------------------------
    def serving_signatures(self):
        """`serving_default`: `text` (sentences) -> `tags`, `words` (see `tagger_function`)."""
        return {
            "serving_default": (
                tagger_function(self, self.tags, self.preprocessor), text_signature(("text",))
            )
        }

    def label_files(self):
        return {"labels.txt": list(self.tags)}

    def export_trackables(self):
        # The tokenizer holds the vocabulary table the served graph looks words up in.
        trackables = [self.preprocessor.tokenizer]
        if self._network is not None:
            trackables.insert(0, self._network)
        return trackables

    # --- serialisation -----------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        if self._preprocessor_choice == "auto":
            preprocessor = "auto"
        else:
            preprocessor = keras.saving.serialize_keras_object(self.preprocessor)
        config.update({"tags": list(self.tags), "preprocessor": preprocessor})
        if self._network is not None:
            config["model"] = keras.saving.serialize_keras_object(self._network)
        else:
            config.update(
                {"encoder": keras.saving.serialize_keras_object(self.encoder), "dropout": self.dropout}
            )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("model"), dict):
            config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return super().from_config(config)


def _dense(values):
    if isinstance(values, tf.RaggedTensor):
        return values.to_tensor().numpy()
    return np.asarray(values)


__all__ = ["TaggingPreprocessor", "TokenClassifier", "tagger_function", "word_offsets"]
