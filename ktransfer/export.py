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
from ktransfer.data.pipeline import trim_to_bucket


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
    return trim_to_bucket(features, boundaries)


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

    # One eager call builds what is not built yet (a Sequential never called,
    # a model or preprocessor just loaded from a `.keras` file).
    serve(tf.constant(["a"]))
    _write_archive(
        model,
        preprocessor,
        [tf.TensorSpec(shape=(None,), dtype=tf.string, name="text")],
        serve,
        path,
        labels,
    )
    return path


def _num_outputs(model, preprocessor):
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else None
    if shape is not None and shape[-1] is not None:
        return int(shape[-1])
    sample = tf.constant(["a"])
    features = preprocessor(sample) if preprocessor is not None else sample
    return int(model(features, training=False).shape[-1])


# --------------------------------------------------------------------------
# Token taggers (NER) and sentence-pair models.
# --------------------------------------------------------------------------


def save_tagger(model, path, tags, preprocessor=None, overwrite=False):
    """Write a token tagger (e.g. NER) as a SavedModel: sentences in, tags out.

    The `serving_default` signature takes `text`, a 1-D `tf.string` tensor of
    sentences whose words are separated by spaces (words are the
    whitespace-separated tokens, as Python's `str.split()` finds them), and
    returns

    - `tags`: string `[batch, max_words]`, one tag per word, padded with `""`
      after each sentence's last word;
    - `words`: string `[batch, max_words]`, the words the tags belong to,
      padded with `""`.

    Each word is tokenised into WordPiece sub-tokens inside the graph and
    tagged by its first sub-token, as in training (`prepare_tokens`). Words
    beyond the encoder's `sequence_length` (in sub-tokens) are tagged `"O"`.

    Args:
        model: a trained token classifier (`BertEncoder(pooling=None)` +
            `TokenClassificationHead`), taking the encoder's feature dict.
        path: the version folder, `saved_models/<name>/<version>`.
        tags: the tag names in tag-index order (`kt.data.tag_vocabulary`).
        preprocessor: defaults to the model's encoder's preprocessor; its
            `tokenizer` and `sequence_length` are used.
        overwrite: replace an existing version folder.

    Returns:
        The absolute path written.

    Example:

    ```python
    kt.export.save_tagger(model, "saved_models/ner/1", tags=tags)
    # In any process: import tensorflow as tf, tensorflow_text
    # serve = tf.saved_model.load("saved_models/ner/1").signatures["serving_default"]
    # serve(text=tf.constant(["Peter Blackburn visited Paris"]))["tags"]
    # -> [[b"B-PER", b"I-PER", b"O", b"B-LOC"]]
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    path = _check_version_folder(path, overwrite)
    from ktransfer.data.conll import _check_tags

    tags = _check_tags(tags)
    if preprocessor is None:
        preprocessor = find_preprocessor(model)
    serve = tagger_function(model, tags, preprocessor)
    serve(tf.constant(["a"]))  # builds the model and checks the number of tags
    text = tf.TensorSpec(shape=(None,), dtype=tf.string, name="text")
    _write_archive(model, preprocessor.tokenizer, [text], serve, path, tags)
    return path


def tagger_function(model, tags, preprocessor=None):
    """`fn(sentences) -> {"tags", "words"}`, the graph that `save_tagger` exports.

    Useful to tag sentences in memory, e.g. to evaluate during training.
    """
    from ktransfer.data.conll import align_words

    if preprocessor is None:
        preprocessor = find_preprocessor(model)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    sequence_length = getattr(preprocessor, "sequence_length", None)
    if tokenizer is None or not sequence_length:
        raise ValueError(
            "A tagger needs the encoder's KerasHub preprocessor (with a "
            "`tokenizer` and a `sequence_length`); pass `preprocessor=` when the "
            "model's encoder has none."
        )
    tag_table = tf.constant(list(tags))
    num_tags = len(tags)

    @tf.function(input_signature=[tf.TensorSpec(shape=(None,), dtype=tf.string)])
    def tag(text):
        words = tf.strings.split(text)  # [batch, (words)], whitespace-separated
        features, word_starts, _, _ = align_words(words, tokenizer, sequence_length)
        features = _trim_to_longest(features, sequence_length)
        logits = model(features, training=False)
        tf.debugging.assert_equal(
            tf.shape(logits)[-1],
            num_tags,
            message=f"the model's output size differs from len(tags)={num_tags}",
        )
        width = tf.shape(logits)[1]
        starts = word_starts.to_tensor(default_value=0)
        in_window = starts < width
        scores = tf.gather(logits, tf.where(in_window, starts, 0), batch_dims=1)
        predicted = tf.gather(tag_table, tf.argmax(scores, axis=-1, output_type=tf.int32))
        predicted = tf.where(in_window, predicted, "O")
        is_word = tf.ones_like(word_starts, dtype=tf.bool).to_tensor(default_value=False)
        return {
            "tags": tf.where(is_word, predicted, ""),
            "words": words.to_tensor(default_value=""),
        }

    return tag


def _write_archive(model, preprocessing, input_signature, serve, path, labels):
    """Write `serve` as `serving_default` into `path` atomically (see `save`).

    `preprocessing` is the layer (tokenizer or preprocessor) that `serve` runs
    before the model, tracked so that its vocabulary tables are saved.
    """
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.tmp-")
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        if isinstance(preprocessing, keras.layers.Layer):
            archive.track(preprocessing)
        archive.add_endpoint(
            name="serving_default",
            fn=getattr(serve, "python_function", serve),
            input_signature=list(input_signature),
        )
        archive.write_out(staging, verbose=False)
        if labels is not None:  # beside the graph, for humans and serving tools
            os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
            with open(os.path.join(staging, "assets.extra", "labels.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(labels) + "\n")
        if os.path.exists(path):
            shutil.rmtree(path)
        os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_pair(model, path, preprocessor=None, labels=None, overwrite=False):
    """Write a sentence-pair model as a SavedModel with two string inputs.

    The `serving_default` signature takes `text_a` and `text_b`, two 1-D
    `tf.string` tensors of the same length, and returns

    - for a `kt.models.SiameseEncoder`: `similarity`, float32 `[batch]`, the
      cosine similarity of the two texts' embeddings;
    - for a cross-encoder classifier (encoder + `ClassificationHead` trained
      on `kt.data.prepare` pairs, `[CLS] a [SEP] b [SEP]`):
      `probabilities` (float32 `[batch, classes]`) and `label` (string
      `[batch]`), as `save` does for single texts.

    Args:
        model: a `SiameseEncoder` or a single-label pair classifier.
        path: the version folder, `saved_models/<name>/<version>`.
        preprocessor: defaults to the model's (`SiameseEncoder.preprocessor`)
            or its encoder's preprocessor.
        labels: class names of a classifier (default "0", "1", ...).
        overwrite: replace an existing version folder.

    Returns:
        The absolute path written.

    Example:

    ```python
    kt.export.save_pair(siamese, "saved_models/sts/1")
    # serve(text_a=tf.constant(["a man eats"]), text_b=tf.constant(["someone eats"]))
    # -> {"similarity": [0.83]}
    ```
    """
    from ktransfer.models.siamese import PairPreprocessor
    from ktransfer.models.siamese import SiameseEncoder

    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    path = _check_version_folder(path, overwrite)
    siamese = isinstance(model, SiameseEncoder)
    if preprocessor is None:
        preprocessor = model.preprocessor if siamese else find_preprocessor(model)
    if preprocessor is None:
        raise ValueError("The model has no preprocessor: pass `preprocessor=`.")
    if siamese and not isinstance(preprocessor, PairPreprocessor):
        preprocessor = PairPreprocessor(preprocessor)
    sequence_length = getattr(preprocessor, "sequence_length", None)

    if siamese:
        label_table = None

        def serve(text_a, text_b):
            features = _trim_to_longest(preprocessor((text_a, text_b)), sequence_length)
            return {"similarity": tf.cast(model(features, training=False), tf.float32)}

    else:
        activation, head = _output_activation(model)
        if activation != "softmax":
            raise ValueError(
                "save_pair exports SiameseEncoder models and single-label pair "
                "classifiers (a ClassificationHead returning logits); this model's "
                f"output activation is {activation!r}. Use `save` for other models."
            )
        labels = [str(i) for i in range(head.num_classes)] if labels is None else labels
        labels = [str(label) for label in labels]
        if len(labels) != head.num_classes:
            raise ValueError(
                f"`labels` has {len(labels)} names but the model has "
                f"{head.num_classes} outputs: give one name per class."
            )
        label_table = tf.constant(labels)

        def serve(text_a, text_b):
            features = preprocessor(x=(text_a, text_b))
            features = _trim_to_longest(dict(features), sequence_length)
            scores = tf.nn.softmax(tf.cast(model(features, training=False), tf.float32), axis=-1)
            return {"probabilities": scores, "label": tf.gather(label_table, tf.argmax(scores, -1))}

    serve(tf.constant(["a"]), tf.constant(["a"]))  # builds the model and the preprocessor
    signature = [
        tf.TensorSpec(shape=(None,), dtype=tf.string, name="text_a"),
        tf.TensorSpec(shape=(None,), dtype=tf.string, name="text_b"),
    ]
    _write_archive(model, preprocessor, signature, serve, path, labels if label_table is not None else None)
    return path
