"""`WordVectorClassifier`: the base of the word-vector sentence classifiers (`TextCNN`, `BiLSTMClassifier`).

A word-vector classifier is a `kt.tasks.TextClassifier` whose network is
`token ids -> WordVectorEncoder -> body -> ClassificationHead`, the body
being what a subclass builds (Kim's convolutions, a bidirectional LSTM).
The encoder's `WordVectorPreprocessor` (standardise, split, map words to
ids) is the task's preprocessor: `fit`, `evaluate` and `predict` run it in
the tf.data pipeline, so no string reaches the (replicated) model, and the
same `model.fit` works on one device, under `MirroredStrategy`,
`MultiWorkerMirroredStrategy` and on TPUs.
"""

import numbers

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.pipeline import AUTOTUNE
from ktransfer.data.pipeline import trim_to_bucket
from ktransfer.encoders.word_vector_encoder import check_token_encoder
from ktransfer.heads.classification_head import ClassificationHead
from ktransfer.layers.checks import check_positive_int  # noqa: F401  (re-exported)
from ktransfer.tasks.distributed_fit import DistributedFitMixin  # noqa: F401  (its first home)
from ktransfer.tasks.distributed_fit import in_multi_worker_mode  # noqa: F401
from ktransfer.tasks.serving import preprocess_texts
from ktransfer.tasks.task import is_raw_input
from ktransfer.tasks.task import text_columns
from ktransfer.tasks.text_classifier import TextClassifier

__all__ = [
    "WordVectorClassifier",
    "check_learning_rate",
    "check_token_encoder",
    "string_input",
    "token_inputs",
]


def check_learning_rate(learning_rate):
    """Return `learning_rate` if it is a positive number; else raise a ValueError."""
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, numbers.Real)
        or not learning_rate > 0
    ):
        raise ValueError(f"`learning_rate` must be a positive number. Received: {learning_rate!r}")
    return float(learning_rate)


def string_input():
    """A model input of raw strings, shape `[batch]` (models written before the preprocessor)."""
    return keras.Input(shape=(), dtype="string", name="text")


def token_inputs():
    """The inputs of a network over a `WordVectorPreprocessor`'s output.

    `{"token_ids": int32 [batch, length], "padding_mask": int32 [batch,
    length]}` (the task's pipeline casts the mask to int32, which aggregates
    under `MirroredStrategy`; the encoder reads its mask from `token_ids`).
    """
    return {  # in sorted key order, the order tf.nest gives dicts in graphs
        "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask"),
        "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
    }


def as_model_inputs(features):
    """A feature dict as the networks take it: a boolean `padding_mask` cast to int32."""
    if isinstance(features, dict) and "padding_mask" in features:
        mask = features["padding_mask"]
        if getattr(mask, "dtype", None) is not None and mask.dtype == tf.bool:
            features = dict(features, padding_mask=tf.cast(mask, tf.int32))
    return features


def _contains_strings(inputs):
    return is_raw_input(inputs) or (
        isinstance(inputs, (tf.Tensor, tf.RaggedTensor)) and inputs.dtype == tf.string
    )


def _batched_texts(spec):
    """Whether a dataset's elements are batches of texts: `texts [b]` or `(texts [b], labels...)`."""
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        spec = spec[0]
    return isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string and spec.shape.rank == 1


