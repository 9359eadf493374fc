"""`TextClassifier`: binary, multi-class and multi-label text (or text-pair) classification.

```python
import ktransfer as kt
clf = kt.tasks.TextClassifier.from_preset("minilm", num_classes=2, labels=["neg", "pos"],
                                          sequence_length=64)
clf.compile()
clf.fit(x=texts, y=labels, batch_size=32, epochs=1)   # y: ints or label strings
clf.predict(texts)          # float32 probabilities [n, num_classes]
clf.predict_labels(texts)   # ["pos", "neg", ...]
clf.export("saved_models/sst2/1")   # serving_default(text) -> probabilities, label
```

`TextClassifier.from_model(model, labels=...)` wraps a Sequential or
functional classifier (`keras.Sequential([encoder, kt.heads.ClassificationHead(n)])`)
into a task; `kt.export.save` and `kt.predict` go through it.
"""

import numbers

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.pipeline import class_ids
from ktransfer.encoders.base import Encoder
from ktransfer.encoders.base import find_encoder
from ktransfer.heads.classification_head import ClassificationHead
from ktransfer.tasks.serving import check_labels
from ktransfer.tasks.serving import check_output_activation
from ktransfer.tasks.serving import check_text_batch
from ktransfer.tasks.serving import classifier_outputs
from ktransfer.tasks.serving import find_classification_head
from ktransfer.tasks.serving import predict_in_length_groups
from ktransfer.tasks.serving import preprocess_texts
from ktransfer.tasks.serving import takes_raw_strings
from ktransfer.tasks.serving import text_signature
from ktransfer.tasks.serving import to_probabilities
from ktransfer.tasks.task import Task
from ktransfer.tasks.task import text_columns

_LABEL_SCAN_BATCH = 4096


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


