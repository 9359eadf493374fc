"""Multi-task learning: one shared encoder, one head per task.

`MultiTaskModel` runs the encoder once per batch and every head on its
output (`call` returns `{task: logits}`). It trains on the batches of
`kt.data.mix`, where each batch comes from one task and carries that task's
id and a 0/1 sample weight per task, so only the batch's own head gets a
loss and metrics; the encoder learns from every task.

```python
import keras, ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=64, pooling="mean")
model = kt.multitask.MultiTaskModel(
    encoder,
    heads={"sentiment": kt.heads.ClassificationHead(2), "topic": kt.heads.ClassificationHead(4)},
)
model.compile(
    optimizer=keras.optimizers.AdamW(5e-5),
    metrics={"sentiment": ["accuracy"], "topic": ["accuracy"]},
    loss_weights={"sentiment": 1.0, "topic": 0.5},
)
train = kt.data.mix({"sentiment": sst2_batches, "topic": review_batches}, seed=0)
model.fit(train, epochs=2)      # logs loss, sentiment_loss, sentiment_accuracy, topic_loss, ...
kt.export.save_multitask(model, "saved_models/reviews/1",
                         labels={"sentiment": ["neg", "pos"], "topic": topics})
```

The loss of a step is `sum_t loss_weights[t] * L_t`, where `L_t` is the
mean loss of task t over the examples of task t in the global batch (all
replicas together under a `tf.distribute` strategy), and 0 when the batch
holds none: with one task per batch, a loss weight scales that task's
gradient. Heads of other tasks get zero gradients in that step (with Adam,
their moments still decay and their momentum carries on, as for any
variable whose gradient is zero).
"""

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.mixing import TASK_ID
from ktransfer.data.mixing import check_task_names
from ktransfer.encoders.keras_hub_adapter import set_compile_metrics
from ktransfer.utils.replicas import per_replica
from ktransfer.utils.replicas import sum_over_replicas


