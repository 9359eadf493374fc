"""`MultiTask`: one shared encoder, one classification head per task, raw strings in.

A `kt.multitask.MultiTaskModel` (the training machinery: per-task losses,
metrics and loss weights over the batches of `kt.data.mix`) that is also a
`kt.tasks.Task`: it owns the encoder's preprocessor and the class names of
every task, takes raw texts in `fit` / `evaluate` / `predict`, and exports
one SavedModel with one signature per task.

```python
import ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=64, pooling="mean")
model = kt.tasks.MultiTask(
    encoder,
    heads={"sentiment": kt.heads.ClassificationHead(2), "topic": kt.heads.ClassificationHead(3)},
    labels={"sentiment": ["neg", "pos"], "topic": ["books", "dvd", "kitchen"]},
)
model.compile()    # FusedAdamW(5e-5), each head's loss, accuracy per task
model.fit({"sentiment": (["a great read", "a dull film"], ["pos", "neg"]),
           "topic": (["a novel", "a blu-ray", "a knife"], ["books", "dvd", "kitchen"])},
          epochs=2, seed=0)
model.predict_labels(["a sharp knife"])   # {"sentiment": [...], "topic": [...]}
model.export("saved_models/reviews/1")    # signatures serving_default (= sentiment), sentiment, topic
```
"""

import numbers

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.mixing import mix
from ktransfer.encoders.base import Encoder
from ktransfer.methods.multitask import MultiTaskModel
from ktransfer.tasks.serving import check_labels
from ktransfer.tasks.serving import classifier_outputs
from ktransfer.tasks.serving import find_classification_head
from ktransfer.tasks.serving import predict_in_length_groups
from ktransfer.tasks.serving import preprocess_texts
from ktransfer.tasks.serving import text_signature
from ktransfer.tasks.serving import to_probabilities
from ktransfer.tasks.task import Task
from ktransfer.tasks.text_classifier import TextClassifier

DEFAULT_BATCH_SIZE = 32


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


