"""Knowledge distillation: a big teacher's soft targets train a small student.

Cross-architecture transfer (Hinton et al. 2015, "Distilling the Knowledge in
a Neural Network"; Tang et al. 2019, "Distilling Task-Specific Knowledge from
BERT into Simple Neural Networks"): a fine-tuned BERT teacher labels texts
with its logits once, and a student of another architecture (e.g. a
`kt.models.TextCNN` over word vectors, ~30x smaller and much faster) learns
from the true labels and the teacher's logits together. Texts nobody
labelled (`kt.data.from_lists(texts)`) get the label -1 and teach through
the teacher's logits alone, so unlabelled in-domain text becomes training
data.

```python
import ktransfer as kt
# teacher: keras.Sequential([BertEncoder(...), ClassificationHead(2)]), fine-tuned
targets = kt.distill.soft_targets(teacher, kt.data.from_lists(texts, labels))
# -> unbatched (text, {"label": int32, "logits": float32[C]}), teacher run once, cached
student = kt.models.TextCNN(word_vector_encoder, num_classes=2)
distiller = kt.distill.Distiller(student, temperature=2.0, alpha=0.5)
distiller.compile(optimizer="adam")
distiller.fit(targets.shuffle(10_000).batch(50), epochs=10)
kt.export.save(distiller.student, "saved_models/sst2_student/1", labels=["negative", "positive"])
```

The soft-target cache is a folder `cache_dir/<key>` holding `logits.npy` and
`manifest.json`; the key hashes the teacher (class, configuration, every
weight, vocabularies) and the tokenised texts as a multiset (the helpers of
`kt.strategies.cache_features`), so a reshuffled copy of the same texts, in
any process, reads the cache instead of running the teacher. Labels are not
part of the key: they are taken from the dataset on every call. The cache
is written by `ktransfer.utils.cache` (shared with `cache_features`).

The loss is `ktransfer.losses.distillation_loss` (also `kt.distill.distillation_loss`).
"""

import hashlib
import logging
import os
import time

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.encoders.keras_hub_adapter import flatten_layers
from ktransfer.losses import SOFT_LOSSES
from ktransfer.losses import UNLABELLED
from ktransfer.losses import distillation_loss
from ktransfer.utils import cache
from ktransfer.utils.replicas import per_replica
from ktransfer.utils.replicas import sum_over_replicas
from ktransfer.utils.replicas import unscale

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
LOGITS_FILE = "logits.npy"


# --------------------------------------------------------------------------
# soft_targets
# --------------------------------------------------------------------------


