"""`BiLSTMTagger`: a word-vector sequence tagger (NER, POS), raw sentences in.

The word-vector baseline of token classification: each word of a sentence
gets its pretrained vector (through a `WordVectorEncoder`) and a small
trainable embedding of its *casing* (GloVe 6B is lowercased, but "Paris",
"EU" and "paris" say different things to a tagger), a bidirectional LSTM
reads the sentence, and a `TokenClassificationHead` scores the tags of every
word (softmax per word, no CRF), as in Huang et al. 2015 / Lample et al.
2016 without their character features and CRF.

Words are the whitespace-separated tokens of a sentence (`tf.strings.split`,
as `kt.export.save_tagger` and CoNLL files have them: words joined by single
spaces), so there is exactly one output per word, also for words the
vocabulary lacks (they get the `[UNK]` vector). Everything from the raw
string on runs in the graph: `fit` reads batches of raw sentences and
`save_word_tagger` writes a SavedModel that takes raw sentences.

```python
import keras, ktransfer as kt
from ktransfer.tasks import bilstm_tagger
train = kt.data.from_conll("train.txt", scheme="iob2")   # (words, tags)
tags = kt.data.tag_vocabulary(train)
encoder = kt.encoders.WordVectorEncoder("glove50", standardize="lower", sequence_length=None)
encoder.adapt(train.map(lambda words, tags: words))
model = kt.models.BiLSTMTagger(encoder, len(tags))
model.fit(bilstm_tagger.prepare_sentences(train, tags, shuffle=True, seed=0), epochs=5)
bilstm_tagger.save_word_tagger(model, "saved_models/ner_glove/1", tags=tags)
```
"""

import tensorflow as tf

from ktransfer._keras import keras
from ktransfer.encoders.word_vector_encoder import string_batch
from ktransfer.tasks.word_vector_model import check_positive_int
from ktransfer.tasks.word_vector_model import check_token_encoder
from ktransfer.tasks.word_vector_model import string_input

# Casing classes of a word, in priority order (0 is padding).
CASE_CLASSES = ("<pad>", "lower", "Title", "UPPER", "has_digit", "other")
_CASE_PATTERNS = (  # (class id, RE2 full-match pattern), first match wins
    (4, r".*\d.*"),  # "1996", "F-16", "3rd"
    (2, r"\p{Lu}[^\p{Lu}]*"),  # "Paris", "Mr.", "A"
    (3, r"[^\p{Ll}]*\p{Lu}[^\p{Ll}]*"),  # "EU", "U.S.", "NEW-YORK"
    (1, r"[^\p{Lu}]*\p{Ll}[^\p{Lu}]*"),  # "rejects", "o'clock"
)  # anything else (punctuation, "McDonald", "iPhone") is "other" (5)


def case_classes(words):
    """The casing class id (see `CASE_CLASSES`) of each word of a string tensor.

    Example:

    ```python
    from ktransfer.tasks.bilstm_tagger import case_classes
    case_classes(["the", "Paris", "EU", "1996", ",", "McDonald"])  # [1, 2, 3, 4, 5, 5]
    ```
    """
    words = tf.convert_to_tensor(words, tf.string)
    classes = tf.fill(tf.shape(words), tf.constant(5, tf.int32))
    for class_id, pattern in reversed(_CASE_PATTERNS):
        classes = tf.where(tf.strings.regex_full_match(words, pattern), class_id, classes)
    return classes


