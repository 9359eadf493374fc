"""`BiLSTMTagger`: a word-vector sequence tagger (NER, POS) as a task, raw sentences in.

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
vocabulary lacks (they get the `[UNK]` vector). The task's preprocessor (a
`kt.layers.WordFeaturesPreprocessor`: the ids of each word's pieces and its
casing class) runs in the tf.data pipeline, so plain `model.fit` works under
any distribution strategy; `export` writes a SavedModel that takes raw
sentences. Like `kt.tasks.TokenClassifier`, the task answers
`predict_tags` and `predict_entities`.

```python
import ktransfer as kt
train = kt.data.from_conll("train.txt", scheme="iob2")   # (words, tags)
tags = kt.data.tag_vocabulary(train)
encoder = kt.encoders.WordVectorEncoder("glove50", standardize="lower", sequence_length=None)
encoder.adapt(train.map(lambda words, tags: words))
model = kt.models.BiLSTMTagger(encoder, len(tags), tags=tags)
model.fit(train, epochs=5)          # or kt.tasks.bilstm_tagger.prepare_sentences(train, tags, ...)
model.predict_entities(["EU rejects German call"])
model.export("saved_models/ner_glove/1")
```
"""

import numpy as np

import tensorflow as tf

from ktransfer._keras import keras
from ktransfer.encoders.word_vector_encoder import check_token_encoder
from ktransfer.heads.token_classification_head import TokenClassificationHead
from ktransfer.layers.checks import check_positive_int
from ktransfer.layers.word_features import CASE_CLASSES  # noqa: F401  (their old home)
from ktransfer.layers.word_features import WordFeatures
from ktransfer.layers.word_features import case_classes  # noqa: F401
from ktransfer.metrics import entities
from ktransfer.tasks.serving import text_signature
from ktransfer.tasks.task import Task
from ktransfer.tasks.token_classifier import word_offsets
from ktransfer.tasks.word_vector_model import as_model_inputs
from ktransfer.tasks.word_vector_model import check_learning_rate
from ktransfer.tasks.word_vector_model import string_input  # noqa: F401  (re-exported)

DEFAULT_BATCH_SIZE = 32


def _word_inputs():
    """The inputs of the tagger's network: a `WordFeaturesPreprocessor`'s output (sorted keys)."""
    return {
        "case_ids": keras.Input(shape=(None,), dtype="int32", name="case_ids"),
        "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask"),
        "token_ids": keras.Input(shape=(None, None), dtype="int32", name="token_ids"),
    }


def _is_string_spec(spec, rank):
    return isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string and spec.shape.rank == rank


def _word_lists(x):
    """A list of word lists from sentences (split on whitespace) or word lists."""
    if isinstance(x, (str, bytes)):
        raise ValueError(
            "`x` must be a list of sentences or word lists; wrap a single sentence in a list."
        )
    rows = []
    for i, row in enumerate(list(x)):
        if isinstance(row, bytes):
            row = row.decode("utf-8")
        if isinstance(row, (str, np.str_)):
            rows.append(str(row).split())
            continue
        if isinstance(row, np.ndarray):
            row = row.tolist()
        if not isinstance(row, (list, tuple)) or not all(isinstance(w, (str, bytes)) for w in row):
            raise TypeError(f"x[{i}] must be a sentence (str) or a list of words. Received: {row!r:.60}")
        rows.append([w.decode("utf-8") if isinstance(w, bytes) else str(w) for w in row])
    return rows