def soft_targets(teacher, dataset, preprocessor=None, batch_size=64, cache_dir=None):
    """Run `teacher` once over `dataset`; return texts with labels and teacher logits.

    Args:
        teacher: a trained single-label classifier returning logits, e.g.
            `keras.Sequential([BertEncoder, ClassificationHead(n)])` (it takes
            tokenised features), or a model that takes raw strings (a
            `TextCNN`). It runs in inference mode (no dropout).
        dataset: an unbatched `tf.data.Dataset` of `(text, label)` (integer
            class labels, from `kt.data.from_*`) or of `text` alone
            (unlabelled: every label becomes -1).
        preprocessor: what turns a batch of strings into the teacher's
            inputs; defaults to the preprocessor of the teacher's encoder
            (the first `kt.encoders.Encoder` in it, e.g.
            `BertEncoder.preprocessor`). A teacher with no preprocessor is
            fed raw strings.
        batch_size: texts per teacher call. Texts are sorted by length and
            each batch trimmed to a length bucket (`kt.data.prepare`), so
            little time goes into padding.
        cache_dir: where caches live; default `$KTRANSFER_HOME/soft_targets`.

    Returns:
        An unbatched `tf.data.Dataset` of `(text, {"label": int32 scalar,
        "logits": float32 [num_classes]})` in the order of `dataset`, ready
        for `Distiller.fit` after `.shuffle(...).batch(...)`. It carries
        `class_names` (when `dataset` had them), `num_examples`,
        `num_labelled` and `cache_path`.

    Example:

    ```python
    targets = kt.distill.soft_targets(teacher, kt.data.from_tsv("sst2/train.tsv"))
    extra = kt.distill.soft_targets(teacher, kt.data.from_lists(unlabelled_texts))
    train = targets.concatenate(extra).shuffle(100_000, seed=0).batch(50)
    ```
    """
    from ktransfer.encoders.base import find_encoder
    from ktransfer.methods.feature_extraction import examples_digest

    if not isinstance(teacher, keras.Model):
        raise TypeError(
            "`teacher` must be a trained keras.Model that returns logits. "
            f"Received: {type(teacher).__name__}"
        )
    _check_returns_logits(teacher, "teacher")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    if preprocessor is None:
        encoder = find_encoder(teacher)
        preprocessor = encoder.preprocessor if encoder is not None else None
    if preprocessor is not None and not callable(preprocessor):
        raise TypeError("`preprocessor` must be callable, e.g. `encoder.preprocessor`.")
    if cache_dir is None:
        cache_dir = cache.default_cache_dir("soft_targets")
    class_names = getattr(dataset, "class_names", None)
    texts, labels = _read_examples(dataset)

    started = time.perf_counter()
    by_length = np.argsort([len(text) for text in texts], kind="stable")
    batches = _teacher_batches(texts[by_length], preprocessor, batch_size)
    digests = np.empty(len(texts), dtype=object)
    digests[by_length] = _digests(batches, preprocessor)  # a cheap pass: tokenising only
    path = cache.cache_path(
        cache_dir,
        [f"format={CACHE_FORMAT}", _teacher_digest(teacher), examples_digest(list(digests))],
    )
    # The cache holds the logits in the order of the sorted digests: any
    # order of the same texts finds its rows by sorting its own digests.
    by_digest = np.argsort(digests.astype("S16"), kind="stable")
    if not cache.is_cached(path):
        sorted_logits = _teacher_logits(teacher, batches, preprocessor)
        logits = np.empty_like(sorted_logits)
        logits[by_length] = sorted_logits
        if cache.write_once(path, lambda staging: _write_cache(staging, logits[by_digest], class_names)):
            logger.info(
                "soft_targets: ran the teacher in %.1fs -> %s", time.perf_counter() - started, path
            )
    cached = _read_cache(path, len(texts))
    logits = np.empty_like(cached)
    logits[by_digest] = cached
    if class_names and len(class_names) != logits.shape[1]:
        raise ValueError(
            f"The dataset has {len(class_names)} classes {class_names} but the teacher "
            f"returns {logits.shape[1]} logits: distil with the teacher of this task."
        )
    if labels is not None and labels.max() >= logits.shape[1]:
        raise ValueError(
            f"Label {int(labels.max())} is out of range for a teacher with "
            f"{logits.shape[1]} classes."
        )
    if labels is None:
        labels = np.full(len(texts), UNLABELLED, np.int32)
    targets = tf.data.Dataset.from_tensor_slices((texts, {"label": labels, "logits": logits}))
    targets.class_names = list(class_names) if class_names else None
    targets.num_examples = len(texts)
    targets.num_labelled = int(np.sum(labels != UNLABELLED))
    targets.cache_path = path
    return targets


def _check_returns_logits(model, role):
    """A classification head that is not single-label logits is a clear error."""
    from ktransfer.methods.weight_transfer import find_head

    head = find_head(model)
    activation = head.output_activation if head is not None else None
    if head is not None and activation != "softmax":
        raise ValueError(
            f"The {role} must return single-label logits (a ClassificationHead with "
            f"activation=None, multi_label=False); its head maps its outputs with "
            f"{activation!r}. Distillation here matches softmax distributions."
        )