@keras.saving.register_keras_serializable(package="ktransfer")
class MultiTaskModel(keras.Model):
    """A shared encoder with one head per task.

    Args:
        encoder: the shared encoder layer, e.g. a `BertEncoder` with
            `pooling="mean"` (its output feeds every head).
        heads: a dict `{task_name: head_layer}`, e.g.
            `{"sentiment": ClassificationHead(2), "topic": ClassificationHead(4)}`.
            The order is the task order: the first task is the exported
            `serving_default`.
        **kwargs: `keras.Model` arguments (`name`, ...).

    Inputs are the encoder's features (a `task_id` entry, as `kt.data.mix`
    adds, is ignored); the output is `{task: head output}` for every task.

    `compile(optimizer, loss=None, metrics=None, loss_weights=None, ...)`
    takes per-task arguments keyed by task name:
    - `loss`: None (each head's `default_loss()`), one loss for every task,
      or `{task: loss}` (missing tasks use the head's default);
    - `metrics`: a list for every task or `{task: [metrics]}`; reported as
      `<task>_<metric>` (`"accuracy"` resolves to the accuracy that fits the
      head: sparse categorical, or binary on logits for multi-label heads);
    - `loss_weights`: `{task: weight}`, default 1.0.
    Each task's mean loss is also reported as `<task>_loss`.
    """

    def __init__(self, encoder, heads, **kwargs):
        if not isinstance(encoder, keras.layers.Layer):
            raise TypeError(
                "`encoder` must be a Keras layer, e.g. kt.encoders.BertEncoder. "
                f"Received: {type(encoder).__name__}"
            )
        if not isinstance(heads, dict) or not heads:
            raise TypeError(
                "`heads` must be a non-empty dict {task_name: head layer}, e.g. "
                "{'sentiment': kt.heads.ClassificationHead(2)}. Received: "
                f"{type(heads).__name__}"
            )
        check_task_names(list(heads))
        for task, head in heads.items():
            if not isinstance(head, keras.layers.Layer):
                raise TypeError(f"heads[{task!r}] must be a Keras layer. Received: {type(head).__name__}")
        if len({id(head) for head in heads.values()}) != len(heads):
            raise ValueError("Each task needs its own head layer: the same layer is given twice.")
        super().__init__(**kwargs)
        self.encoder = encoder
        self.heads = dict(heads)
        self._tasks = tuple(heads)
        self._loss_functions = None
        self._loss_weights = None

    @property
    def tasks(self):
        """The task names, in order (the first is exported as `serving_default`)."""
        return list(self._tasks)

    # --- forward ---------------------------------------------------------------
    def build(self, input_shape=None):
        if isinstance(input_shape, dict):
            input_shape = {k: v for k, v in input_shape.items() if k != TASK_ID}
        if not self.encoder.built:
            self.encoder.build(input_shape)
        shape = self.encoder.compute_output_shape(input_shape)
        for head in self.heads.values():
            if not head.built:
                head.build(tuple(shape))
        self.built = True

    def call(self, inputs, training=None):
        shared = self.encoder(_features(inputs), training=training)
        return {task: self.heads[task](shared, training=training) for task in self._tasks}

    def task_model(self, task):
        """`keras.Sequential([encoder, heads[task]])`, sharing this model's layers.

        A plain single-task model for `kt.predict`, `kt.export.save`, or a
        one-task `evaluate` on a `kt.data.prepare` dataset.
        """
        self._check_task(task)
        return keras.Sequential([self.encoder, self.heads[task]], name=f"{self.name}_{task}")

    def _check_task(self, task):
        if task not in self._tasks:
            raise ValueError(f"Unknown task {task!r}: this model's tasks are {self.tasks}.")

    # --- training --------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, **kwargs):
        if kwargs.pop("weighted_metrics", None) is not None:
            raise ValueError(
                "MultiTaskModel takes no `weighted_metrics`: its per-task metrics are "
                "weighted by each batch's task already; pass `metrics={task: [...]}`."
            )
        losses = self._per_task("loss", loss, default=None)
        metric_lists = self._per_task("metrics", metrics, default=[])
        weights = self._per_task("loss_weights", loss_weights, default=1.0, broadcast=False)
        for task, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise ValueError(
                    f"loss_weights[{task!r}] must be a number >= 0. Received: {weight!r}"
                )
        loss_functions = {
            task: _resolve_loss(losses[task], self.heads[task], task) for task in self._tasks
        }
        task_metrics = _TaskMetrics(
            {
                task: _resolve_metrics(metric_lists[task], self.heads[task], task)
                for task in self._tasks
            }
        )
        super().compile(optimizer=optimizer, **kwargs)
        self._loss_functions = loss_functions
        self._loss_weights = {task: float(weight) for task, weight in weights.items()}
        set_compile_metrics(self, task_metrics)
        object.__setattr__(  # untracked too: a metric object in it is not reported
            self,
            "_compile_arguments",
            dict(optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights, **kwargs),
        )

    def get_compile_config(self):
        if not self.compiled or getattr(self, "_compile_arguments", None) is None:
            return {}
        return keras.saving.serialize_keras_object(self._compile_arguments)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def _per_task(self, argument, value, default, broadcast=True):
        if value is None:
            return {task: default for task in self._tasks}
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(self._tasks))
            if unknown:
                raise ValueError(
                    f"`{argument}` names unknown tasks {unknown}; this model's tasks are "
                    f"{self.tasks}."
                )
            return {task: value.get(task, default) for task in self._tasks}
        if not broadcast:
            raise TypeError(
                f"`{argument}` must be a dict {{task: value}} keyed by the tasks "
                f"{self.tasks}. Received: {value!r}"
            )
        return {task: value for task in self._tasks}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self._loss_functions is None:
            raise RuntimeError("Compile the model first: model.compile(optimizer=...).")
        if not isinstance(y, dict) or not set(y) <= set(self._tasks):
            raise ValueError(
                "MultiTaskModel trains and evaluates on batches of kt.data.mix(...): "
                "(features, {task: labels}, {task: sample_weights}) with tasks from "
                f"{self.tasks}. Received labels {_structure(y)}. For one task alone use "
                "kt.data.mix({task: dataset}) or model.task_model(task)."
            )
        if sample_weight is not None and not isinstance(sample_weight, dict):
            raise ValueError(
                "`sample_weight` must be a dict {task: weights} (kt.data.mix makes one). "
                f"Received: {_structure(sample_weight)}"
            )
        total = tf.constant(0.0, tf.float32)
        for task in self._tasks:
            if task not in y:
                continue
            values = _per_example(self._loss_functions[task], y[task], y_pred[task])
            weights = (sample_weight or {}).get(task)
            weights = tf.ones_like(values) if weights is None else tf.cast(weights, tf.float32)
            local_sum = tf.reduce_sum(weights * values)
            local_count = tf.reduce_sum(weights)
            # The task's mean over the *global* batch: each replica divides
            # its sum by the count of all replicas, and the gradients, summed
            # over replicas, are those of the global mean.
            task_loss = tf.math.divide_no_nan(local_sum, tf.stop_gradient(sum_over_replicas(local_count)))
            self._compile_metrics.update_loss(
                task, tf.math.divide_no_nan(local_sum, local_count), local_count
            )
            total += self._loss_weights[task] * task_loss
        if self.losses:  # regularisers: summed over replicas by the gradient all-reduce
            total += per_replica(tf.add_n([tf.cast(tf.reduce_sum(l), tf.float32) for l in self.losses]))
        return total

    # --- serialisation ---------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "heads": {
                    task: keras.saving.serialize_keras_object(self.heads[task])
                    for task in self._tasks
                },
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        heads = {
            task: keras.saving.deserialize_keras_object(head)
            for task, head in config.pop("heads").items()
        }
        return cls(encoder=encoder, heads=heads, **config)


