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

from ktransfer.data.pipeline import COARSE_BUCKET_STEP
from ktransfer.data.pipeline import bucket_boundaries
from ktransfer.data.pipeline import token_lengths
from ktransfer.data.pipeline import trim_to_bucket
from ktransfer.data.pipeline import trim_to_longest


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


# Length buckets of the served graph: every 8 tokens up to 64, fixed when the
# model is exported (not chosen from the exporting machine's devices, as
# `kt.data.prepare` chooses for training), so an export answers alike
# wherever it was made; the serving figures in docs/speed.md use these.
SERVING_BUCKET_STEP = COARSE_BUCKET_STEP


LENGTH_GROUPS = 4
MIN_GROUPED_BATCH = 16


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
        model: a trained Keras classifier (encoder + head). A
            `kt.multitask.MultiTaskModel` is written by `save_multitask`
            (then `labels` is a dict `{task: names}`).
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
    from ktransfer.methods.multitask import MultiTaskModel

    if isinstance(model, MultiTaskModel):
        if output_activation != "auto":
            raise ValueError(
                "A MultiTaskModel takes each task's output activation from its head; "
                "call kt.export.save_multitask(model, path, labels={task: [...]}) "
                "without `output_activation`."
            )
        return save_multitask(
            model, path, labels=labels, preprocessor=preprocessor, overwrite=overwrite,
            threshold=threshold,
        )
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    path = _check_version_folder(path, overwrite)
    if preprocessor is None:
        preprocessor = find_preprocessor(model)
    serve, labels = _classifier_function(
        model, lambda features: model(features, training=False), preprocessor, labels,
        output_activation, threshold,
    )
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


def save_multitask(model, path, labels=None, preprocessor=None, overwrite=False, threshold=0.5):
    """Write a `kt.multitask.MultiTaskModel` as ONE SavedModel, a signature per task.

    Every task gets a raw-string signature named after it (`text` in,
    `probabilities` and `label` out, as `save` writes for one task) that
    runs the shared encoder and that task's head; `serving_default` is the
    first task's. The encoder's weights are stored once.

    Args:
        model: a trained `MultiTaskModel`.
        path: the version folder, `saved_models/<name>/<version>`.
        labels: `{task: class names}`; tasks left out get "0", "1", ...
        preprocessor: defaults to the encoder's preprocessor.
        overwrite: replace an existing version folder.
        threshold: for multi-label heads, the probability above which a
            label is returned.

    Returns:
        The absolute path written. `assets.extra/labels_<task>.txt` hold the
        class names (`labels.txt` those of `serving_default`).

    Example:

    ```python
    kt.export.save_multitask(model, "saved_models/reviews/1",
                             labels={"sentiment": ["neg", "pos"], "topic": topics})
    # In any process: import tensorflow as tf, tensorflow_text
    # loaded = tf.saved_model.load("saved_models/reviews/1")
    # loaded.signatures["topic"](text=tf.constant(["a sharp knife"]))["label"]
    ```
    """
    from ktransfer.methods.multitask import MultiTaskModel

    if not isinstance(model, MultiTaskModel):
        raise TypeError(
            "`model` must be a kt.multitask.MultiTaskModel; use kt.export.save for a "
            f"single-task model. Received: {type(model).__name__}"
        )
    if labels is None:
        labels = {}
    if not isinstance(labels, dict):
        raise TypeError(
            "`labels` must be a dict {task: [class names]} for a MultiTaskModel, e.g. "
            f"{{{model.tasks[0]!r}: ['negative', 'positive']}}. Received: {type(labels).__name__}"
        )
    unknown = sorted(set(labels) - set(model.tasks))
    if unknown:
        raise ValueError(f"`labels` names unknown tasks {unknown}; the model's tasks are {model.tasks}.")
    path = _check_version_folder(path, overwrite)
    if preprocessor is None:
        preprocessor = find_preprocessor(model.encoder)
    text = [tf.TensorSpec(shape=(None,), dtype=tf.string, name="text")]
    signatures, label_files = {}, {}
    for task in model.tasks:
        head = model.heads[task]

        def predict(features, head=head):
            return head(model.encoder(features, training=False), training=False)

        serve, task_labels = _classifier_function(
            head, predict, preprocessor, labels.get(task), "auto", threshold, what=f"task {task!r}"
        )
        serve(tf.constant(["a"]))  # builds the model and checks the label count
        signatures[task] = (serve, text)
        label_files[f"labels_{task}.txt"] = task_labels
    first = model.tasks[0]
    signatures = {"serving_default": signatures[first], **signatures}
    label_files["labels.txt"] = label_files[f"labels_{first}.txt"]
    _write_signatures(model, preprocessor, signatures, path, label_files)
    return path