def _read_examples(dataset):
    """`(texts, labels)` numpy arrays of the unbatched `dataset` (labels None if absent)."""
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            "`dataset` must be an unbatched tf.data.Dataset of texts or (text, label) "
            f"pairs, e.g. kt.data.from_lists(texts, labels). Received: {type(dataset).__name__}"
        )
    spec = dataset.element_spec
    text_spec = spec[0] if isinstance(spec, tuple) and len(spec) == 2 else spec
    if not (isinstance(text_spec, tf.TensorSpec) and text_spec.dtype == tf.string
            and text_spec.shape.rank == 0):
        raise ValueError(
            "`dataset` must yield single unbatched texts (scalar tf.string), alone or "
            f"as (text, label). Its element_spec is {spec}. Text pairs are not "
            "supported; call `.unbatch()` on a batched dataset."
        )
    has_labels = text_spec is not spec
    if has_labels and not (spec[1].dtype.is_integer and spec[1].shape.rank == 0):
        raise ValueError(
            "Labels must be integer class indices (one per text); multi-hot labels "
            f"cannot be distilled with a softmax. The label spec is {spec[1]}."
        )
    texts, labels = [], []
    for element in dataset.batch(4096).as_numpy_iterator():
        texts.append(element[0] if has_labels else element)
        if has_labels:
            labels.append(element[1])
    if not texts:
        raise ValueError("The dataset is empty: there is nothing for the teacher to label.")
    texts = np.concatenate(texts).astype(object)
    if not has_labels:
        return texts, None
    labels = np.concatenate(labels).astype(np.int32)
    if labels.min() < UNLABELLED:
        raise ValueError(
            f"Labels must be class indices >= 0 (or -1 for unlabelled). Found {labels.min()}."
        )
    return texts, labels


def _teacher_batches(texts, preprocessor, batch_size):
    """Batches of teacher inputs, in the order of `texts` (bucketed when tokenised)."""
    from ktransfer.data.pipeline import prepare

    dataset = tf.data.Dataset.from_tensor_slices(texts.astype(bytes))
    if preprocessor is None:
        return dataset.batch(batch_size)
    return prepare(dataset, preprocessor, batch_size=batch_size, bucket=True)


def _digests(batches, preprocessor):
    from ktransfer.methods.feature_extraction import example_digests

    if preprocessor is not None:
        return example_digests(batches)
    return [  # a raw-string teacher: the text's bytes are what it reads
        hashlib.blake2b(text, digest_size=16).digest()
        for batch in batches.as_numpy_iterator()
        for text in batch
    ]


def _teacher_digest(teacher):
    """Class, configuration, weights and vocabularies: what decides the logits."""
    try:
        config = keras.saving.serialize_keras_object(teacher)
    except (NotImplementedError, TypeError, ValueError):
        config = {}
    vocabularies = {}  # a lookup table's vocabulary is no weight, but changes the outputs
    for layer in flatten_layers(teacher):
        for sublayer in [layer] + [getattr(layer, "vectorizer", None)]:
            if sublayer is not None and hasattr(sublayer, "get_vocabulary"):
                vocabularies[sublayer.name] = list(sublayer.get_vocabulary())
    return "teacher=" + cache.weights_digest(
        teacher, {"class": type(teacher).__name__, "config": config, "vocabularies": vocabularies}
    )


