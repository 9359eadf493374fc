"""`Task`: a `keras.Model` that owns its encoder and preprocessor, raw strings in.

Modelled on KerasHub's `Task` and `PipelineModel`: a task holds its
`encoder` (a `kt.encoders.Encoder`) and its `preprocessor` (the callable
layer that turns raw strings into the encoder's inputs), so `fit`,
`evaluate` and `predict` take raw strings (Python lists, numpy string
arrays, a `(texts_a, texts_b)` pair of them, or a `tf.data.Dataset` of
strings / `(strings, labels)`) and tokenise them in the tf.data pipeline,
batched with ktransfer's length buckets (`kt.data.batch_examples`): the
replicated model only ever sees integer tensors. A dataset that is already
prepared (feature dicts, e.g. from `kt.data.prepare`) goes to Keras as it
is. `compile()` with no arguments picks `kt.optimizers.FusedAdamW(5e-5)`,
the task's loss and accuracy; `export(path)` writes the raw-string TF
Serving SavedModel (`kt.utils.write_saved_model`) with the task's own
serving signatures.

What a subclass defines
-----------------------
A task is a subclassed Keras model (it defines `call`; it does not call
`keras.Model.__init__` with `inputs=`/`outputs=`, which would rewrite the
base classes of every task: wrap a functional graph as an attribute instead).

- `__init__(..., **kwargs)`: call `super().__init__(**kwargs)` first, then set
  `self.encoder = ...`, `self.preprocessor = ...` (None: the encoder's) and
  its own layers; build them (the task must be built when constructed, so
  that a `.keras` file loads its weights).
- `call(inputs, training=None)`: the model on preprocessed features.
- `serving_signatures()`: `{name: (fn, [tf.TensorSpec, ...])}` with a
  `"serving_default"`; each `fn` takes string tensors and returns a dict of
  tensors (what TF Serving answers, and what `kt.predict` returns).
- `get_config()` (extend `super().get_config()`, serialise layers with
  `keras.saving.serialize_keras_object`) and, if needed, `from_config`;
  decorate the class with `@keras.saving.register_keras_serializable(package="ktransfer")`.
- Optional hooks: `default_loss()`, `default_metrics()`,
  `encode_labels(y, num_examples)` (in-memory labels -> numpy),
  `map_dataset_labels(dataset)` (labels inside a `tf.data.Dataset`),
  `label_files()` (files for `assets.extra/`), `export_trackables()`,
  `preset_pooling` (the `pooling` of the encoder `from_preset` loads).

Example:

```python
import ktransfer as kt
clf = kt.tasks.TextClassifier.from_preset("minilm", num_classes=2, labels=["neg", "pos"],
                                          sequence_length=64)
clf.compile()
clf.fit(x=["a great film", "a dull film"], y=["pos", "neg"], batch_size=32, epochs=1)
clf.predict_labels(["what a film"])
clf.export("saved_models/sst2/1")
```
"""

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.pipeline import batch_examples
from ktransfer.data.pipeline import bucket_boundaries
from ktransfer.tasks.serving import preprocess_texts
from ktransfer.tasks.distributed_fit import DistributedFitMixin
from ktransfer.utils.saved_model import check_version_folder
from ktransfer.utils.saved_model import write_saved_model

AUTOTUNE = tf.data.AUTOTUNE
# Texts tokenised per `map` call (batched tokenisation is much faster).
TOKENIZE_BATCH_SIZE = 256
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 5e-5
# In-memory data is shuffled whole each epoch (raw strings are cheap); the
# tokenised examples are then sorted by length within windows of this many
# batches, as `kt.data.prepare` does.
WINDOW_BATCHES = 32


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _contains_strings(inputs):
    for value in tf.nest.flatten(inputs):
        if isinstance(value, (str, bytes)):
            return True
        dtype = getattr(value, "dtype", None)
        if isinstance(value, np.ndarray) and value.dtype.kind in ("U", "S", "O"):
            return True
        if dtype is not None and "string" in str(dtype):
            return True
    return False