@keras.saving.register_keras_serializable(package="ktransfer")
class WordFeatures(keras.layers.Layer):
    """Sentences `[batch]` -> one feature vector per word `[batch, words, dim]`.

    The words are the whitespace-separated tokens of each sentence. A word's
    features are its vector from `encoder` (the mean over the pieces its
    `standardize` mode cuts it into, e.g. "it's" -> "it 's" with
    `"lower_and_split_punctuation"`; the `[UNK]` vector when it has none)
    followed by a `case_dim`-sized trainable embedding of its casing class
    (`case_classes`; none with `case_dim=0`). The padding mask (a word or
    not) is attached to the output, so Keras RNN layers skip padding.
    Every word is kept: the encoder's `sequence_length` does not cut
    sentences here.

    Args:
        encoder: an adapted `kt.encoders.WordVectorEncoder(pooling=None)`.
        case_dim: size of the casing embedding; 0 leaves casing out.

    Example:

    ```python
    features = WordFeatures(encoder, case_dim=4)
    features(["EU rejects German call"]).shape  # (1, 4, encoder.embedding_dim + 4)
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
        self.supports_masking = True
        self.supports_jit = False  # string ops
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

    def _words(self, sentences):
        sentences = string_batch(sentences, "WordFeatures")
        return tf.strings.split(sentences)  # [batch, (words)]

    def _padded(self, words, flat_features):
        """`[batch, max(1, longest), dim]`: at least one column, for empty batches."""
        ragged = words.with_flat_values(flat_features)
        width = tf.maximum(words.bounding_shape(axis=1), 1)
        shape = tf.stack([words.nrows(), width, tf.cast(tf.shape(flat_features)[-1], tf.int64)])
        return ragged.to_tensor(default_value=0, shape=shape)

    def call(self, sentences):
        words = self._words(sentences)
        flat = words.flat_values
        pieces = self.encoder.vectorizer(flat)  # [total_words, (pieces)]
        ids = pieces.to_tensor(default_value=0)
        ids = tf.pad(ids, [[0, 0], [0, 1]])  # a column for words with no piece
        # A word with no piece (removed by `standardize`) reads [UNK] (row 1).
        no_piece = tf.equal(pieces.row_lengths(), 0)[:, None]
        first_column = tf.equal(tf.range(tf.shape(ids)[1], dtype=tf.int32), 0)[None, :]
        ids = tf.where(no_piece & first_column, tf.constant(1, ids.dtype), ids)
        weights = tf.cast(tf.not_equal(ids, 0), self.compute_dtype)[..., None]
        vectors = self.encoder.embedding(ids)
        vectors = tf.reduce_sum(vectors * weights, axis=1) / tf.reduce_sum(weights, axis=1)
        if self.case_embedding is not None:
            cases = self.case_embedding(case_classes(flat))
            vectors = tf.concat([vectors, tf.cast(cases, vectors.dtype)], axis=-1)
        return self._padded(words, vectors)

    def compute_mask(self, inputs, mask=None):
        if isinstance(inputs, keras.KerasTensor):
            # As in WordVectorEncoder: the mask is attached when the model runs.
            return None
        words = self._words(inputs)
        is_word = tf.ones_like(words.flat_values, dtype=tf.int32)
        return tf.cast(self._padded(words, is_word[:, None])[..., 0], tf.bool)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0] if input_shape else None
        return (batch, None, self.output_dim)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(
            self.compute_output_shape(tuple(inputs.shape)), dtype=self.compute_dtype
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "case_dim": self.case_dim,
            }
        )
        return config


def BiLSTMTagger(encoder, num_tags, units=128, dropout=0.5, case_dim=8, learning_rate=1e-3):
    """A bidirectional LSTM tagger over word vectors, raw sentences in, compiled.

    `sentence [batch] -> WordFeatures` (word vector + casing embedding per
    whitespace-separated word) `-> Dropout -> Bidirectional(LSTM(units,
    return_sequences=True)) -> TokenClassificationHead(num_tags, dropout)`
    (tag logits `[batch, words, num_tags]`, one row per word, padding
    skipped through the mask), compiled with Adam, the head's
    `default_loss()` (mean over words, with the sample weights of
    `prepare_sentences`) and weighted accuracy. Train with `model.fit` on
    `prepare_sentences(...)`; export with `save_word_tagger`.

    Args:
        encoder: an adapted `kt.encoders.WordVectorEncoder(..., pooling=None)`
            (`standardize="lower"` suits GloVe 6B and pre-split CoNLL text:
            it keeps punctuation words; casing comes from `case_dim`).
        num_tags: number of tags (>= 2), `len(tags)`.
        units: LSTM units per direction.
        dropout: dropout rate on the word features and on the LSTM outputs.
        case_dim: size of the trainable casing embedding (0: none).
        learning_rate: Adam's learning rate.

    Returns:
        A compiled functional `keras.Model`.

    Example:

    ```python
    import ktransfer as kt
    from ktransfer.tasks.bilstm_tagger import prepare_sentences
    train = kt.data.from_conll("toy.txt", scheme="iob2")
    tags = kt.data.tag_vocabulary(train)
    encoder = kt.encoders.WordVectorEncoder("glove50", standardize="lower")
    encoder.adapt(train.map(lambda words, tags: words))
    model = kt.models.BiLSTMTagger(encoder, len(tags), units=64)
    model.fit(prepare_sentences(train, tags, batch_size=32), epochs=1)
    ```
    """
    from ktransfer.heads.token_classification_head import TokenClassificationHead

    check_token_encoder(encoder, "BiLSTMTagger")
    check_positive_int(units, "units")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: {dropout!r}")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be a positive number. Received: {learning_rate!r}")
    sentences = string_input()
    features = WordFeatures(encoder, case_dim=case_dim, name="word_features")(sentences)
    features = keras.layers.Dropout(dropout, name="feature_dropout")(features)
    states = keras.layers.Bidirectional(
        keras.layers.LSTM(units, return_sequences=True), name="bilstm"
    )(features)
    head = TokenClassificationHead(num_tags, dropout=dropout, name="token_classification_head")
    model = keras.Model(sentences, head(states), name="bilstm_tagger")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=head.default_loss(),
        weighted_metrics=["accuracy"],
    )
    return model


# --------------------------------------------------------------------------
# Data and export.
# --------------------------------------------------------------------------


def prepare_sentences(
    dataset, tags, batch_size=32, shuffle=False, seed=None, shuffle_buffer=20_000, window_batches=32
):
    """Turn `(words, tags)` sentences into batches for a `BiLSTMTagger`.

    Args:
        dataset: unbatched `(words, tags)` dataset (`kt.data.from_conll`),
            or of `words` alone (then the batches hold sentences only).
        tags: the tag names (`kt.data.tag_vocabulary(train)`); tag index `i`
            is `tags[i]`. A tag missing from it stops the pipeline with an error.
        batch_size: sentences per batch.
        shuffle, seed, shuffle_buffer: reshuffle the sentences every epoch.
            When shuffling, sentences of similar length are batched together
            (sorted within windows of `batch_size * window_batches` shuffled
            sentences), which saves most of the LSTM's work on padding.
        window_batches: batches per sorting window.

    Returns:
        A batched, prefetched `tf.data.Dataset` of `(sentences, tag_ids,
        sample_weights)`: `sentences` `tf.string [batch]` (the words joined
        by single spaces, as the SavedModel takes them), `tag_ids` int32 and
        `sample_weights` float32 `[batch, longest]` (weight 1 on words, 0 on
        padding). It carries `tags`.
    """
    from ktransfer.data.conll import check_tags
    from ktransfer.data.conll import check_token_dataset
    from ktransfer.data.conll import tag_table

    has_tags = check_token_dataset(dataset, need_tags=False)
    tags = check_tags(tags)
    check_positive_int(batch_size, "batch_size")
    check_positive_int(window_batches, "window_batches")
    table = tag_table(tags)
    num_examples = int(dataset.cardinality())
    if num_examples == 0:
        raise ValueError("The dataset is empty: there is nothing to train or evaluate on.")

    def to_sentence(words, *rest):
        sentence = tf.strings.reduce_join(words, separator=" ")
        tf.debugging.assert_equal(
            tf.size(tf.strings.split(sentence)),
            tf.size(words),
            message=(
                "a word is empty or holds whitespace, so the sentence would not "
                "split back into the same words: clean the words first"
            ),
        )
        if not has_tags:
            return sentence
        tag_ids = table.lookup(rest[0])
        tf.debugging.assert_non_negative(
            tag_ids,
            message=(
                "a tag of the dataset is not in `tags`: build `tags` with "
                "kt.data.tag_vocabulary(train) over data that has every tag"
            ),
        )
        return sentence, tag_ids, tf.ones_like(tag_ids, tf.float32)

    dataset = dataset.map(to_sentence, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if has_tags:
            window = batch_size * window_batches
            dataset = dataset.ragged_batch(window).map(_sort_by_words).unbatch()
            # Unbatched ragged rows come out as rank-1 RaggedTensors; the
            # identity map makes them the plain tensors `padded_batch` takes.
            dataset = dataset.map(lambda *element: element)
    if has_tags:
        dataset = dataset.padded_batch(batch_size, padding_values=("", 0, 0.0))
    else:
        dataset = dataset.batch(batch_size)
    if num_examples > 0:  # the count `unbatch` forgot, so Keras knows the epoch's length
        dataset = dataset.apply(
            tf.data.experimental.assert_cardinality(-(-num_examples // batch_size))
        )
    if shuffle:
        dataset = dataset.shuffle(window_batches, seed=seed)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    dataset.tags = list(tags)
    return dataset


def _sort_by_words(sentences, tag_ids, weights):
    order = tf.argsort(tag_ids.row_lengths(), stable=True)
    return tuple(tf.gather(t, order) for t in (sentences, tag_ids, weights))


def word_tagger_function(model, tags):
    """`fn(sentences) -> {"tags", "words"}`, the graph `save_word_tagger` exports.

    `sentences` is a 1-D `tf.string` tensor; `tags` and `words` are string
    `[batch, max_words]`, one tag per whitespace-separated word, padded with
    `""` (the output format of `kt.export.save_tagger`).
    """
    from ktransfer.data.conll import check_tags

    tag_table = tf.constant(check_tags(tags))
    num_tags = len(tags)

    @tf.function(input_signature=[tf.TensorSpec(shape=(None,), dtype=tf.string)])
    def tag(text):
        words = tf.strings.split(text)  # the split WordFeatures does
        logits = model(text, training=False)
        tf.debugging.assert_equal(
            tf.shape(logits)[-1],
            num_tags,
            message=f"the model's output size differs from len(tags)={num_tags}",
        )
        is_word = tf.ones_like(words, dtype=tf.bool).to_tensor(default_value=False)
        predicted = tf.gather(tag_table, tf.argmax(logits, axis=-1, output_type=tf.int32))
        predicted = predicted[:, : tf.shape(is_word)[1]]
        return {
            "tags": tf.where(is_word, predicted, ""),
            "words": words.to_tensor(default_value=""),
        }

    return tag


def save_word_tagger(model, path, tags, overwrite=False):
    """Write a `BiLSTMTagger` as a SavedModel: sentences in, word tags out.

    The word-vector counterpart of `kt.export.save_tagger`, with the same
    `serving_default` signature: `text`, a 1-D `tf.string` tensor of
    sentences (words separated by spaces) -> `tags` and `words`, string
    `[batch, max_words]`, one tag per word, padded with `""`. Every word of a
    sentence is tagged (no length limit). The graph holds only core
    TensorFlow ops (no `tensorflow_text` needed). Written atomically into the
    version folder, `tags` also in `assets.extra/labels.txt`.

    Args:
        model: a trained `BiLSTMTagger` (or any model taking raw sentences
            and returning one row of tag logits per whitespace-separated word).
        path: the version folder, `saved_models/<name>/<version>`.
        tags: the tag names in tag-index order.
        overwrite: replace an existing version folder.

    Returns:
        The absolute path written.
    """
    from ktransfer.export import _check_version_folder
    from ktransfer.export import _write_archive

    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    path = _check_version_folder(path, overwrite)
    serve = word_tagger_function(model, tags)
    serve(tf.constant(["a"]))  # builds the model and checks the number of tags
    text = tf.TensorSpec(shape=(None,), dtype=tf.string, name="text")
    _write_archive(model, None, [text], serve, path, list(tags))
    return path