def _teacher_logits(teacher, batches, preprocessor):
    """float32 `[examples, classes]`: the teacher's logits over `batches`, in order."""
    if preprocessor is None:
        signature = tf.TensorSpec([None], tf.string)
    else:
        # What the preprocessor makes, as the teacher saw it in training (a
        # BERT preprocessor's three inputs, a word-vector preprocessor's two),
        # with free batch and length axes: one trace for every length bucket.
        spec = batches.element_spec
        spec = spec[0] if isinstance(spec, tuple) else spec
        signature = tf.nest.map_structure(
            lambda s: tf.TensorSpec([None] * s.shape.rank, s.dtype), spec
        )
    inputs = (
        element[0] if isinstance(element, tuple) else element
        for element in batches.as_numpy_iterator()
    )
    run = tf.function(  # one trace for every batch and length bucket
        lambda features: teacher(features, training=False), input_signature=[signature]
    )
    outputs = []
    for features in inputs:
        logits = np.asarray(run(features), dtype=np.float32)
        if logits.ndim != 2:
            raise ValueError(
                "The teacher must return logits of shape [batch, classes]. It returned "
                f"shape {logits.shape}."
            )
        outputs.append(logits)
    return np.concatenate(outputs, axis=0)


def _write_cache(folder, logits, class_names):
    """Write the logits into `folder`; return the cache's manifest."""
    np.save(os.path.join(folder, LOGITS_FILE), logits.astype(np.float32))
    return {
        "format": CACHE_FORMAT,
        "num_examples": int(logits.shape[0]),
        "num_classes": int(logits.shape[1]),
        "order": "sorted example digests",
        "class_names": list(class_names) if class_names else None,
    }


def _read_cache(path, num_examples):
    cache.read_manifest(path, CACHE_FORMAT, what="soft-target cache")
    logits = np.load(os.path.join(path, LOGITS_FILE))
    if logits.shape[0] != num_examples:
        raise ValueError(
            f"{path!r} holds {logits.shape[0]} rows for {num_examples} texts: the cache "
            "is damaged; delete the folder to rebuild it."
        )
    return logits


