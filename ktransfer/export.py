"""Export a trained model as a SavedModel that TF Serving loads, raw strings in.

A thin layer over the tasks (`kt.tasks`), kept for code written against it:
`save(model, path, labels=...)` wraps a Sequential or functional classifier
into a `kt.tasks.TextClassifier` (`TextClassifier.from_model`) and calls its
`export`; a task is exported by its own `export`. `save_multitask`,
`save_tagger` and `save_pair` write multi-task models, token taggers and
sentence-pair models. Every SavedModel is written by
`kt.utils.write_saved_model` (atomic: an interrupted export leaves nothing
half-written). The multi-task, tagger and pair writers delegate to
`kt.tasks.MultiTask`, `TokenClassifier`, `SentenceSimilarity` and
`TextClassifier(pairs=True)`.

The `serving_default` signature of a classifier takes a 1-D `tf.string`
tensor `text` and returns `probabilities` (float32 `[batch, classes]`) and
`label` (string `[batch]`). Tokenisation is inside the graph (KerasHub's
tokenizers are TensorFlow Text ops), so a client needs nothing but
TensorFlow and `tensorflow_text`: `import tensorflow_text` registers the
ops (TF Serving needs a build that includes them).

`SERVING_BUCKET_STEP`, `LENGTH_GROUPS`, `MIN_GROUPED_BATCH` and
`predict_in_length_groups` live in `kt.tasks.serving` and are re-exported here.
"""

from ktransfer._keras import keras

from ktransfer.encoders.base import find_encoder
from ktransfer.tasks.serving import LENGTH_GROUPS  # noqa: F401  (re-exported)
from ktransfer.tasks.serving import MIN_GROUPED_BATCH  # noqa: F401  (re-exported)
from ktransfer.tasks.serving import SERVING_BUCKET_STEP  # noqa: F401  (re-exported)
from ktransfer.tasks.serving import find_classification_head
from ktransfer.tasks.serving import predict_in_length_groups  # noqa: F401  (re-exported)
from ktransfer.tasks.serving import takes_raw_strings
from ktransfer.tasks.task import Task
from ktransfer.tasks.text_classifier import TextClassifier
from ktransfer.utils.saved_model import check_version_folder


def find_preprocessor(model):
    """The preprocessor that goes in front of `model` for raw strings, or None.

    A task's own `preprocessor`; otherwise that of the first
    `kt.encoders.Encoder` in the model. None when the model reads raw
    strings itself (a single string input) or has no encoder.
    """
    if isinstance(model, Task):
        return model.preprocessor
    if takes_raw_strings(model):
        return None
    encoder = find_encoder(model)
    preprocessor = getattr(encoder, "preprocessor", None)
    return preprocessor if callable(preprocessor) else None


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
    path = check_version_folder(path, overwrite)
    if isinstance(model, Task) and not isinstance(model, TextClassifier):
        if preprocessor is not None or labels is not None or output_activation != "auto":
            raise ValueError(
                f"A {type(model).__name__} exports itself with its own labels and "
                "preprocessor: call `model.export(path)` (or kt.export.save(model, path) "
                "without preprocessor / labels / output_activation)."
            )
        return model.export(path, overwrite=overwrite)
    task = TextClassifier.from_model(
        model,
        labels=labels,
        preprocessor="auto" if preprocessor is None else preprocessor,
        output_activation=output_activation,
        threshold=threshold,
    )
    return task.export(path, overwrite=overwrite)


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
    from ktransfer.tasks.multi_task import MultiTask

    if not isinstance(model, MultiTaskModel):
        raise TypeError(
            "`model` must be a kt.multitask.MultiTaskModel; use kt.export.save for a "
            f"single-task model. Received: {type(model).__name__}"
        )
    path = check_version_folder(path, overwrite)
    task = MultiTask.from_model(
        model, labels=labels, preprocessor="auto" if preprocessor is None else preprocessor,
        threshold=threshold,
    )
    return task.export(path, overwrite=overwrite)


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
    from ktransfer.tasks.token_classifier import TokenClassifier

    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    if preprocessor is None and _reads_words(model):  # kt.models.BiLSTMTagger
        from ktransfer.tasks.bilstm_tagger import save_word_tagger

        return save_word_tagger(model, path, tags, overwrite=overwrite)
    path = check_version_folder(path, overwrite)
    task = TokenClassifier.from_model(
        model, tags, preprocessor="auto" if preprocessor is None else preprocessor
    )
    return task.export(path, overwrite=overwrite)


def _reads_words(model):
    """A word-vector tagger (raw strings in, or the `kt.models.BiLSTMTagger` task)."""
    from ktransfer.tasks.bilstm_tagger import BiLSTMTagger

    return takes_raw_strings(model) or isinstance(model, BiLSTMTagger)


def tagger_function(model, tags, preprocessor=None):
    """`fn(sentences) -> {"tags", "words"}`, the graph that `save_tagger` exports.

    Useful to tag sentences in memory, e.g. to evaluate during training.
    """
    from ktransfer.tasks import token_classifier

    if preprocessor is None and _reads_words(model):  # kt.models.BiLSTMTagger
        from ktransfer.tasks.bilstm_tagger import word_tagger_function

        return word_tagger_function(model, tags)
    return token_classifier.tagger_function(model, tags, preprocessor)


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
    from ktransfer.tasks.sentence_similarity import SentenceSimilarity
    from ktransfer.tasks.siamese import SiameseEncoder

    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    path = check_version_folder(path, overwrite)
    if isinstance(model, (SiameseEncoder, SentenceSimilarity)):
        if preprocessor is not None:
            raise ValueError(
                "A SiameseEncoder exports with its own preprocessor: call "
                "kt.export.save_pair(model, path) without `preprocessor`."
            )
        return SentenceSimilarity.from_model(model).export(path, overwrite=overwrite)
    head = find_classification_head(model)
    activation = head.output_activation if head is not None else None
    if activation != "softmax" or getattr(head, "multi_label", False):
        raise ValueError(
            "save_pair exports SiameseEncoder models and single-label pair "
            "classifiers (a ClassificationHead returning logits); this model's "
            f"output activation is {activation!r}. Use `save` for other models."
        )
    task = TextClassifier.from_model(
        model, labels=labels, preprocessor="auto" if preprocessor is None else preprocessor,
        pairs=True,
    )
    return task.export(path, overwrite=overwrite)