@keras.saving.register_keras_serializable(package="ktransfer")
class TextClassifier(Task):
    """Classify texts or text pairs: an encoder, a `ClassificationHead`, labels.

    Single-label (binary, multi-class: softmax over the classes) or
    multi-label (`multi_label=True`: an independent sigmoid per label).
    Sentence pairs: pass `x=(texts_a, texts_b)`; the pair becomes one input
    `[CLS] a [SEP] b [SEP]` (a cross-encoder) and the export takes `text_a`
    and `text_b`.

    Args:
        encoder: a pooled `kt.encoders.Encoder` (`BertEncoder(pooling="cls"
            | "mean" | "pooled")`); see `from_preset`.
        num_classes: the number of classes (default `len(labels)`).
        labels: the class names in class-index order (default "0", "1",
            ...): what `predict_labels` and the export answer, and what
            string labels in `fit` are looked up in.
        multi_label: one sigmoid per label; `y` is multi-hot (`[n,
            num_classes]` of 0/1) or a list of label lists per text.
        dropout: dropout of the head.
        hidden_dims: sizes of hidden layers in the head.
        preprocessor: `"auto"` (the encoder's), another callable, or None
            (texts go into the model as they are).
        threshold: multi-label: a label is predicted when its probability
            is above this.
        pairs: True for a sentence-pair classifier; None decides at the
            first `fit` (from `x`).
        model: instead of `encoder`, a whole Keras classifier to wrap (see
            `from_model`).
        output_activation: with `model`: `"auto"` (from its head),
            `"softmax"`, `"sigmoid"`, or None (it outputs probabilities).

    Example:

    ```python
    import ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=64, pooling="mean")
    clf = kt.tasks.TextClassifier(encoder=encoder, num_classes=2, labels=["neg", "pos"])
    clf.compile()
    clf.fit(x=["a great film", "a dull film"], y=["pos", "neg"], epochs=1)
    clf.predict_labels(["what a great film"])   # ['pos'] once trained enough
    ```
    """

    preset_pooling = "mean"

    def __init__(
        self,
        encoder=None,
        num_classes=None,
        labels=None,
        multi_label=False,
        dropout=0.1,
        hidden_dims=(),
        preprocessor="auto",
        threshold=0.5,
        pairs=None,
        model=None,
        output_activation="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pairs not in (None, True, False):
            raise ValueError(f"`pairs` must be None, True or False. Received: {pairs!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"`threshold` must be a number in [0, 1]. Received: {threshold!r}")
        self.threshold = float(threshold)
        self.pairs = pairs
        self._preprocessor_choice = "auto" if _is_auto(preprocessor) else "given"
        if model is not None:
            self._init_wrapped(model, encoder, num_classes, labels, multi_label, preprocessor,
                               output_activation)
        else:
            self._init_own(encoder, num_classes, labels, multi_label, dropout, hidden_dims,
                           preprocessor, output_activation)

    # --- construction ---------------------------------------------------------
    def _init_own(self, encoder, num_classes, labels, multi_label, dropout, hidden_dims,
                  preprocessor, output_activation):
        if not isinstance(encoder, Encoder):
            raise TypeError(
                "`encoder` must be a kt.encoders.Encoder (e.g. kt.encoders.BertEncoder."
                "from_preset('minilm', pooling='mean')); to wrap a whole Keras model use "
                f"TextClassifier.from_model(model). Received: {type(encoder).__name__}"
            )
        if not _is_auto(output_activation):
            raise ValueError(
                "`output_activation` is read from the head that TextClassifier builds; "
                "pass it only with `model=` (TextClassifier.from_model)."
            )
        if getattr(encoder, "pooling", "pooled") is None:
            raise ValueError(
                "TextClassifier needs one vector per text: the encoder has pooling=None "
                "(one vector per token). Use pooling='cls', 'mean' or 'pooled' (for "
                "per-token tags, use a token classifier)."
            )
        if num_classes is None:
            if labels is None:
                raise ValueError(
                    "Give `num_classes` or `labels` (the class names), e.g. "
                    "num_classes=2, labels=['negative', 'positive']."
                )
            if isinstance(labels, (str, bytes)):
                check_labels(labels)  # the clear error for a string
            num_classes = len(list(labels))
        self.encoder = encoder
        self.head = ClassificationHead(
            num_classes, dropout=dropout, multi_label=multi_label, hidden_dims=hidden_dims,
            name="classification_head",
        )
        self.head.build((None, encoder.output_dim))
        self._network = None
        self.dropout = float(dropout)
        self.hidden_dims = tuple(int(d) for d in hidden_dims)
        self.num_classes = num_classes
        self.multi_label = bool(multi_label)
        self.output_activation = self.head.output_activation
        self.preprocessor = encoder.preprocessor if _is_auto(preprocessor) else preprocessor
        self.labels = self._check_labels(labels)

    def _init_wrapped(self, model, encoder, num_classes, labels, multi_label, preprocessor,
                      output_activation):
        if encoder is not None:
            raise ValueError("Pass `encoder` (a new head is built) or `model` (wrapped), not both.")
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"`model` must be a keras.Model (Sequential or functional). Received: "
                f"{type(model).__name__}"
            )
        layers = getattr(model, "layers", None) or []
        if isinstance(model, Encoder) or (layers and isinstance(layers[-1], Encoder)):
            raise ValueError(
                "This model ends in its encoder: it outputs embeddings, not class scores, "
                "so there is nothing to serve as probabilities. Add a classification "
                "head, e.g. keras.Sequential([encoder, kt.heads.ClassificationHead(num_classes)])."
            )
        head = find_classification_head(model)
        if _is_auto(output_activation):
            if head is None:
                raise ValueError(
                    "The model has no classification head (no layer with `num_classes` and "
                    "`output_activation`, such as kt.heads.ClassificationHead), so its outputs "
                    "cannot be read as class scores. Add a head, or pass "
                    "output_activation='softmax' / 'sigmoid' / None (outputs already "
                    "probabilities) if its outputs are class scores."
                )
            output_activation = head.output_activation
        check_output_activation(output_activation)
        self._network = model
        if _is_auto(preprocessor):
            found = find_encoder(model)
            preprocessor = None
            if found is not None and not takes_raw_strings(model):
                preprocessor = found.preprocessor
        self.preprocessor = preprocessor
        self.output_activation = output_activation
        self.multi_label = bool(
            multi_label or output_activation == "sigmoid" or getattr(head, "multi_label", False)
        )
        if head is not None and num_classes is not None and num_classes != head.num_classes:
            raise ValueError(
                f"`num_classes`={num_classes} but the model's head has {head.num_classes} outputs."
            )
        self._build_network()
        if head is not None:
            self.num_classes = head.num_classes
        else:
            self.num_classes = num_classes if num_classes is not None else self._num_outputs()
        self.dropout = None
        self.hidden_dims = ()
        self.labels = self._check_labels(labels)

    def _check_labels(self, labels):
        if labels is None:
            return [str(i) for i in range(self.num_classes)]
        return check_labels(labels, self.num_classes, multi_label=self.multi_label)

    def _sample_features(self):
        texts = tf.constant(["a"])
        return preprocess_texts(self.preprocessor, (texts, texts) if self.pairs else texts)

    def _build_network(self):
        """Run a wrapped model once if any of its layers is not built (a Sequential never called)."""
        head = find_classification_head(self._network)
        if self._network.built and (head is None or head.built):
            return
        self._network(self._sample_features(), training=False)

    def _num_outputs(self):
        outputs = getattr(self._network, "outputs", None)
        try:
            shape = outputs[0].shape if outputs else None
        except (AttributeError, TypeError, IndexError):
            shape = None
        if shape is not None and shape[-1] is not None:
            return int(shape[-1])
        return int(self._network(self._sample_features(), training=False).shape[-1])

    @classmethod
    def from_model(cls, model, labels=None, preprocessor="auto", output_activation="auto",
                   threshold=0.5, pairs=None):
        """Wrap a trained Keras classifier (Sequential or functional) into a task.

        The encoder is found with `isinstance(layer, kt.encoders.Encoder)`
        (its preprocessor goes in front, unless the model reads raw strings),
        and the output activation from the model's classification head
        (`kt.heads.ClassificationHead`: softmax for single-label logits,
        sigmoid for multi-label).

        Args:
            model: a `keras.Model` that maps the encoder's inputs to class
                scores. A model without a classification head is an error
                unless `output_activation` says how to read its outputs;
                one that ends in its encoder (embeddings) is always one.
            labels: the class names (default "0", "1", ...).
            preprocessor: `"auto"` (the encoder's), a callable, or None.
            output_activation: `"auto"`, `"softmax"`, `"sigmoid"` or None.
            threshold: multi-label threshold.
            pairs: True when the model classifies text pairs.

        Example:

        ```python
        model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
        clf = kt.tasks.TextClassifier.from_model(model, labels=["neg", "pos"])
        clf.predict_labels(["a great film"])
        ```
        """
        if isinstance(model, TextClassifier) and labels is None and _is_auto(preprocessor) \
                and _is_auto(output_activation) and pairs in (None, model.pairs):
            return model
        return cls(model=model, labels=labels, preprocessor=preprocessor,
                   output_activation=output_activation, threshold=threshold, pairs=pairs)

    # --- encoder / head of a wrapped model -------------------------------------
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
        """The classification head (of the wrapped model, with `from_model`)."""
        network = getattr(self, "_network", None)
        if network is not None:
            return find_classification_head(network)
        return getattr(self, "_head", None)

    @head.setter
    def head(self, value):
        self._head = value

    @property
    def model(self):
        """The wrapped Keras model (`from_model`), or None."""
        return getattr(self, "_network", None)

    # --- forward -----------------------------------------------------------------
    def call(self, inputs, training=None):
        if self._network is not None:
            return self._network(inputs, training=training)
        return self.head(self.encoder(inputs, training=training), training=training)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return to_probabilities(self(x, training=False), self.output_activation)

    def predict(self, x, batch_size=None, **kwargs):
        """float32 probabilities `[n, num_classes]` (multi-label: independent sigmoids).

        `x`: texts, a pair `(texts_a, texts_b)`, or a dataset (see `fit`).
        """
        return np.asarray(super().predict(x, batch_size=batch_size, **kwargs), dtype=np.float32)

    def predict_labels(self, x, batch_size=None, threshold=None, **kwargs):
        """The predicted label of each text, a list of str.

        Single-label: the most probable class's name. Multi-label: the names
        of every label whose probability is above `threshold` (default the
        task's), joined with "," (`""` when none is), as the export answers.
        """
        return self.labels_of(self.predict(x, batch_size=batch_size, **kwargs), threshold)

    def labels_of(self, probabilities, threshold=None):
        """Label names of rows of probabilities (see `predict_labels`)."""
        probabilities = np.asarray(probabilities)
        if self.multi_label:
            threshold = self.threshold if threshold is None else float(threshold)
            return [
                ",".join(name for name, p in zip(self.labels, row) if p > threshold)
                for row in probabilities
            ]
        return [self.labels[i] for i in np.argmax(probabilities, axis=-1)]

    # --- training defaults ---------------------------------------------------------
    def default_loss(self):
        head = self.head
        if head is not None and hasattr(head, "default_loss"):
            return head.default_loss()
        from_logits = self.output_activation is not None
        if self.multi_label:
            return keras.losses.BinaryCrossentropy(from_logits=from_logits)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)

    def default_metrics(self):
        if self.multi_label:
            threshold = self.threshold
            if self.output_activation == "sigmoid":  # logits: p > t  <=>  logit > log(t / (1 - t))
                threshold = float(np.log(threshold / (1.0 - threshold))) if 0 < threshold < 1 else (
                    -np.inf if threshold == 0 else np.inf)
            return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=threshold)]
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    # --- labels ------------------------------------------------------------------------
    def make_dataset(self, x, y=None, batch_size=32, shuffle=False, seed=None,
                     sample_weight=None, labelled=None):
        pair = self._is_pair_input(x, labelled)
        if pair is not None and labelled:
            if self.pairs is None:
                self.pairs = pair
            elif self.pairs != pair:
                raise ValueError(
                    "This classifier was set up for "
                    + ("text pairs: pass x=(texts_a, texts_b)." if self.pairs
                       else "single texts, but received text pairs.")
                )
        return super().make_dataset(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                    sample_weight=sample_weight, labelled=labelled)

    @staticmethod
    def _is_pair_input(x, labelled):
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            if isinstance(spec, dict):
                return None
            if labelled and isinstance(spec, tuple) and len(spec) in (2, 3):
                spec = spec[0]
            if isinstance(spec, tuple) and len(spec) == 2:
                return True
            if isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string:
                return False
            return None
        try:
            return len(text_columns(x)) == 2
        except (TypeError, ValueError):
            return None

    def encode_labels(self, y, num_examples):
        """Labels of in-memory texts -> int32 class ids (multi-label: float32 multi-hot).

        Accepts class ids, label names (`labels`), or integer strings; for
        multi-label, a multi-hot `[n, num_classes]` array or one list of names
        / ids per text. A bad label is a `ValueError` naming it and its index.
        """
        if isinstance(y, (str, bytes)):
            raise ValueError(
                f"`y` must hold one label per text; received the string {y[:40]!r}."
            )
        if isinstance(y, (tf.Tensor, tf.RaggedTensor)):
            y = y.numpy()
        if self.multi_label:
            return self._multi_hot(y, num_examples, "y")
        values = np.asarray(y, dtype=object) if not isinstance(y, np.ndarray) else y
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1 or len(values) != num_examples:
            raise ValueError(
                f"`y` must hold one label per text: {num_examples} texts but `y` has shape "
                f"{values.shape}."
            )
        return self._label_ids(values, "y")

    def _label_ids(self, values, where, offset=0):
        if values.dtype.kind in "iu":
            bad = np.flatnonzero((values < 0) | (values >= self.num_classes))
            if bad.size:
                i = int(bad[0])
                raise ValueError(self._out_of_range(int(values[i]), f"{where}[{offset + i}]"))
            return values.astype(np.int32)
        index = {name: i for i, name in enumerate(self.labels)}
        ids = np.empty(len(values), dtype=np.int32)
        for i, value in enumerate(values.tolist()):
            at = f"{where}[{offset + i}]"
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            if isinstance(value, (bool, np.bool_)):
                raise ValueError(
                    f"Boolean label {value!r} at {at}: use class ids (0 .. {self.num_classes - 1}) "
                    f"or label names {self.labels}."
                )
            if isinstance(value, str):
                if value in index:
                    ids[i] = index[value]
                    continue
                stripped = value.strip()
                if stripped.lstrip("+-").isdigit():
                    value = int(stripped)
                else:
                    raise ValueError(
                        f"Unknown label {value!r} at {at}: the classifier's labels are "
                        f"{self.labels}. Fix the label, or build the classifier with the "
                        "labels your data uses."
                    )
            if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
                if not float(value).is_integer():
                    raise ValueError(
                        f"Label {value!r} at {at} is not a class id: use ints in "
                        f"[0, {self.num_classes}) or label names {self.labels}."
                    )
                value = int(value)
            if not isinstance(value, numbers.Integral):
                raise ValueError(
                    f"Label {value!r} at {at} is a {type(value).__name__}: use class ids or "
                    f"label names {self.labels}."
                )
            if not 0 <= value < self.num_classes:
                raise ValueError(self._out_of_range(value, at))
            ids[i] = value
        return ids

    def _out_of_range(self, value, at):
        return (
            f"Label {value!r} at {at} is out of range: this classifier has "
            f"{self.num_classes} classes, so class ids must be in [0, {self.num_classes - 1}] "
            f"(labels {self.labels}). Fix the data or build the classifier with "
            "num_classes / labels that cover it."
        )

    def _multi_hot(self, y, num_examples, where, offset=0):
        if isinstance(y, np.ndarray) and y.dtype.kind in "iufb" and y.ndim == 2:
            if y.shape != (num_examples, self.num_classes):
                raise ValueError(
                    f"Multi-hot `{where}` must have shape [{num_examples}, {self.num_classes}] "
                    f"(texts, labels); received {y.shape}."
                )
            bad = np.argwhere((y != 0) & (y != 1))
            if bad.size:
                i, j = (int(v) for v in bad[0])
                raise ValueError(
                    f"Multi-hot {where}[{offset + i}, {j}] is {y[i, j]!r}: values must be 0 or 1."
                )
            return y.astype(np.float32)
        rows = list(y)
        if len(rows) != num_examples:
            raise ValueError(f"`{where}` has {len(rows)} label lists for {num_examples} texts.")
        out = np.zeros((num_examples, self.num_classes), dtype=np.float32)
        for i, row in enumerate(rows):
            if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
                raise ValueError(
                    f"Multi-label {where}[{offset + i}] is {row!r}: give a list of label "
                    "names or ids per text (or a multi-hot array)."
                )
            row = list(row)
            if row:
                ids = self._label_ids(np.asarray(row, dtype=object), f"{where}[{offset + i}]")
                out[i, ids] = 1.0
        return out

    def map_dataset_labels(self, dataset):
        """String labels -> ids; labels checked (scanned first when the dataset is finite)."""
        spec = dataset.element_spec
        label_spec = spec[1]
        if not isinstance(label_spec, tf.TensorSpec):
            raise ValueError(f"Labels must be tensors; the dataset's label spec is {label_spec}.")
        if self.multi_label:
            if label_spec.shape.rank != 1 or not (label_spec.dtype.is_floating or label_spec.dtype.is_integer):
                raise ValueError(
                    "A multi-label dataset yields multi-hot vectors [num_classes] of 0/1 "
                    f"as labels (kt.data.from_lists(..., multi_label=True)); its label spec is {label_spec}."
                )
            if label_spec.shape[0] is not None and label_spec.shape[0] != self.num_classes:
                raise ValueError(
                    f"The dataset's multi-hot labels have {label_spec.shape[0]} entries but the "
                    f"classifier has {self.num_classes} labels {self.labels}."
                )
            return dataset.map(lambda x, y, *w: (x, tf.cast(y, tf.float32)) + tuple(w))
        if label_spec.shape.rank != 0:
            raise ValueError(
                f"A single-label dataset yields one label per text; its label spec is {label_spec}."
            )
        cardinality = int(dataset.cardinality())
        if cardinality >= 0:
            self._scan_labels(dataset.map(lambda *element: element[1]))
        message = (
            f"label out of range: this classifier has {self.num_classes} classes {self.labels}; "
            "string labels must be among them and class ids in [0, num_classes)"
        )
        return class_ids(dataset, self.labels, message)

    def _scan_labels(self, labels):
        offset = 0
        for batch in labels.batch(_LABEL_SCAN_BATCH).as_numpy_iterator():
            values = batch.astype(object) if batch.dtype.kind == "S" else batch
            self._label_ids(values, "the dataset's labels", offset)
            offset += len(batch)

    # --- export ----------------------------------------------------------------------
    def serving_signatures(self):
        """`serving_default`: `text` (or `text_a`, `text_b`) -> `probabilities`, `label`.

        Tokenised inside the graph; batches of 16 texts or more run in
        length-sorted groups (`predict_in_length_groups`), each trimmed to
        the length buckets of `SERVING_BUCKET_STEP`.
        """
        preprocessor = self.preprocessor
        sequence_length = getattr(preprocessor, "sequence_length", None)
        labels, multi_label, threshold = list(self.labels), self.multi_label, self.threshold
        activation = self.output_activation

        def scores(features):
            return self(features, training=False)

        def answer(texts):
            features = preprocess_texts(preprocessor, texts)
            if isinstance(features, dict) and sequence_length and "padding_mask" in features:
                raw = predict_in_length_groups(scores, features, sequence_length)
            else:
                raw = scores(features)
            return classifier_outputs(
                to_probabilities(raw, activation), labels, multi_label=multi_label,
                threshold=threshold,
            )

        if self.pairs:
            def serve_pair(text_a, text_b):
                return answer((check_text_batch(text_a, "text_a"), check_text_batch(text_b, "text_b")))

            return {"serving_default": (serve_pair, text_signature(("text_a", "text_b")))}

        def serve(text):
            return answer(check_text_batch(text, "text"))

        return {"serving_default": (serve, text_signature(("text",)))}

    def label_files(self):
        return {"labels.txt": list(self.labels)}

    def export_trackables(self):
        return [self._network] if self._network is not None else []

    # --- serialisation -------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        if self._preprocessor_choice == "auto":
            preprocessor = "auto"
        elif self.preprocessor is None:
            preprocessor = None
        else:
            preprocessor = keras.saving.serialize_keras_object(self.preprocessor)
        config.update(
            {
                "labels": list(self.labels),
                "threshold": self.threshold,
                "pairs": self.pairs,
                "preprocessor": preprocessor,
            }
        )
        if self._network is not None:
            config.update(
                {
                    "model": keras.saving.serialize_keras_object(self._network),
                    "output_activation": self.output_activation,
                    "multi_label": self.multi_label,
                    "num_classes": self.num_classes,
                }
            )
        else:
            config.update(
                {
                    "encoder": keras.saving.serialize_keras_object(self.encoder),
                    "num_classes": self.num_classes,
                    "multi_label": self.multi_label,
                    "dropout": self.dropout,
                    "hidden_dims": list(self.hidden_dims),
                }
            )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("model"), dict):
            config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return super().from_config(config)


__all__ = ["TextClassifier"]