# --------------------------------------------------------------------------
# Distiller
# --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="ktransfer")
class Distiller(keras.Model):
    """Trains `student` on labels and a teacher's logits (`soft_targets`) with `fit`.

    `fit` reads batches of `(inputs, {"label": int [batch], "logits": float
    [batch, classes]})`, as `soft_targets(...).batch(n)` gives; `inputs` is
    whatever the student takes (raw strings for `kt.models.TextCNN`). The
    loss is `alpha * hard + (1 - alpha) * soft` (see `distillation_loss`):
    `alpha=1` is plain training on labels, `alpha=0` learns from the teacher
    alone. Rows labelled -1 (unlabelled transfer text) train on the soft
    part only. Under `tf.distribute` each replica divides by the global
    batch's counts and the replicas' gradients are summed, so a
    `MirroredStrategy` step equals one step on the whole batch.

    `fit` and `evaluate` report `loss`, `hard_loss`, `soft_loss` and
    `accuracy` (of the student on the labelled rows). Calling the distiller
    calls the student; export the student alone:
    `kt.export.save(distiller.student, path, labels=[...])`.

    Args:
        student: a `keras.Model` returning logits `[batch, classes]` (e.g.
            `kt.models.TextCNN`, `BiLSTMClassifier`, or an encoder + head).
        temperature: softens both distributions in the `"kl"` loss (> 0);
            Hinton et al. use 2-20.
        alpha: weight of the hard-label loss, in [0, 1].
        soft_loss: `"kl"` (Hinton et al. 2015) or `"mse"` on logits (Tang et
            al. 2019).

    Example:

    ```python
    import keras, numpy as np, tensorflow as tf, ktransfer as kt
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    distiller = kt.distill.Distiller(student, temperature=2.0, alpha=0.5)
    distiller.compile(optimizer="adam")
    x = np.random.rand(8, 4).astype("float32")
    y = {"label": np.array([0, 1, -1, -1, 0, 1, 0, 1], "int32"),
         "logits": np.random.randn(8, 2).astype("float32")}
    distiller.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1)
    ```
    """

    def __init__(self, student, temperature=2.0, alpha=0.5, soft_loss="kl", **kwargs):
        if not isinstance(student, keras.Model):
            raise TypeError(
                "`student` must be a keras.Model returning logits, e.g. "
                f"kt.models.TextCNN(encoder, num_classes). Received: {type(student).__name__}"
            )
        _check_returns_logits(student, "student")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"`temperature` must be a positive number. Received: {temperature!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(
                "`alpha` (the weight of the hard-label loss) must be a number in [0, 1]. "
                f"Received: {alpha!r}"
            )
        if soft_loss not in SOFT_LOSSES:
            raise ValueError(
                f"`soft_loss` must be one of {SOFT_LOSSES}: 'kl' (KL divergence of the "
                "temperature-softened distributions) or 'mse' (squared error of the "
                f"logits). Received: {soft_loss!r}"
            )
        super().__init__(**kwargs)
        self.student = student
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.soft_loss = soft_loss
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.hard_loss_tracker = keras.metrics.Mean(name="hard_loss")
        self.soft_loss_tracker = keras.metrics.Mean(name="soft_loss")
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.hard_loss_tracker,
            self.soft_loss_tracker,
            self.accuracy_metric,
        ]

    def _replica_losses(self, targets, student_logits):
        """This replica's share of the global batch's loss (the shares add up to it)."""
        labels = tf.reshape(tf.cast(targets["label"], tf.int32), [-1])
        counts = tf.stack(
            [
                tf.reduce_sum(tf.cast(tf.not_equal(labels, UNLABELLED), tf.float32)),
                tf.cast(tf.shape(labels)[0], tf.float32),
            ]
        )
        counts = sum_over_replicas(counts)
        return distillation_loss(
            labels,
            targets["logits"],
            student_logits,
            temperature=self.temperature,
            alpha=self.alpha,
            soft_loss=self.soft_loss,
            labelled_count=counts[0],
            batch_count=counts[1],
        )

    def _unpack(self, data):
        x, targets, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("Distiller does not take sample weights; give (inputs, targets).")
        if not isinstance(targets, dict) or not {"label", "logits"} <= set(targets):
            raise ValueError(
                "Distiller trains on (inputs, {'label': ..., 'logits': ...}) batches, "
                "as kt.distill.soft_targets(teacher, dataset).batch(n) gives. "
                f"Received targets: {targets!r}"
            )
        return x, targets

    def _update_metrics(self, loss, hard, soft, targets, student_logits):
        # The trackers show the global batch's loss: undo the replica share.
        rows = tf.shape(student_logits)[0]
        labels = tf.reshape(tf.cast(targets["label"], tf.int32), [-1])
        labelled = tf.not_equal(labels, UNLABELLED)
        self.loss_tracker.update_state(unscale(loss), sample_weight=rows)
        self.hard_loss_tracker.update_state(unscale(hard), sample_weight=rows)
        self.soft_loss_tracker.update_state(unscale(soft), sample_weight=rows)
        self.accuracy_metric.update_state(
            tf.where(labelled, labels, 0), student_logits, sample_weight=tf.cast(labelled, tf.float32)
        )
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        x, targets = self._unpack(data)
        with tf.GradientTape() as tape:
            student_logits = self.student(x, training=True)
            loss, hard, soft = self._replica_losses(targets, student_logits)
            total = loss
            if self.student.losses:  # weight regularisers, scaled like Keras does
                total = total + per_replica(tf.add_n(self.student.losses))
            scaled = self.optimizer.scale_loss(total)  # loss scaling under mixed precision
        variables = self.student.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update_metrics(loss, hard, soft, targets, student_logits)

    def test_step(self, data):
        x, targets = self._unpack(data)
        student_logits = self.student(x, training=False)
        loss, hard, soft = self._replica_losses(targets, student_logits)
        return self._update_metrics(loss, hard, soft, targets, student_logits)

    def get_config(self):
        return {
            "name": self.name,
            "student": keras.saving.serialize_keras_object(self.student),
            "temperature": self.temperature,
            "alpha": self.alpha,
            "soft_loss": self.soft_loss,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        return cls(**config)