def _text_column(values, what):
    """A numpy object array of str from a list / array / Series / tensor of texts."""
    if isinstance(values, (str, bytes)):
        raise ValueError(
            f"{what} must be a list of texts; received one string {values[:40]!r}. "
            "Wrap a single text in a list: [text]."
        )
    if isinstance(values, (tf.Tensor, tf.RaggedTensor)):
        values = values.numpy()
    try:
        column = list(values)
    except TypeError:
        raise TypeError(
            f"{what} must be a list or array of texts. Received: {type(values).__name__}"
        ) from None
    out = []
    for i, value in enumerate(column):
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, np.str_):
            value = str(value)
        if not isinstance(value, str):
            raise TypeError(
                f"{what}[{i}] is a {type(value).__name__} ({value!r:.60}), not a text. "
                "Pass strings (for sentence pairs: x=(texts_a, texts_b))."
            )
        out.append(value)
    return np.array(out, dtype=object)


def text_columns(x):
    """`[texts]` or `[texts_a, texts_b]`: numpy object arrays from what `fit` takes.

    `x` is a list / numpy array / pandas Series of str, a pair
    `(texts_a, texts_b)` of those (sentence pairs), or a list of
    `(text_a, text_b)` tuples.
    """
    if isinstance(x, tuple) and len(x) == 2 and not isinstance(x[0], (str, bytes)):
        a, b = _text_column(x[0], "x[0] (texts_a)"), _text_column(x[1], "x[1] (texts_b)")
        if len(a) != len(b):
            raise ValueError(
                f"The two texts of a pair must come in equal numbers: x=(texts_a, texts_b) "
                f"has {len(a)} and {len(b)}."
            )
        return [a, b]
    if isinstance(x, (list, tuple)) and x and all(
        isinstance(item, (tuple, list)) and len(item) == 2 for item in x
    ):
        return [_text_column([p[0] for p in x], "x (first texts)"),
                _text_column([p[1] for p in x], "x (second texts)")]
    return [_text_column(x, "x")]


def _is_text_spec(spec):
    return isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string and spec.shape.rank in (0, 1)


def _is_text_input(spec):
    if _is_text_spec(spec):
        return True
    return (
        isinstance(spec, tuple) and len(spec) == 2 and all(_is_text_spec(s) for s in spec)
    )


def _text_rank(spec):
    return (spec[0] if isinstance(spec, tuple) else spec).shape.rank


def is_raw_input(x):
    """True when `x` holds raw texts that a task preprocesses (not prepared features)."""
    if x is None:
        return False
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        if _is_text_input(spec):
            return True
        return isinstance(spec, tuple) and len(spec) in (2, 3) and _is_text_input(spec[0])
    if isinstance(x, dict):
        return False
    if isinstance(x, tuple) and len(x) == 2 and not isinstance(x[0], (str, bytes)):
        return _contains_strings(x[0]) or _contains_strings(x[1])
    if isinstance(x, np.ndarray):
        return x.dtype.kind in ("U", "S", "O")
    if isinstance(x, (tf.Tensor, tf.RaggedTensor)):
        return x.dtype == tf.string
    if isinstance(x, (list, tuple)):
        return _contains_strings(list(x))
    if hasattr(x, "tolist") and hasattr(x, "dtype"):  # pandas Series
        return _contains_strings(x.tolist())
    return False


