"""Pieces of the served graphs that tasks share: trimming, length groups, labels.

A task's `serving_signatures()` builds its raw-string graph from these;
`kt.export` re-exports the constants and `predict_in_length_groups` for
code written against it.

- `SERVING_BUCKET_STEP`: the length buckets of every served graph (every 8
  tokens up to 64), fixed when the model is exported, so an export answers
  alike wherever it was made.
- `predict_in_length_groups`: run a model on a padded batch in
  length-sorted groups, outputs in input order.
- `find_classification_head`: the head whose activation and class count
  turn a model's scores into probabilities.
- `check_labels`: validate class names (what `labels=` may be).
- `classifier_outputs`: scores -> `{"probabilities", "label"}`.
- `preprocess_texts`: call a preprocessor on texts or text pairs.
"""

from ktransfer._keras import keras  # noqa: F401  (sets the backend first)

import tensorflow as tf

from ktransfer.data.pipeline import COARSE_BUCKET_STEP
from ktransfer.data.pipeline import bucket_boundaries
from ktransfer.data.pipeline import token_lengths
from ktransfer.data.pipeline import trim_to_bucket
from ktransfer.encoders.base import iter_layers

# Length buckets of the served graph: every 8 tokens up to 64, fixed when the
# model is exported (not chosen from the exporting machine's devices, as
# `kt.data.prepare` chooses for training), so an export answers alike
# wherever it was made; the serving figures in docs/speed.md use these.
SERVING_BUCKET_STEP = COARSE_BUCKET_STEP

# A served batch of at least MIN_GROUPED_BATCH texts runs in LENGTH_GROUPS
# length-sorted parts (see `predict_in_length_groups`).
LENGTH_GROUPS = 4
MIN_GROUPED_BATCH = 16

OUTPUT_ACTIVATIONS = (None, "softmax", "sigmoid")


def predict_in_length_groups(predict, features, sequence_length, groups=LENGTH_GROUPS,
                             min_batch=MIN_GROUPED_BATCH):
    """Run `predict` on a padded batch in length-sorted groups; outputs in input order.

    Trimming a whole batch to its longest text still pads every short text
    to that length. A batch of at least `min_batch` texts is sorted by
    length and cut into `groups` equal parts, each trimmed to the length
    bucket of its own longest text (so a served batch of mixed lengths
    costs about what the same texts cost in `kt.data.prepare`'s sorted
    training batches); smaller batches run whole, in one call (lowest
    latency for single requests). Both paths are in the graph, chosen by
    `tf.cond` on the batch size.

    Args:
        predict: `fn(features) -> [batch, ...]` tensor.
        features: a padded feature dict with a `padding_mask`.
        sequence_length: the padded length (the last bucket).
        groups, min_batch: see above.

    Example:

    ```python
    import tensorflow as tf
    from ktransfer.tasks.serving import predict_in_length_groups
    features = encoder.preprocessor(tf.constant(texts))
    scores = predict_in_length_groups(lambda f: model(f, training=False), features, 64)
    ```
    """
    boundaries = tf.constant(bucket_boundaries(sequence_length, SERVING_BUCKET_STEP), tf.int32)
    lengths = token_lengths(features)
    size = tf.shape(lengths)[0]

    def whole():
        return predict(trim_to_bucket(features, boundaries))

    def grouped():
        order = tf.argsort(lengths, stable=True)
        outputs = []
        for group in range(groups):
            rows = order[group * size // groups : (group + 1) * size // groups]
            part = {key: tf.gather(value, rows) for key, value in features.items()}
            outputs.append(predict(trim_to_bucket(part, boundaries)))
        return tf.gather(tf.concat(outputs, axis=0), tf.argsort(order, stable=True))

    return tf.cond(size >= min_batch, grouped, whole)


def find_classification_head(model):
    """The last classification head in `model` (itself included), or None.

    A classification head is a layer with `num_classes` and
    `output_activation` (the activation that maps its outputs to
    probabilities: `"softmax"`, `"sigmoid"`, or None when it outputs
    probabilities already), such as `kt.heads.ClassificationHead` and
    `kt.heads.RelationHead`; `multi_label` is read when present.

    Example:

    ```python
    import keras, ktransfer as kt
    head = kt.heads.ClassificationHead(2)
    model = keras.Sequential([keras.Input((8,)), head])
    kt.tasks.serving.find_classification_head(model) is head  # True
    ```
    """
    last = None
    for layer in iter_layers(model):
        if hasattr(layer, "output_activation") and hasattr(layer, "num_classes"):
            last = layer
    return last


def check_labels(labels, num_classes=None, what="`labels`", multi_label=False):
    """Validate class names; return them as a list of str.

    Args:
        labels: a list (or tuple, numpy array) of class names, one per
            class in class-index order. Names are converted with `str`.
        num_classes: when given, the required number of names.
        what: how error messages call `labels`.
        multi_label: names are joined with "," in a multi-label answer,
            so they may not contain one.

    Raises:
        ValueError: `labels` is a string (not a list of names), has
            duplicates, an empty name, a name with a line break (label files
            hold one name per line), or the wrong length.

    Example:

    ```python
    from ktransfer.tasks.serving import check_labels
    check_labels(["neg", "pos"], num_classes=2)   # ['neg', 'pos']
    ```
    """
    if isinstance(labels, (str, bytes)):
        raise ValueError(
            f"{what} must be a list of class names, e.g. ['negative', 'positive']; "
            f"received the string {labels!r} (a string would be read as one name "
            "per character)."
        )
    try:
        names = list(labels)
    except TypeError:
        raise ValueError(
            f"{what} must be a list of class names. Received: {type(labels).__name__}"
        ) from None
    names = [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names]
    if not names:
        raise ValueError(f"{what} is empty: give one name per class.")
    for name in names:
        if name == "":
            raise ValueError(f"{what} contains an empty name: every class needs a name.")
        if "\n" in name or "\r" in name:
            raise ValueError(
                f"{what} contains {name!r}, a name with a line break: names are "
                "written one per line (assets.extra/labels.txt). Remove the line break."
            )
        if multi_label and "," in name:
            raise ValueError(
                f"{what} contains {name!r}: a multi-label answer joins names with ',', "
                "so a name may not contain one."
            )
    seen = set()
    duplicates = sorted({name for name in names if name in seen or seen.add(name)})
    if duplicates:
        raise ValueError(
            f"{what} has duplicate names {duplicates}: each class needs its own name."
        )
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            f"{what} has {len(names)} names but there are {num_classes} outputs: "
            "give one name per class, in class-index order."
        )
    return names