class WordVectorClassifier(TextClassifier):
    """A `TextClassifier` over a per-token `WordVectorEncoder`, with a body a subclass builds.

    `{"token_ids", "padding_mask"} -> WordVectorEncoder -> build_body(...)
    -> ClassificationHead(num_classes, dropout)` (logits), compiled with
    Adam(`learning_rate`) when constructed, as the functional models of
    earlier versions were. Everything a `TextClassifier` does works:
    `fit` / `evaluate` / `predict` / `predict_labels` on raw strings (lists,
    numpy arrays, `tf.data.Dataset`s of `(texts, labels)`, batched or not:
    a batched dataset keeps its batches), `export(path)` (raw strings in,
    `probabilities` and `label` out), `.keras` round trips. For code written
    before tasks, calling the task on raw strings (`model(["a great film"])`)
    tokenises them in place and returns logits.

    Subclasses define `build_body(tokens, **body_config)` (per-token
    vectors with their mask -> one feature vector per text), pass their
    arguments as `body_config`, set `default_name`, and add their arguments
    to `get_config`.

    Args:
        encoder: an adapted `kt.encoders.WordVectorEncoder(..., pooling=None)`.
        num_classes: the number of classes (default `len(labels)`).
        labels: the class names in class-index order (default "0", "1", ...).
        dropout: dropout rate on the body's features (in the head).
        learning_rate: the learning rate of the Adam optimizer that
            `compile()` picks (and that the task is compiled with).
        multi_label: one sigmoid per label instead of a softmax.
        model: instead of `encoder`, the whole network (what a `.keras`
            file restores).
        body_config: the keyword arguments of the subclass's `build_body`.
        **kwargs: `TextClassifier` arguments (`threshold`, `name`, ...).
    """

    default_name = None

    def __init__(
        self,
        encoder=None,
        num_classes=None,
        labels=None,
        dropout=0.5,
        learning_rate=1e-3,
        multi_label=False,
        model=None,
        body_config=None,
        **kwargs,
    ):
        learning_rate = check_learning_rate(learning_rate)
        kwargs.pop("pairs", None)  # word-vector classifiers read single texts
        kwargs.pop("encoder", None)
        if kwargs.get("name") is None:
            kwargs["name"] = self.default_name
        if model is None:
            check_token_encoder(encoder, type(self).__name__)
            encoder.place_in_strategy_scope()  # adapted outside the strategy's scope
            if num_classes is None:
                if labels is None:
                    raise ValueError(
                        "Give `num_classes` or `labels` (the class names), e.g. num_classes=2."
                    )
                num_classes = len(list(labels))
            model = self._build_classifier_network(
                encoder, num_classes, dropout, multi_label, body_config or {}
            )
        elif encoder is not None:
            raise ValueError("Pass `encoder` (a network is built) or `model` (restored), not both.")
        super().__init__(
            model=model, num_classes=num_classes, labels=labels, multi_label=multi_label,
            pairs=False, **kwargs,
        )
        self.dropout = float(dropout)
        self.learning_rate = learning_rate
        self.compile()

    def _build_classifier_network(self, encoder, num_classes, dropout, multi_label, body_config):
        inputs = token_inputs()
        features = self.build_body(encoder(inputs), **body_config)
        head = ClassificationHead(
            num_classes, dropout=dropout, multi_label=multi_label, name="classification_head"
        )
        return keras.Model(inputs, head(features), name=f"{self.default_name or 'word_vector'}_network")

    def build_body(self, tokens, **body_config):
        """Per-token vectors `[batch, length, dim]` (with their mask) -> features `[batch, features]`.

        Called once, in the constructor (before the Keras model is set up:
        use only the arguments, which are the subclass's `body_config`).
        """
        raise NotImplementedError(f"{type(self).__name__} must define `build_body(tokens)`.")

    @property
    def network(self):
        """The functional network: token ids -> encoder -> body -> head (logits)."""
        return self.model

    # --- calling on raw strings (code written before tasks) -------------------
    def __call__(self, *args, **kwargs):
        if args and not isinstance(args[0], keras.KerasTensor):
            inputs = args[0]
            if _contains_strings(inputs):
                inputs = preprocess_texts(self.preprocessor, tf.convert_to_tensor(inputs, tf.string))
            args = (as_model_inputs(inputs),) + args[1:]
        return super().__call__(*args, **kwargs)

    # --- training defaults --------------------------------------------------------
    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """As `Task.compile`, but `"auto"` picks Adam(`learning_rate`) (1e-3 by default)."""
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = keras.optimizers.Adam(self.learning_rate)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # --- the tf.data pipeline ------------------------------------------------------
    def make_dataset(self, x, y=None, batch_size=32, shuffle=False, seed=None,
                     sample_weight=None, labelled=None):
        """As `Task.make_dataset`; a batched dataset of texts keeps its batches.

        A `tf.data.Dataset` of `texts [batch]` or `(texts [batch], labels
        [batch])` (e.g. `kt.data.from_tsv(...).batch(50)`) is trained on in
        its own batches, as Keras trains on a dataset (`batch_size` is not
        used); each batch is preprocessed and trimmed to its length bucket.
        With an encoder of `sequence_length=None`, every batch is padded to
        its longest text instead.
        """
        if isinstance(x, tf.data.Dataset) and y is None and sample_weight is None:
            if _batched_texts(x.element_spec):
                return self._keep_batches(x, labelled)
        if self.preprocessor.sequence_length is None and is_raw_input(x):
            return self._batch_then_preprocess(x, y, batch_size, shuffle, seed, sample_weight, labelled)
        return super().make_dataset(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                    sample_weight=sample_weight, labelled=labelled)

    def _keep_batches(self, dataset, labelled):
        spec = dataset.element_spec
        texts_spec = spec[0] if isinstance(spec, tuple) else spec
        static = texts_spec.shape[0]
        if static is not None:
            size, drop_remainder = int(static), True
        else:
            first = next(iter(dataset.take(1)), None)
            if first is None:
                raise ValueError("The dataset is empty: there is nothing to train or predict on.")
            size = int(tf.shape(first[0] if isinstance(first, tuple) else first)[0])
            drop_remainder = False
        batches = int(dataset.cardinality())
        dataset = dataset.unbatch()
        if isinstance(spec, tuple):
            if labelled is False:
                dataset = dataset.map(lambda *element: element[0])
            else:
                dataset = self.map_dataset_labels(dataset)
        dataset = dataset.batch(size, drop_remainder=drop_remainder)
        if batches > 0:  # the count `unbatch` forgot, so Keras knows an epoch's length
            dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
        return self._preprocess_batches(dataset)

    def _batch_then_preprocess(self, x, y, batch_size, shuffle, seed, sample_weight, labelled):
        if isinstance(x, tf.data.Dataset):  # unbatched texts or (text, label) pairs
            return self._keep_batches(x.batch(batch_size), labelled)
        columns = text_columns(x)
        if len(columns) != 1:
            raise ValueError(f"{type(self).__name__} classifies single texts, not text pairs.")
        texts = columns[0]
        if len(texts) == 0:
            raise ValueError("`x` is empty: give at least one text.")
        element = (texts,)
        if y is not None:
            element += (self.encode_labels(y, len(texts)),)
            if sample_weight is not None:
                element += (tf.constant(sample_weight, tf.float32),)
        dataset = tf.data.Dataset.from_tensor_slices(element)
        if shuffle:
            dataset = dataset.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
        return self._preprocess_batches(dataset.batch(batch_size))

    def _preprocess_batches(self, dataset):
        boundaries = self.bucket_boundaries()
        boundaries = None if boundaries is None else tf.constant(boundaries, tf.int32)

        def preprocess(*element):
            features = preprocess_texts(self.preprocessor, element[0])
            if boundaries is not None:
                features = trim_to_bucket(features, boundaries)
            if len(element) == 1:
                return features
            return (features,) + tuple(element[1:])

        dataset = dataset.map(preprocess, num_parallel_calls=AUTOTUNE, deterministic=True)
        return dataset.prefetch(AUTOTUNE)

    # --- serialisation ----------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.pop("pairs", None)
        config.update({"dropout": self.dropout, "learning_rate": self.learning_rate})
        return config