@keras.saving.register_keras_serializable(package="ktransfer")
class MultiTask(Task, MultiTaskModel):
    """A shared encoder with one classification head per task, as one task object.

    Args:
        encoder: the shared, pooled `kt.encoders.Encoder` (e.g.
            `BertEncoder.from_preset("minilm", pooling="mean")`).
        heads: `{task_name: head}`, classification heads such as
            `kt.heads.ClassificationHead(n)` (multi-label heads too). The
            first task is the export's `serving_default`.
        labels: `{task: class names}`; tasks left out get "0", "1", ...
        preprocessor: `"auto"` (the encoder's) or another callable.
        threshold: multi-label heads: a label is predicted above this.

    Data: `fit(x={task: (texts, labels), ...})` (labels as ids or names of
    that task; or `{task: tf.data.Dataset of (texts, labels)}`) tokenises
    each task in its own length-bucketed pipeline and interleaves the
    batches with `kt.data.mix(strategy=..., temperature=..., seed=...)`; a
    dataset that `kt.data.mix` made already goes to Keras as it is.
    `compile()` defaults: `FusedAdamW(5e-5)`, each head's `default_loss()`,
    `{task: ["accuracy"]}`; `loss`, `metrics` and `loss_weights` take per-task
    dicts as in `MultiTaskModel.compile`.

    Outputs: `predict(texts)` `{task: float32 probabilities [n, classes]}`;
    `predict_labels(texts)` `{task: [names]}`; `export(path)` one
    signature per task (`text` -> `probabilities`, `label`), the encoder
    stored once, as `kt.export.save_multitask` writes.

    Example:

    ```python
    import ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=64, pooling="mean")
    model = kt.tasks.MultiTask(encoder, heads={"a": kt.heads.ClassificationHead(2),
                                               "b": kt.heads.ClassificationHead(2)})
    model.fit({"a": (["good", "bad"], [1, 0]), "b": (["red", "blue"], [0, 1])}, epochs=1)
    model.predict(["good"])["a"].shape   # (1, 2)
    ```
    """

    preset_pooling = "mean"

    def __init__(self, encoder=None, heads=None, labels=None, preprocessor="auto", threshold=0.5,
                 **kwargs):
        if not isinstance(encoder, Encoder):
            raise TypeError(
                "`encoder` must be a kt.encoders.Encoder, e.g. kt.encoders.BertEncoder."
                "from_preset('minilm', pooling='mean'); to wrap a kt.multitask.MultiTaskModel "
                f"use MultiTask.from_model(model). Received: {type(encoder).__name__}"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) \
                or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"`threshold` must be a number in [0, 1]. Received: {threshold!r}")
        super().__init__(encoder=encoder, heads=heads, **kwargs)
        for task, head in self.heads.items():
            if find_classification_head(head) is not head:
                raise TypeError(
                    f"heads[{task!r}] is a {type(head).__name__}: MultiTask serves every task as "
                    "a classifier, so each head must be a classification head (with "
                    "`num_classes` and `output_activation`, e.g. kt.heads.ClassificationHead)."
                )
            if not head.built:
                head.build((None, encoder.output_dim))
        self.threshold = float(threshold)
        self._preprocessor_choice = "auto" if _is_auto(preprocessor) else "given"
        self.preprocessor = encoder.preprocessor if _is_auto(preprocessor) else preprocessor
        self.labels = self._check_all_labels(labels)
        self.built = True  # the encoder and every head are built (the export serves the heads directly)

    def _check_all_labels(self, labels):
        if labels is None:
            labels = {}
        if not isinstance(labels, dict):
            raise TypeError(
                "`labels` must be a dict {task: [class names]}, e.g. "
                f"{{{self.tasks[0]!r}: ['negative', 'positive']}}. Received: {type(labels).__name__}"
            )
        unknown = sorted(set(labels) - set(self.tasks))
        if unknown:
            raise ValueError(f"`labels` names unknown tasks {unknown}; the tasks are {self.tasks}.")
        checked = {}
        for task in self.tasks:
            head = self.heads[task]
            names = labels.get(task)
            if names is None:
                checked[task] = [str(i) for i in range(head.num_classes)]
            else:
                checked[task] = check_labels(
                    names, head.num_classes, what=f"`labels` for task {task!r}",
                    multi_label=bool(getattr(head, "multi_label", False)),
                )
        return checked

    @classmethod
    def from_model(cls, model, labels=None, preprocessor="auto", threshold=0.5):
        """Wrap a `kt.multitask.MultiTaskModel` (its encoder and heads are shared, not copied).

        Example:

        ```python
        import ktransfer as kt
        encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=32, pooling="mean")
        model = kt.multitask.MultiTaskModel(encoder, heads={"sentiment": kt.heads.ClassificationHead(2)})
        task = kt.tasks.MultiTask.from_model(model, labels={"sentiment": ["neg", "pos"]})
        task.export("saved_models/reviews/1")
        ```
        """
        if isinstance(model, MultiTask) and labels is None and _is_auto(preprocessor):
            return model
        if not isinstance(model, MultiTaskModel):
            raise TypeError(
                "MultiTask.from_model wraps a kt.multitask.MultiTaskModel; a single-task model "
                f"is a kt.tasks.TextClassifier.from_model(model). Received: {type(model).__name__}"
            )
        return cls(encoder=model.encoder, heads=dict(model.heads), labels=labels,
                   preprocessor=preprocessor, threshold=threshold)

    def task_classifier(self, task):
        """`kt.tasks.TextClassifier` of one task (this model's encoder and head, shared)."""
        self._check_task(task)
        return TextClassifier.from_model(
            self.task_model(task), labels=self.labels[task], preprocessor=self.preprocessor,
            threshold=self.threshold,
        )

    # --- training ---------------------------------------------------------------------
    def compile(self, optimizer="auto", loss="auto", metrics="auto", loss_weights=None, **kwargs):
        """Configure training; `"auto"` picks the defaults (see the class docstring)."""
        if _is_auto(loss):
            loss = None  # each head's default_loss()
        if _is_auto(metrics):
            metrics = {task: ["accuracy"] for task in self.tasks}
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        loss_weights=loss_weights, **kwargs)

    def make_mixed_dataset(self, data, batch_size=None, shuffle=False, seed=None,
                           strategy="proportional", temperature=2.0):
        """`{task: (texts, labels) or dataset}` -> one `kt.data.mix` dataset of every task.

        Each task is tokenised and length-bucketed on its own (see
        `TextClassifier.make_dataset`; its labels are that task's ids or
        names), then the batches are interleaved by `kt.data.mix`.
        """
        if not isinstance(data, dict) or not data:
            raise TypeError(
                "Multi-task data is a dict {task: (texts, labels)} (or {task: tf.data.Dataset "
                f"of (texts, labels)}}) over the tasks {self.tasks}."
            )
        unknown = sorted(set(data) - set(self.tasks))
        if unknown:
            raise ValueError(f"The data names unknown tasks {unknown}; the tasks are {self.tasks}.")
        datasets = {}
        for task in self.tasks:
            if task not in data:
                continue
            part = data[task]
            if isinstance(part, tf.data.Dataset):
                texts, labels = part, None
            elif isinstance(part, (tuple, list)) and len(part) == 2:
                texts, labels = part
            else:
                raise ValueError(
                    f"data[{task!r}] must be (texts, labels) or a tf.data.Dataset of "
                    f"(texts, labels). Received: {type(part).__name__}"
                )
            datasets[task] = self.task_classifier(task).make_dataset(
                texts, labels, batch_size=batch_size or DEFAULT_BATCH_SIZE, shuffle=shuffle,
                seed=seed, labelled=True,
            )
        return mix(datasets, strategy=strategy, temperature=temperature, seed=seed)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, validation_data=None, shuffle=True,
            seed=None, strategy="proportional", temperature=2.0, **kwargs):
        """Train on `{task: (texts, labels)}` (or a `kt.data.mix` dataset).

        Args:
            x: `{task: (texts, labels)}` / `{task: dataset}`, or a mixed
                dataset; or texts, with `y={task: labels}` (the same texts
                labelled for each task).
            batch_size: examples per batch of each task (default 32).
            epochs: passes over the mixed data.
            validation_data: like `x`.
            shuffle, seed: shuffle each task's texts (and the order of the
                tasks' batches) every epoch.
            strategy, temperature: how the tasks' batches are interleaved
                (`kt.data.mix`).
            **kwargs: passed to `keras.Model.fit`.
        """
        if isinstance(y, dict) and not isinstance(x, (dict, tf.data.Dataset)):
            x, y = {task: (x, labels) for task, labels in y.items()}, None  # the same texts for each task
        if isinstance(x, dict) and not _is_features(x):
            x = self.make_mixed_dataset(x, batch_size, shuffle, seed, strategy, temperature)
            batch_size, shuffle = None, False
        if isinstance(validation_data, dict) and not _is_features(validation_data):
            validation_data = self.make_mixed_dataset(validation_data, kwargs.pop(
                "validation_batch_size", None) or batch_size, seed=seed)
        return super().fit(x, y, batch_size=batch_size, epochs=epochs,
                           validation_data=validation_data, shuffle=shuffle, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """Evaluate on `{task: (texts, labels)}` (or a `kt.data.mix` dataset)."""
        if isinstance(y, dict) and not isinstance(x, (dict, tf.data.Dataset)):
            x, y = {task: (x, labels) for task, labels in y.items()}, None
        if isinstance(x, dict) and not _is_features(x):
            x = self.make_mixed_dataset(x, batch_size, seed=0)
            batch_size = None
        return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    # --- inference --------------------------------------------------------------------
    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs = self(x, training=False)
        return {
            task: to_probabilities(outputs[task], self.heads[task].output_activation)
            for task in self.tasks
        }

    def predict(self, x, batch_size=None, **kwargs):
        """`{task: float32 probabilities [n, classes]}` for raw texts `x`."""
        outputs = super().predict(x, batch_size=batch_size, **kwargs)
        return {task: np.asarray(outputs[task], dtype=np.float32) for task in self.tasks}

    def predict_labels(self, x, batch_size=None, **kwargs):
        """`{task: [label per text]}` (multi-label heads: names above `threshold`, joined with ",")."""
        probabilities = self.predict(x, batch_size=batch_size, **kwargs)
        answers = {}
        for task in self.tasks:
            names = self.labels[task]
            if getattr(self.heads[task], "multi_label", False):
                answers[task] = [
                    ",".join(n for n, p in zip(names, row) if p > self.threshold)
                    for row in probabilities[task]
                ]
            else:
                answers[task] = [names[i] for i in np.argmax(probabilities[task], axis=-1)]
        return answers

    # --- export -----------------------------------------------------------------------
    def serving_signatures(self):
        """One raw-string signature per task (`text` -> `probabilities`, `label`);
        `serving_default` is the first task's."""
        preprocessor = self.preprocessor
        sequence_length = getattr(preprocessor, "sequence_length", None)
        signatures = {}
        for task in self.tasks:
            signatures[task] = (
                self._serving_function(task, preprocessor, sequence_length),
                text_signature(("text",)),
            )
        return {"serving_default": signatures[self.tasks[0]], **signatures}

    def _serving_function(self, task, preprocessor, sequence_length):
        head = self.heads[task]
        names = list(self.labels[task])
        multi_label = bool(getattr(head, "multi_label", False))
        threshold = self.threshold

        def scores(features):
            return head(self.encoder(features, training=False), training=False)

        def serve(text):
            features = preprocess_texts(preprocessor, text)
            if isinstance(features, dict) and sequence_length and "padding_mask" in features:
                raw = predict_in_length_groups(scores, features, sequence_length)
            else:
                raw = scores(features)
            return classifier_outputs(
                to_probabilities(raw, head.output_activation), names,
                multi_label=multi_label, threshold=threshold,
            )

        return serve

    def label_files(self):
        files = {f"labels_{task}.txt": list(self.labels[task]) for task in self.tasks}
        files["labels.txt"] = list(self.labels[self.tasks[0]])
        return files

    # --- serialisation ----------------------------------------------------------------
    def get_config(self):
        config = Task.get_config(self)
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "heads": {
                    task: keras.saving.serialize_keras_object(self.heads[task])
                    for task in self.tasks
                },
                "labels": {task: list(self.labels[task]) for task in self.tasks},
                "threshold": self.threshold,
                "preprocessor": "auto" if self._preprocessor_choice == "auto"
                else keras.saving.serialize_keras_object(self.preprocessor),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["heads"] = {
            task: keras.saving.deserialize_keras_object(head)
            for task, head in config["heads"].items()
        }
        if isinstance(config.get("preprocessor"), dict):
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)


def _is_features(x):
    """A dict of feature tensors (prepared inputs), not `{task: data}`."""
    return any(isinstance(v, (np.ndarray, tf.Tensor)) for v in x.values())


__all__ = ["MultiTask"]