class _TaskMetrics(keras.metrics.Metric):
    """Per-task loss means and metrics, reported as `<task>_<name>`.

    Stands in for Keras' `CompileMetrics`: `update_state` gets the batch's
    `{task: sample_weights}`, so each task's metrics see its examples only.
    """

    def __init__(self, metrics, name="task_metrics"):
        super().__init__(name=name)
        self._task_metrics = metrics
        self._loss_means = {task: keras.metrics.Mean(name=f"{task}_loss") for task in metrics}
        self.built = True

    @property
    def variables(self):
        variables = []
        for task, metrics in self._task_metrics.items():
            variables.extend(self._loss_means[task].variables)
            for metric in metrics:
                variables.extend(metric.variables)
        return variables

    def update_loss(self, task, value, count):
        self._loss_means[task].update_state(value, sample_weight=count)

    def update_state(self, y_true, y_pred, sample_weight=None):
        for task, metrics in self._task_metrics.items():
            if task not in y_true:
                continue
            weights = None if sample_weight is None else sample_weight.get(task)
            for metric in metrics:
                metric.update_state(y_true[task], y_pred[task], sample_weight=weights)

    def reset_state(self):
        for task, metrics in self._task_metrics.items():
            self._loss_means[task].reset_state()
            for metric in metrics:
                metric.reset_state()

    def result(self):
        results = {}
        for task, metrics in self._task_metrics.items():
            results[self._loss_means[task].name] = self._loss_means[task].result()
            for metric in metrics:
                results[metric.name] = metric.result()
        return results


def _features(inputs):
    if isinstance(inputs, dict) and TASK_ID in inputs:
        return {k: v for k, v in inputs.items() if k != TASK_ID}
    return inputs


def _per_example(loss, y_true, y_pred):
    """Unreduced loss values `[batch]` (trailing axes averaged)."""
    if isinstance(loss, keras.losses.Loss):
        # As `Loss.__call__` does before reducing: inputs in the loss' dtype.
        y_true = keras.ops.convert_to_tensor(y_true, dtype=loss.dtype)
        y_pred = keras.ops.convert_to_tensor(y_pred, dtype=loss.dtype)
        values = loss.call(y_true, y_pred)
    else:
        values = loss(y_true, y_pred)
    values = tf.cast(values, tf.float32)
    if values.shape.rank is not None and values.shape.rank > 1:
        values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
    return values


def _resolve_loss(identifier, head, task):
    if identifier is None:
        if not hasattr(head, "default_loss"):
            raise ValueError(
                f"heads[{task!r}] has no default_loss(): pass loss={{{task!r}: ...}} to compile."
            )
        return head.default_loss()
    loss = keras.losses.get(identifier)
    if loss is None or not callable(loss):
        raise ValueError(f"Unknown loss for task {task!r}: {identifier!r}")
    return loss


def _resolve_metrics(identifiers, head, task):
    if isinstance(identifiers, (str, keras.metrics.Metric)) or callable(identifiers):
        identifiers = [identifiers]
    if not isinstance(identifiers, (list, tuple)):
        raise TypeError(
            f"metrics for task {task!r} must be a list such as ['accuracy']. Received: {identifiers!r}"
        )
    metrics = []
    for identifier in identifiers:
        if identifier in ("accuracy", "acc"):
            name = f"{task}_accuracy"
            if getattr(head, "multi_label", False):
                logits = getattr(head, "activation", None) is None
                metric = keras.metrics.BinaryAccuracy(name=name, threshold=0.0 if logits else 0.5)
            else:
                metric = keras.metrics.SparseCategoricalAccuracy(name=name)
        elif isinstance(identifier, keras.metrics.Metric):
            config = dict(identifier.get_config(), name=f"{task}_{identifier.name}")
            metric = type(identifier).from_config(config)  # a copy per task, renamed
        else:
            resolved = keras.metrics.get(identifier)
            if isinstance(resolved, keras.metrics.Metric):
                config = dict(resolved.get_config(), name=f"{task}_{resolved.name}")
                metric = type(resolved).from_config(config)
            else:
                metric = keras.metrics.MeanMetricWrapper(
                    resolved, name=f"{task}_{getattr(resolved, '__name__', 'metric')}"
                )
        metrics.append(metric)
    return metrics


def _structure(value):
    if isinstance(value, dict):
        return "{" + ", ".join(repr(k) for k in value) + "}"
    return type(value).__name__


__all__ = ["MultiTaskModel"]