@keras.saving.register_keras_serializable(package="ktransfer")
class BiLSTMTagger(Task):
    """A bidirectional LSTM tagger over word vectors: a task, raw sentences in, compiled.

    `sentences -> preprocessor` (in the tf.data pipeline: each
    whitespace-separated word's piece ids and casing class) `->
    WordFeatures` (word vector + casing embedding per word) `-> Dropout ->
    Bidirectional(LSTM(units, return_sequences=True)) ->
    TokenClassificationHead(num_tags, dropout)` (tag logits `[batch, words,
    num_tags]`, one row per word, padding skipped through the mask),
    compiled with Adam, the head's `default_loss()` (mean over words) and
    weighted accuracy.

    `fit` / `evaluate` take sentences (or word lists) with one list of tags
    per sentence (names or ids), an unbatched `(words, tags)` dataset
    (`kt.data.from_conll`), or `prepare_sentences(...)` batches; `predict`
    returns tag probabilities `[n, max_words, num_tags]` (0 past each
    sentence's last word), `predict_tags` one tag per word and
    `predict_entities` entity spans with character offsets, as
    `kt.tasks.TokenClassifier` does; `export(path)` writes the raw-sentence
    SavedModel (`tags`, `words`). Calling the task on raw sentences
    (`model(["EU rejects German call"])`, code written before tasks) returns
    the logits.

    Args:
        encoder: an adapted `kt.encoders.WordVectorEncoder(..., pooling=None)`
            (`standardize="lower"` suits GloVe 6B and pre-split CoNLL text:
            it keeps punctuation words; casing comes from `case_dim`).
            Its `sequence_length` does not cut sentences.
        num_tags: number of tags (>= 2), `len(tags)`.
        units: LSTM units per direction.
        dropout: dropout rate on the word features and on the LSTM outputs.
        case_dim: size of the trainable casing embedding (0: none).
        learning_rate: Adam's learning rate (`compile()` picks it again).
        tags: the tag names in tag-index order (default "0", "1", ...):
            what `predict_tags` and the export answer.
        model: instead of `encoder`, the whole network (what a `.keras`
            file restores).

    Example:

    ```python
    import numpy as np, ktransfer as kt
    vectors = kt.WordVectors(["the", "film", "in", "paris"], np.eye(4, dtype="float32"))
    encoder = kt.encoders.WordVectorEncoder(vectors, standardize="lower")
    encoder.adapt(["the film in paris"])
    tagger = kt.models.BiLSTMTagger(encoder, tags=["O", "B-LOC"], units=8)
    tagger.fit(x=["the film in Paris"], y=[["O", "O", "O", "B-LOC"]], epochs=1, verbose=0)
    tagger.predict_tags(["the film in Paris"])   # [["O", "O", "O", "B-LOC"]] once trained enough
    ```
    """

    preset_pooling = None

    def __init__(
        self,
        encoder=None,
        num_tags=None,
        units=128,
        dropout=0.5,
        case_dim=8,
        learning_rate=1e-3,
        tags=None,
        model=None,
        **kwargs,
    ):
        from ktransfer.data.conll import check_tags

        check_positive_int(units, "units")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: {dropout!r}")
        learning_rate = check_learning_rate(learning_rate)
        if tags is not None:
            tags = check_tags(tags)
            if num_tags is None:
                num_tags = len(tags)
            elif num_tags != len(tags):
                raise ValueError(f"`num_tags`={num_tags} but `tags` has {len(tags)} names.")
        if kwargs.get("name") is None:
            kwargs["name"] = "bilstm_tagger"
        kwargs.pop("encoder", None)
        if model is None:
            check_token_encoder(encoder, "BiLSTMTagger")
            encoder.place_in_strategy_scope()  # adapted outside the strategy's scope
            head = TokenClassificationHead(num_tags, dropout=dropout, name="token_classification_head")
            inputs = _word_inputs()
            features = WordFeatures(encoder, case_dim=case_dim, name="word_features")(inputs)
            features = keras.layers.Dropout(dropout, name="feature_dropout")(features)
            states = keras.layers.Bidirectional(
                keras.layers.LSTM(units, return_sequences=True), name="bilstm"
            )(features)
            model = keras.Model(inputs, head(states), name="bilstm_tagger_network")
        elif encoder is not None:
            raise ValueError("Pass `encoder` (a network is built) or `model` (restored), not both.")
        super().__init__(**kwargs)
        self.network = model
        self.features = model.get_layer("word_features")
        self.head = model.get_layer("token_classification_head")
        self.encoder = self.features.encoder
        self.preprocessor = self.features.preprocessor
        self.tags = tags if tags is not None else [str(i) for i in range(self.head.num_tags)]
        self.units = units
        self.dropout = float(dropout)
        self.case_dim = self.features.case_dim
        self.learning_rate = learning_rate
        self.compile()

    @property
    def num_tags(self):
        return len(self.tags)

    def get_layer(self, name=None, index=None):
        """A layer of the task, or of its network (`get_layer("word_features")`)."""
        try:
            return super().get_layer(name=name, index=index)
        except ValueError:
            return self.network.get_layer(name=name, index=index)

    # --- forward -------------------------------------------------------------------
    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    def __call__(self, *args, **kwargs):
        if args and not isinstance(args[0], keras.KerasTensor):
            inputs = args[0]
            if not isinstance(inputs, dict):  # raw sentences, as before tasks
                inputs = self.preprocessor(tf.convert_to_tensor(inputs, tf.string))
            args = (as_model_inputs(inputs),) + args[1:]
        return super().__call__(*args, **kwargs)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        probabilities = tf.nn.softmax(tf.cast(self(x, training=False), tf.float32), axis=-1)
        is_word = tf.cast(tf.not_equal(x["padding_mask"], 0), tf.float32)
        return probabilities * is_word[..., None]

    # --- training defaults ------------------------------------------------------------
    def compile(self, optimizer="auto", loss="auto", metrics="auto", weighted_metrics="auto",
                **kwargs):
        """`"auto"`: Adam(`learning_rate`), the head's loss, word-level weighted accuracy."""
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = keras.optimizers.Adam(self.learning_rate)
        if isinstance(metrics, str) and metrics == "auto":
            metrics = None
            if isinstance(weighted_metrics, str) and weighted_metrics == "auto":
                weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if isinstance(weighted_metrics, str) and weighted_metrics == "auto":
            weighted_metrics = None
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        weighted_metrics=weighted_metrics, **kwargs)

    def bucket_boundaries(self):
        return None  # batches are padded to their longest sentence

    # --- the tf.data pipeline ------------------------------------------------------------
    def make_dataset(self, x, y=None, batch_size=DEFAULT_BATCH_SIZE, shuffle=False, seed=None,
                     sample_weight=None, labelled=None):
        """Sentences / word lists (and their tags) -> batches of model inputs.

        Args:
            x: sentences (str; words are split on whitespace) or word lists;
                or a `tf.data.Dataset`: unbatched `(words, tags)`
                (`kt.data.from_conll`), `words` (1-D `tf.string`), sentences
                (scalar `tf.string`, with or without tags), or the batches of
                `prepare_sentences` (`(sentences, tag_ids, sample_weights)`),
                which keep their batching. Prepared features go as they are.
            y: with in-memory `x`, one list of tags (names or ids) per sentence.
            batch_size, shuffle, seed: as in `prepare_sentences`.
            labelled: False builds prediction batches (tags are dropped).

        Returns:
            Batches of `(features, tag_ids, sample_weights)` (or `features`).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
        if sample_weight is not None:
            raise ValueError(
                "BiLSTMTagger takes no `sample_weight`: the weights of a batch are per word "
                "(1 on words, 0 on padding), set by the pipeline."
            )
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise ValueError(
                    "When `x` is a tf.data.Dataset, its elements carry the tags ((words, tags) "
                    "as kt.data.from_conll reads them): do not pass `y`."
                )
            return self._from_tf_data(x, batch_size, shuffle, seed, labelled)
        words = _word_lists(x)
        if not words:
            raise ValueError("`x` is empty: give at least one sentence.")
        if y is None or labelled is False:
            if labelled:
                raise ValueError(
                    "Training and evaluation need tags: pass y=[[tag, ...], ...], one tag per "
                    "word of each sentence."
                )
            sentences = tf.data.Dataset.from_tensor_slices(
                tf.constant([" ".join(w) for w in words], tf.string)
            )
            return self._preprocess(sentences.batch(batch_size))
        dataset = tf.data.Dataset.from_tensor_slices(
            (tf.ragged.constant(words, dtype=tf.string),
             tf.ragged.constant(self._tag_lists(y, words), dtype=tf.string))
        ).map(lambda w, t: (w, t))
        return self._preprocess(prepare_sentences(
            dataset, self.tags, batch_size=batch_size, shuffle=shuffle, seed=seed,
            shuffle_buffer=max(len(words), 1),
        ))

    def _tag_lists(self, y, words):
        if isinstance(y, (str, bytes)):
            raise ValueError("`y` must hold one list of tags per sentence, not one string.")
        rows = list(y)
        if len(rows) != len(words):
            raise ValueError(f"`y` has {len(rows)} tag lists for {len(words)} sentences.")
        out = []
        for i, (row, sentence) in enumerate(zip(rows, words)):
            row = list(row.tolist() if isinstance(row, np.ndarray) else row)
            if len(row) != len(sentence):
                raise ValueError(
                    f"y[{i}] has {len(row)} tags for the {len(sentence)} words of {sentence[:8]!r}: "
                    "give one tag per (whitespace-separated) word."
                )
            names = []
            for tag in row:
                if isinstance(tag, bytes):
                    tag = tag.decode("utf-8")
                if isinstance(tag, (int, np.integer)) and not isinstance(tag, bool):
                    if not 0 <= int(tag) < len(self.tags):
                        raise ValueError(f"Tag id {int(tag)} in y[{i}] is out of range: tags are {self.tags}.")
                    tag = self.tags[int(tag)]
                if tag not in self.tags:
                    raise ValueError(
                        f"Unknown tag {tag!r} in y[{i}]: the tagger's tags are {self.tags}. Build "
                        "the tagger with tags=kt.data.tag_vocabulary(train)."
                    )
                names.append(tag)
            out.append(names)
        return out

    def _from_tf_data(self, dataset, batch_size, shuffle, seed, labelled):
        spec = dataset.element_spec
        first = spec[0] if isinstance(spec, tuple) else spec
        if isinstance(first, dict):
            return dataset  # prepared features go to Keras as they are
        if isinstance(spec, tuple) and len(spec) in (2, 3) and _is_string_spec(first, 1) \
                and isinstance(spec[1], tf.TensorSpec) and spec[1].shape.rank == 2:
            # Batches of prepare_sentences: (sentences [b], tag_ids [b, w], weights [b, w]).
            if spec[1].dtype == tf.string:
                raise ValueError(
                    "Batched tags must be tag ids (as prepare_sentences gives); pass an "
                    "unbatched (words, tags) dataset for tag names."
                )
            if labelled is False:
                dataset = dataset.map(lambda sentences, *rest: sentences)
            return self._preprocess(dataset)
        if _is_string_spec(first, 0):  # sentences
            if isinstance(spec, tuple):
                dataset = dataset.map(lambda sentence, tags, *rest: (tf.strings.split(sentence), tags))
            else:
                dataset = dataset.map(tf.strings.split)
        elif not _is_string_spec(first, 1):
            raise ValueError(
                "BiLSTMTagger reads a dataset of (words, tags) (kt.data.from_conll), words, "
                f"sentences, or prepare_sentences batches. Its element_spec is {spec}."
            )
        if labelled is False:
            if isinstance(dataset.element_spec, tuple):
                dataset = dataset.map(lambda words, *rest: words)
            sentences = dataset.map(lambda words: tf.strings.reduce_join(words, separator=" "))
            return self._preprocess(sentences.batch(batch_size))
        return self._preprocess(prepare_sentences(
            dataset, self.tags, batch_size=batch_size, shuffle=shuffle, seed=seed
        ))

    def _preprocess(self, batches):
        """Map the preprocessor over batches of sentences (`(sentences, tag_ids, weights)` or sentences)."""
        preprocessor = self.preprocessor

        def preprocess(sentences, *targets):
            features = as_model_inputs(preprocessor(sentences))
            if not targets:
                return features
            width = tf.shape(features["case_ids"])[1]  # at least 1, also for empty sentences
            padded = tuple(
                tf.pad(t, [[0, 0], [0, tf.maximum(width - tf.shape(t)[1], 0)]]) for t in targets
            )
            return (features,) + padded

        return batches.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True) \
            .prefetch(tf.data.AUTOTUNE)

    # --- inference -------------------------------------------------------------------------
    def predict(self, x, batch_size=None, **kwargs):
        """Tag probabilities of every word, float32 `[n, max_words, num_tags]` (0 past the last word).

        `x`: sentences (str), word lists, or a dataset (see `make_dataset`).
        """
        outputs = super().predict(x, batch_size=batch_size, **kwargs)
        if isinstance(outputs, tf.RaggedTensor):
            outputs = outputs.to_tensor()
        return np.asarray(outputs, dtype=np.float32)

    def predict_tags(self, x, batch_size=None, **kwargs):
        """One list of tags per sentence, one tag per whitespace-separated word."""
        words = _word_lists(x)
        probabilities = self.predict(words, batch_size=batch_size, **kwargs)
        return [self._decode_tags(probabilities[i], len(w))[0] for i, w in enumerate(words)]

    def _decode_tags(self, probabilities, num_words):
        best = np.argmax(probabilities[:num_words], axis=-1)
        return [self.tags[int(i)] for i in best], [float(probabilities[j, i]) for j, i in enumerate(best)]

    def predict_entities(self, texts, batch_size=None, **kwargs):
        """The entities of each text: `{"type", "text", "start", "end", "score"}` spans.

        As `kt.tasks.TokenClassifier.predict_entities`: words are the
        whitespace-separated tokens, each gets its most probable tag, the
        tags are read as entity chunks (`kt.metrics.entities`); `start` /
        `end` are character offsets (`end` exclusive), `score` the mean
        probability of the chosen tags over the entity's words.
        """
        if isinstance(texts, (str, bytes)):
            raise ValueError("`texts` must be a list of texts; wrap a single text in a list.")
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
        if not texts:
            return []
        probabilities = self.predict([text.split() for text in texts], batch_size=batch_size, **kwargs)
        results = []
        for i, text in enumerate(texts):
            offsets = word_offsets(text)
            tags, scores = self._decode_tags(probabilities[i], len(offsets))
            spans = []
            for type_, first, last in entities(tags):
                start, end = offsets[first][0], offsets[last][1]
                spans.append({
                    "type": type_, "text": text[start:end], "start": start, "end": end,
                    "score": float(np.mean(scores[first:last + 1])),
                })
            results.append(spans)
        return results

    # --- export ------------------------------------------------------------------------------
    def serving_signatures(self):
        """`serving_default`: `text` (sentences) -> `tags`, `words` (see `word_tagger_function`)."""
        return {"serving_default": (word_tagger_function(self, self.tags), text_signature(("text",)))}

    def label_files(self):
        return {"labels.txt": list(self.tags)}

    # --- serialisation -------------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "model": keras.saving.serialize_keras_object(self.network),
                "tags": list(self.tags),
                "units": self.units,
                "dropout": self.dropout,
                "case_dim": self.case_dim,
                "learning_rate": self.learning_rate,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("model"), dict):
            config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return super().from_config(config)


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
    from ktransfer.utils.saved_model import check_version_folder
    from ktransfer.utils.saved_model import write_saved_model

    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    path = check_version_folder(path, overwrite)
    serve = word_tagger_function(model, tags)
    serve(tf.constant(["a"]))  # builds the model and checks the number of tags
    text = tf.TensorSpec(shape=(None,), dtype=tf.string, name="text")
    return write_saved_model(
        path,
        model,
        {"serving_default": (serve, [text])},
        label_files={"labels.txt": list(tags)},
        overwrite=overwrite,
    )