class Task(DistributedFitMixin, keras.Model):
    """Base class of ktransfer's tasks: a model that takes raw strings.

    See the module docstring for what a subclass defines. Attributes:

    - `encoder`: the task's `kt.encoders.Encoder`;
    - `preprocessor`: raw strings -> the model's inputs, run in the tf.data
      pipeline (never inside the replicated model); None feeds texts as
      they are (models that read strings).

    Example:

    ```python
    clf = kt.tasks.TextClassifier.from_preset("minilm", num_classes=2)
    isinstance(clf, kt.tasks.Task)   # True
    clf.preprocessor is clf.encoder.preprocessor   # True
    ```
    """

    # The `pooling` of the BertEncoder that `from_preset` loads.
    preset_pooling = "cls"

    def __init__(self, *args, **kwargs):
        if args or "inputs" in kwargs or "outputs" in kwargs:
            raise TypeError(
                f"{type(self).__name__}: a kt.tasks.Task is a subclassed model (it "
                "defines `call`). Build a functional graph as an attribute (e.g. "
                "`self.network = keras.Model(inputs, outputs)`) instead of passing "
                "inputs/outputs to Task.__init__."
            )
        super().__init__(**kwargs)

    # --- encoder and preprocessor ------------------------------------------
    @property
    def encoder(self):
        """The task's `kt.encoders.Encoder`."""
        return getattr(self, "_encoder", None)

    @encoder.setter
    def encoder(self, value):
        self._encoder = value

    @property
    def preprocessor(self):
        """Raw strings -> model inputs (run in tf.data); None: texts go in as they are."""
        return getattr(self, "_preprocessor", None)

    @preprocessor.setter
    def preprocessor(self, value):
        if value is not None and not callable(value):
            raise TypeError(
                "`preprocessor` must be callable (raw strings -> model inputs), e.g. "
                f"`encoder.preprocessor`. Received: {type(value).__name__}"
            )
        self._preprocessor = value

    def build(self, input_shape=None):
        # Subclasses build their layers when constructed.
        self.built = True

    def __call__(self, *args, **kwargs):
        inputs = args[0] if args else kwargs.get("inputs")
        if (
            self.preprocessor is not None
            and not isinstance(inputs, keras.KerasTensor)
            and _contains_strings(inputs)
        ):
            raise ValueError(
                f"Calling a {type(self).__name__} directly, e.g. `task(x)`, runs the "
                "model on preprocessed features, but it received strings. Use "
                "`task.predict(texts)` (or `kt.predict(task, texts)`), or preprocess "
                "first: `task(task.preprocessor(texts))`."
            )
        return super().__call__(*args, **kwargs)

    # --- the tf.data pipeline ------------------------------------------------
    def preprocess_samples(self, x, y=None, sample_weight=None):
        """Map function of the tf.data pipeline: texts -> `(features, y, sample_weight)`.

        `x` is a batch of strings or a `(texts_a, texts_b)` pair; `y` and
        `sample_weight` pass through (packed as Keras packs them).
        """
        features = preprocess_texts(self.preprocessor, x)
        return keras.utils.pack_x_y_sample_weight(features, y, sample_weight)

    def encode_labels(self, y, num_examples):
        """In-memory labels -> a numpy array, one row per example (hook)."""
        y = np.asarray(y)
        if y.shape[:1] != (num_examples,):
            raise ValueError(
                f"`y` has {y.shape[0] if y.ndim else 0} labels for {num_examples} texts: "
                "give one label per text."
            )
        return y

    def map_dataset_labels(self, dataset):
        """Check / convert the labels of an unbatched `(x, y[, w])` dataset (hook)."""
        return dataset

    def bucket_boundaries(self):
        """The length buckets of the batches; None pads every batch alike."""
        sequence_length = getattr(self.preprocessor, "sequence_length", None)
        if self.preprocessor is None or not sequence_length:
            return None
        return bucket_boundaries(sequence_length)

    def make_dataset(self, x, y=None, batch_size=DEFAULT_BATCH_SIZE, shuffle=False, seed=None,
                     sample_weight=None, labelled=None):
        """Raw texts -> a batched, prefetched dataset of model inputs.

        Args:
            x: a list / numpy array / pandas Series of str, a pair
                `(texts_a, texts_b)` of them, or a `tf.data.Dataset` of
                texts, text pairs, `(texts, labels)` or `(texts, labels,
                sample_weights)` (batched or not). A dataset that yields
                feature dicts already (prepared) is returned as it is.
            y: labels for in-memory `x` (see the task's `fit`).
            batch_size: examples per batch.
            shuffle: shuffle in-memory data each epoch (texts of similar
                length are then batched together). A dataset keeps its order.
            seed: shuffle seed.
            sample_weight: one weight per in-memory example.
            labelled: whether a dataset's 2-tuples are `(x, y)` (True, as
                in `fit`) or text pairs `(text_a, text_b)` (False, as in
                `predict`); None: `(x, y)` unless both are strings.

        Returns:
            A `tf.data.Dataset` of `features`, `(features, y)` or
            `(features, y, sample_weight)` batches.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
        if isinstance(x, tf.data.Dataset):
            if y is not None or sample_weight is not None:
                raise ValueError(
                    "When `x` is a tf.data.Dataset, its elements carry the labels "
                    "((texts, labels) tuples): do not pass `y` or `sample_weight`."
                )
            return self._dataset_from_tf_data(x, batch_size, labelled)
        columns = text_columns(x)
        num_examples = len(columns[0])
        if num_examples == 0:
            raise ValueError("`x` is empty: give at least one text.")
        element = {"x": columns[0] if len(columns) == 1 else tuple(columns)}
        if y is not None:
            element["y"] = self.encode_labels(y, num_examples)
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype="float32")
            if weights.shape[:1] != (num_examples,):
                raise ValueError(
                    f"`sample_weight` has shape {weights.shape} for {num_examples} texts: "
                    "give one weight per text."
                )
            element["sample_weight"] = weights
        dataset = tf.data.Dataset.from_tensor_slices(element)
        if shuffle:
            dataset = dataset.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
        return self._tokenize_and_batch(dataset, num_examples, batch_size, shuffle, seed)

    def _dataset_from_tf_data(self, dataset, batch_size, labelled):
        spec = dataset.element_spec
        if _is_text_input(spec) and not (labelled and isinstance(spec, tuple)):
            pair = isinstance(spec, tuple)
            if _text_rank(spec) == 1:
                dataset = _unbatch(dataset)
            if pair:
                dataset = dataset.map(lambda a, b: {"x": (a, b)})
            else:
                dataset = dataset.map(lambda text: {"x": text})
        elif isinstance(spec, tuple) and len(spec) in (2, 3) and _is_text_input(spec[0]):
            if _text_rank(spec[0]) == 1:
                dataset = _unbatch(dataset)
            if labelled is False:  # predict: labels are not needed
                dataset = dataset.map(lambda *element: element[0])
                return self._dataset_from_tf_data(dataset, batch_size, False)
            dataset = self.map_dataset_labels(dataset)
            names = ("x", "y", "sample_weight")
            dataset = dataset.map(lambda *element: dict(zip(names, element)))
        else:
            # Prepared features (dicts of token ids, ...) go to Keras as they are.
            return dataset
        num_examples = int(dataset.cardinality())
        return self._tokenize_and_batch(dataset, num_examples if num_examples > 0 else -1,
                                        batch_size, False, None)

    def _tokenize_and_batch(self, dataset, num_examples, batch_size, shuffle, seed):
        def tokenize(element):
            return self.preprocess_samples(
                element["x"], element.get("y"), element.get("sample_weight")
            )

        dataset = dataset.batch(TOKENIZE_BATCH_SIZE)
        dataset = dataset.map(tokenize, num_parallel_calls=AUTOTUNE, deterministic=True)
        dataset = dataset.unbatch()
        dataset = batch_examples(
            dataset,
            num_examples,
            batch_size,
            boundaries=self.bucket_boundaries(),
            shuffle=shuffle,
            seed=seed,
            shuffle_buffer=1,  # in-memory data was shuffled whole, before tokenising
            window_batches=WINDOW_BATCHES,
        )
        return dataset.prefetch(AUTOTUNE)

    # --- training and inference ----------------------------------------------
    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Configure training; `"auto"` picks the task's defaults.

        Args:
            optimizer: `"auto"` (`kt.optimizers.FusedAdamW(5e-5)`), or any
                Keras optimizer.
            loss: `"auto"` (`default_loss()`: the head's loss), or any loss.
            metrics: `"auto"` (`default_metrics()`: accuracy), or a list.
            **kwargs: passed to `keras.Model.compile`.
        """
        if _is_auto(optimizer):
            from ktransfer.optimizers import FusedAdamW

            optimizer = FusedAdamW(DEFAULT_LEARNING_RATE)
        if _is_auto(loss):
            loss = self.default_loss()
        if _is_auto(metrics):
            metrics = self.default_metrics()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # Keras skips a custom `compile` when loading a `.keras` file unless
        # this is overridden: recompile with the saved optimizer, loss, metrics.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def default_loss(self):
        """The loss `compile()` picks: the head's `default_loss()`."""
        head = getattr(self, "head", None)
        if head is None or not hasattr(head, "default_loss"):
            raise NotImplementedError(
                f"{type(self).__name__} has no head with a `default_loss()`: pass "
                "`loss=` to compile()."
            )
        return head.default_loss()

    def default_metrics(self):
        """The metrics `compile()` picks."""
        return ["accuracy"]

    def _prepare_inputs(self, x, y, batch_size, sample_weight, shuffle, seed, labelled):
        if not is_raw_input(x):
            return None
        return self.make_dataset(
            x, y, batch_size=batch_size or DEFAULT_BATCH_SIZE, shuffle=shuffle, seed=seed,
            sample_weight=sample_weight, labelled=labelled,
        )

    def fit(self, x=None, y=None, batch_size=None, epochs=1, sample_weight=None,
            validation_data=None, validation_split=0.0, shuffle=True, seed=None, **kwargs):
        """Train on raw texts (or on prepared batches, passed to Keras as they are).

        Args:
            x: texts (list / numpy array / pandas Series of str), a pair
                `(texts_a, texts_b)`, or a `tf.data.Dataset` of `(texts,
                labels)`; prepared features go to `keras.Model.fit` unchanged.
            y: labels of in-memory `x` (what the task's `encode_labels` reads).
            batch_size: examples per batch (default 32).
            epochs: passes over the data.
            sample_weight: one weight per in-memory text.
            validation_data: `(texts, labels)` or a dataset, like `x`.
            validation_split: the fraction of in-memory data (its end) kept
                for validation.
            shuffle: shuffle in-memory data each epoch (a dataset keeps its
                order, as in Keras).
            seed: the shuffle seed (default: TensorFlow's global seed, which
                `keras.utils.set_random_seed` sets).
            **kwargs: passed to `keras.Model.fit` (`callbacks`, `verbose`, ...).
        """
        if not self.compiled:
            self.compile()
        if not is_raw_input(x):
            return super().fit(
                x, y, batch_size=batch_size, epochs=epochs, sample_weight=sample_weight,
                validation_data=validation_data, validation_split=validation_split,
                shuffle=shuffle, **kwargs,
            )
        if validation_split:
            if isinstance(x, tf.data.Dataset):
                raise ValueError(
                    "`validation_split` needs in-memory data; with a tf.data.Dataset "
                    "pass `validation_data`."
                )
            if validation_data is not None:
                raise ValueError("Pass `validation_data` or `validation_split`, not both.")
            (x, y, sample_weight), validation_data = _split(x, y, sample_weight, validation_split)
        train = self.make_dataset(
            x, y, batch_size=batch_size or DEFAULT_BATCH_SIZE, shuffle=shuffle, seed=seed,
            sample_weight=sample_weight, labelled=True,
        )
        if validation_data is not None:
            validation_batch_size = kwargs.pop("validation_batch_size", None) or batch_size
            validation_data = self._evaluation_data(validation_data, validation_batch_size)
        return super().fit(
            train, epochs=epochs, validation_data=validation_data, shuffle=False, **kwargs
        )

    def _evaluation_data(self, data, batch_size):
        if isinstance(data, tf.data.Dataset):
            prepared = self._prepare_inputs(data, None, batch_size, None, False, None, True)
            return data if prepared is None else prepared
        vx, vy, vw = keras.utils.unpack_x_y_sample_weight(tuple(data))
        prepared = self._prepare_inputs(vx, vy, batch_size, vw, False, None, True)
        return data if prepared is None else prepared

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, **kwargs):
        """Evaluate on raw texts and labels (or prepared batches); see `fit`."""
        if not self.compiled:
            self.compile()
        dataset = self._prepare_inputs(x, y, batch_size, sample_weight, False, None, True)
        if dataset is None:
            return super().evaluate(x, y, batch_size=batch_size, sample_weight=sample_weight, **kwargs)
        return super().evaluate(dataset, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        """Run the task on raw texts (or prepared batches), outputs in input order."""
        dataset = self._prepare_inputs(x, None, batch_size, None, False, None, False)
        if dataset is None:
            return super().predict(x, batch_size=batch_size, **kwargs)
        return super().predict(dataset, **kwargs)

    # --- export ---------------------------------------------------------------
    def serving_signatures(self):
        """`{name: (fn, [tf.TensorSpec, ...])}`: the raw-string graphs `export` writes.

        It must contain `"serving_default"`. Each `fn` takes string tensors
        and returns a dict of tensors.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not define `serving_signatures()`: a Task "
            "subclass returns {'serving_default': (fn, [tf.TensorSpec, ...]), ...}."
        )

    def label_files(self):
        """`{file name: [names]}` written into the export's `assets.extra/`."""
        return {}

    def export_trackables(self):
        """Layers (beyond the task and its preprocessor) the signatures use."""
        return []

    def export(self, path, overwrite=False):
        """Write the task as a TF Serving SavedModel that takes raw strings.

        Args:
            path: the version folder, `saved_models/<name>/<version>`.
            overwrite: replace an existing version folder.

        Returns:
            The absolute path written. A client needs only TensorFlow and
            `tensorflow_text` (`import tensorflow_text` registers the
            tokenizer ops).

        Example:

        ```python
        path = clf.export("saved_models/sst2/1")
        # serve = tf.saved_model.load(path).signatures["serving_default"]
        # serve(text=tf.constant(["a great film"]))["label"]
        ```
        """
        path = check_version_folder(path, overwrite)
        signatures = self.serving_signatures()
        for fn, input_signature in signatures.values():
            # One eager call builds what is not built yet (a task or a
            # preprocessor just loaded from a `.keras` file) and checks the graph.
            fn(*[_sample_input(spec) for spec in input_signature])
        if not self.built:
            # The signatures ran the task's layers above, so every variable
            # exists; ExportArchive only tracks built layers.
            self.built = True
        trackables = [self, self.preprocessor] + list(self.export_trackables())
        return write_saved_model(
            path, trackables, signatures, label_files=self.label_files(), overwrite=overwrite
        )

    # --- construction ----------------------------------------------------------
    @classmethod
    def from_preset(cls, preset, sequence_length=None, trainable=True, pooling="auto",
                    load_weights=True, **task_kwargs):
        """A task over a pretrained BERT (`kt.encoders.BertEncoder.from_preset`).

        Args:
            preset: what `BertEncoder.from_preset` loads: a ktransfer asset
                name (`"minilm"`), a KerasHub preset name or handle, a local
                KerasHub preset folder or Hugging Face BERT folder.
            sequence_length: texts are truncated and padded to this length.
            trainable: True, False or an int k (the top k blocks train).
            pooling: the encoder's pooling; `"auto"` is the task's
                `preset_pooling`.
            load_weights: False builds the architecture with random weights.
            **task_kwargs: passed to the task's constructor (`num_classes`,
                `labels`, ...).
        """
        from ktransfer.encoders.bert_encoder import BertEncoder

        if cls is Task:
            raise TypeError("Call from_preset on a task class, e.g. kt.tasks.TextClassifier.")
        encoder = BertEncoder.from_preset(
            preset,
            sequence_length=sequence_length,
            pooling=cls.preset_pooling if _is_auto(pooling) else pooling,
            trainable=trainable,
            load_weights=load_weights,
        )
        return cls(encoder=encoder, **task_kwargs)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "preprocessor"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _unbatch(dataset):
    """`dataset.unbatch()`, keeping a finite dataset's cardinality (Keras then knows the steps)."""
    if int(dataset.cardinality()) < 0:
        return dataset.unbatch()
    sizes = dataset.map(lambda *element: tf.shape(tf.nest.flatten(element)[0], tf.int64)[0])
    count = int(sizes.reduce(np.int64(0), lambda total, size: total + size))
    return dataset.unbatch().apply(tf.data.experimental.assert_cardinality(count))


def _sample_input(spec):
    shape = [1 if dim is None else dim for dim in spec.shape]
    if spec.dtype == tf.string:
        return tf.fill(shape, "a")
    return tf.zeros(shape, spec.dtype)


def _split(x, y, sample_weight, fraction):
    """`((x, y, w), (x_val, y_val, w_val))`: the last `fraction` of in-memory data held out."""
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"`validation_split` must be in (0, 1). Received: {fraction!r}")
    columns = text_columns(x)
    total = len(columns[0])
    cut = int(np.floor(total * (1.0 - float(fraction))))
    if cut in (0, total):
        raise ValueError(
            f"{total} examples are too few to hold out validation_split={fraction}."
        )

    def part(values, start, end):
        if values is None:
            return None
        return values[start:end] if isinstance(values, np.ndarray) else list(values)[start:end]

    def texts(start, end):
        if len(columns) == 1:
            return columns[0][start:end]
        return (columns[0][start:end], columns[1][start:end])

    y = None if y is None else (y if isinstance(y, np.ndarray) else list(y))
    train = (texts(0, cut), part(y, 0, cut), part(sample_weight, 0, cut))
    validation = (texts(cut, total), part(y, cut, total), part(sample_weight, cut, total))
    return train, validation