def _classifier_function(model, predict, preprocessor, labels, output_activation, threshold, what="the model"):
    """`serve(text) -> {"probabilities", "label"}` and the label names.

    `model` is what holds the head (its activation and class count decide
    how scores become probabilities); `predict(features)` runs it.
    """
    head_activation, head = _output_activation(model)
    if output_activation == "auto":
        output_activation = head_activation
    if output_activation not in (None, "softmax", "sigmoid"):
        raise ValueError(
            "`output_activation` must be 'auto', 'softmax', 'sigmoid' or None. "
            f"Received: {output_activation!r}"
        )
    multi_label = output_activation == "sigmoid" or bool(getattr(head, "multi_label", False))

    if head is not None:
        num_outputs = head.num_classes
    else:
        num_outputs = _num_outputs(model, preprocessor, predict)
    if labels is None:
        labels = [str(i) for i in range(num_outputs)]
    labels = [str(label) for label in labels]
    if len(labels) != num_outputs:
        raise ValueError(
            f"`labels` for {what} has {len(labels)} names but there are {num_outputs} "
            "outputs: give one name per class, in class-index order."
        )
    sequence_length = getattr(preprocessor, "sequence_length", None)
    label_table = tf.constant(labels)

    def serve(text):
        features = preprocessor(text) if preprocessor is not None else text
        if isinstance(features, dict) and sequence_length and "padding_mask" in features:
            scores = predict_in_length_groups(predict, features, sequence_length)
        else:
            scores = predict(features)
        scores = tf.cast(scores, tf.float32)
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

    return serve, labels


def _num_outputs(model, preprocessor, predict):
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else None
    if shape is not None and shape[-1] is not None:
        return int(shape[-1])
    sample = tf.constant(["a"])
    features = preprocessor(sample) if preprocessor is not None else sample
    return int(predict(features).shape[-1])


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
    if preprocessor is None and _takes_raw_strings(model):  # kt.models.BiLSTMTagger
        from ktransfer.tasks.bilstm_tagger import save_word_tagger

        return save_word_tagger(model, path, tags, overwrite=overwrite)
    path = _check_version_folder(path, overwrite)
    from ktransfer.data.conll import check_tags

    tags = check_tags(tags)
    if preprocessor is None:
        preprocessor = find_preprocessor(model)
    serve = tagger_function(model, tags, preprocessor)
    serve(tf.constant(["a"]))  # builds the model and checks the number of tags
    text = tf.TensorSpec(shape=(None,), dtype=tf.string, name="text")
    _write_archive(model, preprocessor.tokenizer, [text], serve, path, tags)
    return path


def _takes_raw_strings(model):
    """True for models whose vectorisation is inside (word-vector models)."""
    inputs = getattr(model, "inputs", None)
    return bool(inputs) and len(inputs) == 1 and inputs[0].dtype == "string"


def tagger_function(model, tags, preprocessor=None):
    """`fn(sentences) -> {"tags", "words"}`, the graph that `save_tagger` exports.

    Useful to tag sentences in memory, e.g. to evaluate during training.
    """
    from ktransfer.data.conll import align_words

    if preprocessor is None and _takes_raw_strings(model):  # kt.models.BiLSTMTagger
        from ktransfer.tasks.bilstm_tagger import word_tagger_function

        return word_tagger_function(model, tags)
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
        features = trim_to_longest(features, sequence_length, SERVING_BUCKET_STEP)
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
    _write_signatures(
        model,
        preprocessing,
        {"serving_default": (serve, input_signature)},
        path,
        {"labels.txt": labels} if labels is not None else {},
    )


def _write_signatures(model, preprocessing, signatures, path, label_files):
    """Write `{name: (fn, input_signature)}` as signatures into `path` atomically.

    `label_files` maps file names to label lists, written one per line into
    `assets.extra/` beside the graph (for humans and serving tools).
    """
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.tmp-")
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        if isinstance(preprocessing, keras.layers.Layer):
            archive.track(preprocessing)
        for name, (serve, input_signature) in signatures.items():
            archive.add_endpoint(
                name=name,
                fn=getattr(serve, "python_function", serve),
                input_signature=list(input_signature),
            )
        archive.write_out(staging, verbose=False)
        if label_files:
            os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
        for file_name, labels in label_files.items():
            with open(os.path.join(staging, "assets.extra", file_name), "w", encoding="utf-8") as f:
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
    from ktransfer.tasks.siamese import PairPreprocessor
    from ktransfer.tasks.siamese import SiameseEncoder

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
            features = trim_to_longest(preprocessor((text_a, text_b)), sequence_length, SERVING_BUCKET_STEP)
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
            features = trim_to_longest(dict(features), sequence_length, SERVING_BUCKET_STEP)
            scores = tf.nn.softmax(tf.cast(model(features, training=False), tf.float32), axis=-1)
            return {"probabilities": scores, "label": tf.gather(label_table, tf.argmax(scores, -1))}

    serve(tf.constant(["a"]), tf.constant(["a"]))  # builds the model and the preprocessor
    signature = [
        tf.TensorSpec(shape=(None,), dtype=tf.string, name="text_a"),
        tf.TensorSpec(shape=(None,), dtype=tf.string, name="text_b"),
    ]
    _write_archive(model, preprocessor, signature, serve, path, labels if label_table is not None else None)
    return path
