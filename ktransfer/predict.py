"""`predict`: answer raw strings with any task or model, as its export would.

`kt.predict(model_or_task, texts)` runs the task's serving signature
(`serving_default`, the graph `export` writes) in memory and returns its
outputs as a dict: for a classifier `{"label": [str, ...], "probabilities":
float32 [n, classes]}`. A Sequential or functional classifier is wrapped
with `kt.tasks.TextClassifier.from_model` first. `raw=True` returns the
model's own outputs instead (logits for ktransfer's heads), as `kt.predict`
did before tasks existed.
"""

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf


def predict(model, texts, preprocessor=None, batch_size=64, raw=False):
    """Run `model` on raw texts; labels and probabilities (or raw outputs).

    Args:
        model: a `kt.tasks.Task` (any task), or a Keras classifier (an
            encoder and a classification head; wrapped with
            `TextClassifier.from_model`).
        texts: a string, a list of strings, or for pair models a pair
            `(texts_a, texts_b)` (or a list of `(text_a, text_b)` tuples).
        preprocessor: for a plain Keras model, the preprocessor to put in
            front (default: its encoder's). Tasks use their own.
        batch_size: texts per forward pass.
        raw: True returns the model's outputs as a numpy array, one row per
            text (logits for ktransfer's heads), tokenising with the
            encoder's preprocessor; for any Keras model, classifier or not.

    Returns:
        A dict with the keys of the task's serving signature: numeric
        outputs as numpy arrays (`probabilities`: float32 `[n, classes]`),
        string outputs as lists of str (`label`). With `raw=True`, a numpy
        array.

    Example:

    ```python
    answer = kt.predict(model, ["a great film", "a dull film"])
    answer["label"]           # ['positive', 'negative']
    answer["probabilities"]   # float32 [2, 2]
    logits = kt.predict(model, ["a great film"], raw=True)
    ```
    """
    from ktransfer.tasks.task import Task
    from ktransfer.tasks.task import text_columns

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    if isinstance(texts, (str, bytes)):
        texts = [texts]
    columns = text_columns(texts if isinstance(texts, tuple) else list(texts))
    if len(columns[0]) == 0:
        raise ValueError("`texts` is empty: give at least one string.")
    if raw:
        return _raw_outputs(model, columns, preprocessor, batch_size)
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model or a kt.tasks.Task. Received: {type(model).__name__}")
    if isinstance(model, Task):
        if preprocessor is not None:
            raise ValueError(
                "A task uses its own preprocessor (`task.preprocessor`): call "
                "kt.predict(task, texts) without `preprocessor`."
            )
        task = model
    else:
        from ktransfer.tasks.text_classifier import TextClassifier

        try:
            task = TextClassifier.from_model(
                model, preprocessor="auto" if preprocessor is None else preprocessor,
                pairs=True if len(columns) == 2 else None,
            )
        except ValueError as error:
            raise ValueError(
                f"{error} (kt.predict(model, texts, raw=True) returns the model's raw outputs.)"
            ) from None
    serve, input_signature = task.serving_signatures()["serving_default"]
    if len(input_signature) != len(columns):
        names = [spec.name for spec in input_signature]
        raise ValueError(
            f"This task's serving signature takes {len(input_signature)} text inputs {names}; "
            f"received {len(columns)} column(s) of texts. For pairs pass (texts_a, texts_b)."
        )
    parts = []
    for start in range(0, len(columns[0]), batch_size):
        batch = [tf.constant(column[start : start + batch_size].tolist(), tf.string) for column in columns]
        parts.append({key: value.numpy() for key, value in serve(*batch).items()})
    return {key: _join([part[key] for part in parts]) for key in parts[0]}


def _join(values):
    """One output over all batches: lists of str for strings, numpy arrays otherwise."""
    if values[0].dtype.kind in ("S", "O"):
        rows = [row for value in values for row in value.tolist()]
        return [_decode(row) for row in rows]
    if all(value.shape[1:] == values[0].shape[1:] for value in values):
        return np.concatenate(values, axis=0)
    return [row for value in values for row in value]  # e.g. per-word outputs of varying width


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        decoded = [_decode(v) for v in value]
        while decoded and decoded[-1] == "":  # padding after the last word
            decoded.pop()
        return decoded
    return value


def _raw_outputs(model, columns, preprocessor, batch_size):
    from ktransfer.data.pipeline import prepare
    from ktransfer.export import find_preprocessor

    if preprocessor is None:
        preprocessor = find_preprocessor(model)
    texts = columns[0] if len(columns) == 1 else tuple(columns)
    if preprocessor is None:
        if len(columns) == 2:
            return np.asarray(model.predict(tuple(c.astype(object) for c in columns), verbose=0))
        return np.asarray(model.predict(np.array(texts, dtype=object), verbose=0, batch_size=batch_size))
    tensors = [tf.constant(column.tolist(), tf.string) for column in columns]
    dataset = tf.data.Dataset.from_tensor_slices(tensors[0] if len(tensors) == 1 else tuple(tensors))
    dataset = prepare(dataset, preprocessor, batch_size=batch_size)
    outputs = [np.asarray(model(batch, training=False)) for batch in dataset]
    return np.concatenate(outputs, axis=0)


__all__ = ["predict"]