def check_output_activation(output_activation):
    """Raise a clear error unless `output_activation` is None, 'softmax' or 'sigmoid'."""
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            "`output_activation` must be 'auto', 'softmax', 'sigmoid' or None (the "
            f"model outputs probabilities already). Received: {output_activation!r}"
        )
    return output_activation


def to_probabilities(scores, output_activation):
    """float32 probabilities from a model's scores (`softmax`, `sigmoid` or as they are)."""
    scores = tf.cast(scores, tf.float32)
    if output_activation == "softmax":
        return tf.nn.softmax(scores, axis=-1)
    if output_activation == "sigmoid":
        return tf.sigmoid(scores)
    return scores


def classifier_outputs(probabilities, labels, multi_label=False, threshold=0.5):
    """`{"probabilities", "label"}`: the answer of a served classifier.

    Args:
        probabilities: float32 `[batch, classes]`.
        labels: the class names (a list of str or a string tensor).
        multi_label: the label is every name whose probability is above
            `threshold`, joined with "," (`""` when none is); otherwise the
            name of the most probable class.

    Example:

    ```python
    import tensorflow as tf
    from ktransfer.tasks.serving import classifier_outputs
    classifier_outputs(tf.constant([[0.2, 0.8]]), ["neg", "pos"])["label"]  # [b"pos"]
    ```
    """
    label_table = tf.constant(labels) if not isinstance(labels, tf.Tensor) else labels
    if multi_label:
        chosen = tf.ragged.boolean_mask(
            tf.broadcast_to(label_table, tf.shape(probabilities)), probabilities > threshold
        )
        label = tf.strings.reduce_join(chosen, axis=-1, separator=",")
    else:
        label = tf.gather(label_table, tf.argmax(probabilities, axis=-1))
    return {"probabilities": probabilities, "label": label}


def preprocess_texts(preprocessor, texts):
    """Call `preprocessor` on a batch of texts or a `(texts_a, texts_b)` pair.

    KerasHub preprocessors read a positional tuple as `(x, y)`, so a pair
    is passed as `x=(a, b)` (both become segments of one input). A
    `padding_mask` comes back as int32 (a boolean input does not aggregate
    under `MirroredStrategy`). With `preprocessor=None` the texts are
    returned as they are (models that read raw strings).

    Example:

    ```python
    import tensorflow as tf
    from ktransfer.tasks.serving import preprocess_texts
    features = preprocess_texts(encoder.preprocessor, (tf.constant(["a man eats"]),
                                                       tf.constant(["someone eats"])))
    ```
    """
    if preprocessor is None:
        return texts
    if isinstance(texts, (tuple, list)):
        features = preprocessor(x=tuple(texts))
    else:
        features = preprocessor(texts)
    if isinstance(features, dict) and "padding_mask" in features:
        features = dict(features, padding_mask=tf.cast(features["padding_mask"], tf.int32))
    return features


def check_text_batch(text, name="text"):
    """`text`, checked in the graph to be a 1-D batch of strings.

    The served signature declares shape `[None]`, but TF Serving runs a
    scalar or a 2-D input all the same; this makes it an error that names
    the input ("Shape of tensor text [] is not compatible with expected
    shape [?]"; TF Serving answers HTTP 400 with the message).
    """
    # EnsureShape checks the runtime shape (a rank computed from the
    # tensor would be folded to the declared 1 when the graph is optimised).
    return tf.ensure_shape(text, [None], name=name)


def text_signature(names=("text",)):
    """`[tf.TensorSpec([None], tf.string, name=...)]`: a served graph's inputs."""
    return [tf.TensorSpec(shape=(None,), dtype=tf.string, name=name) for name in names]




def takes_raw_strings(model):
    """True for a model whose single input is a string tensor (vectorisation inside).

    Such models (a functional model over a string `keras.Input`, an old
    word-vector model) are fed texts as they are: no preprocessor goes in
    front of them, even when their encoder has one.

    Example:

    ```python
    import keras
    from ktransfer.tasks.serving import takes_raw_strings
    text = keras.Input(shape=(), dtype="string")
    takes_raw_strings(keras.Model(text, head(encoder(text))))   # True
    ```
    """
    inputs = getattr(model, "inputs", None)
    try:
        return bool(inputs) and len(inputs) == 1 and inputs[0].dtype == "string"
    except (AttributeError, TypeError, ValueError):
        return False


__all__ = [
    "LENGTH_GROUPS",
    "MIN_GROUPED_BATCH",
    "SERVING_BUCKET_STEP",
    "check_labels",
    "check_output_activation",
    "check_text_batch",
    "classifier_outputs",
    "find_classification_head",
    "predict_in_length_groups",
    "preprocess_texts",
    "takes_raw_strings",
    "text_signature",
    "to_probabilities",
]
