"""Export a trained model as a SavedModel that TF Serving loads, raw strings in.

The `serving_default` signature takes a 1-D `tf.string` tensor `text` and
returns `probabilities` (float32 `[batch, classes]`) and `label` (string
`[batch]`). Tokenisation is inside the graph (KerasHub's tokenizers are
TensorFlow Text ops), so a client needs nothing but TensorFlow and
`tensorflow_text`: `import tensorflow_text` registers the ops (TF Serving
needs a build that includes them).

The SavedModel is written by `keras.export.ExportArchive` (the well-kept
Keras way to write a TF SavedModel with custom endpoints) into a temporary
folder beside the target and renamed into place only when complete, so an
interrupted export leaves nothing half-written.
"""

import os
import shutil
import tempfile

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.pipeline import bucket_boundaries


def find_preprocessor(model):
    """The preprocessor of the first encoder layer in `model`, or None."""
    for layer in _walk_layers(model):
        preprocessor = getattr(layer, "preprocessor", None)
        if preprocessor is not None and callable(preprocessor):
            return preprocessor
    return None


def _walk_layers(layer):
    yield layer
    for child in getattr(layer, "layers", None) or getattr(layer, "_layers", []):
        yield from _walk_layers(child)


def _output_activation(model):
    """What turns the model's output into probabilities ('softmax', ...)."""
    last = None
    for layer in _walk_layers(model):
        if hasattr(layer, "output_activation") and hasattr(layer, "num_classes"):
            last = layer
    return last.output_activation if last is not None else None, last


def _check_version_folder(path, overwrite):
    path = os.path.abspath(os.fspath(path))
    version = os.path.basename(path.rstrip(os.sep))
    if not version.isdigit():
        raise ValueError(
            f"Export path {path!r} must end in an integer version folder, the "
            "layout TF Serving scans (saved_models/<name>/<version>/), e.g. "
            "'saved_models/sst2/1'."
        )
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already exists. Export to a new version number (TF Serving "
            "serves the highest), or pass overwrite=True to replace it."
        )
    return path


def _trim_to_longest(features, sequence_length):
    """Cut padded features to the bucket that holds the batch's longest text."""
    if sequence_length is None or "padding_mask" not in features:
        return features
    boundaries = tf.constant(bucket_boundaries(sequence_length), tf.int32)
    lengths = tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), axis=-1)
    longest = tf.maximum(tf.reduce_max(tf.concat([lengths, [1]], 0)), 1)
    index = tf.minimum(
        tf.searchsorted(boundaries, tf.reshape(longest, [1]))[0],
        tf.size(boundaries) - 1,
    )
    width = boundaries[index]
    return {
        key: value[:, :width] if value.shape.rank == 2 else value
        for key, value in features.items()
    }


def save(
    model,
    path,
    preprocessor=None,
    labels=None,
    overwrite=False,
    output_activation="auto",
    threshold=0.5,
):
    """Write `model` as a TF Serving SavedModel that takes raw strings.

    Args:
        model: a trained Keras classifier (encoder + head).
        path: the version folder, `saved_models/<name>/<version>`.
        preprocessor: the text preprocessor; defaults to the one of the
            model's encoder (`BertEncoder.preprocessor`). Word-vector models
            whose vectorisation is inside the model need none.
        labels: class names, one per output; defaults to "0", "1", ...
        overwrite: replace an existing version folder.
        output_activation: "auto" (from the head), "softmax", "sigmoid", or
            None when the model already outputs probabilities.
        threshold: for multi-label (sigmoid) models, the probability above
            which a label is returned.

    Returns:
        The absolute path written.

    Example:

    ```python
    kt.export.save(model, "saved_models/sst2/1", labels=["negative", "positive"])
    # In any process: import tensorflow as tf, tensorflow_text
    # serve = tf.saved_model.load("saved_models/sst2/1").signatures["serving_default"]
    # serve(text=tf.constant(["a great film"]))["label"]
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    path = _check_version_folder(path, overwrite)
    if preprocessor is None:
        preprocessor = find_preprocessor(model)
    head_activation, head = _output_activation(model)
    if output_activation == "auto":
        output_activation = head_activation
    if output_activation not in (None, "softmax", "sigmoid"):
        raise ValueError(
            "`output_activation` must be 'auto', 'softmax', 'sigmoid' or None. "
            f"Received: {output_activation!r}"
        )
    multi_label = output_activation == "sigmoid" or bool(getattr(head, "multi_label", False))

    num_outputs = head.num_classes if head is not None else _num_outputs(model, preprocessor)
    if labels is None:
        labels = [str(i) for i in range(num_outputs)]
    labels = [str(label) for label in labels]
    if len(labels) != num_outputs:
        raise ValueError(
            f"`labels` has {len(labels)} names but the model has {num_outputs} "
            "outputs: give one name per class, in class-index order."
        )
    sequence_length = getattr(preprocessor, "sequence_length", None)
    label_table = tf.constant(labels)

    def serve(text):
        features = preprocessor(text) if preprocessor is not None else text
        if isinstance(features, dict):
            features = _trim_to_longest(features, sequence_length)
        scores = tf.cast(model(features, training=False), tf.float32)
        if output_activation == "softmax":
            scores = tf.nn.softmax(scores, axis=-1)
        elif output_activation == "sigmoid":
            scores = tf.sigmoid(scores)
        if multi_label:
            chosen = tf.ragged.boolean_mask(
                tf.broadcast_to(label_table, tf.shape(scores)), scores > threshold
            )
            label = tf.strings.reduce_join(chosen, axis=-1, separator=",")
        else:
            label = tf.gather(label_table, tf.argmax(scores, axis=-1))
        return {"probabilities": scores, "label": label}

    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.tmp-")
    try:
        if not model.built:  # e.g. a Sequential never called: build on a sample text
            serve(tf.constant(["a"]))
        archive = keras.export.ExportArchive()
        archive.track(model)
        if isinstance(preprocessor, keras.layers.Layer):
            archive.track(preprocessor)
        archive.add_endpoint(
            name="serving_default",
            fn=serve,
            input_signature=[tf.TensorSpec(shape=(None,), dtype=tf.string, name="text")],
        )
        archive.write_out(staging, verbose=False)
        with open(os.path.join(staging, "assets.extra.labels.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(labels) + "\n")
        if os.path.exists(path):
            shutil.rmtree(path)
        os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _num_outputs(model, preprocessor):
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else None
    if shape is not None and shape[-1] is not None:
        return int(shape[-1])
    sample = tf.constant(["a"])
    features = preprocessor(sample) if preprocessor is not None else sample
    return int(model(features, training=False).shape[-1])
