"""kt.distill: soft_targets (teacher run once, cached) and the Distiller."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import keras

import ktransfer as kt
from conftest import REPO
from harness import assert_config_round_trip
from harness import assert_export_answers_in_fresh_process

TEXTS = [
    "a great film", "the plot is dull", "good acting", "an awful movie !",
    "it was not bad", "very boring", "i love it", "the film was fine but dull",
    "great great great", "bad",
]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]


# --------------------------------------------------------------------------
# The loss against numpy
# --------------------------------------------------------------------------


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def reference_loss(labels, teacher, student, temperature, alpha, soft_loss):
    """The loss written out in numpy (float64)."""
    labels, teacher, student = np.asarray(labels), np.float64(teacher), np.float64(student)
    labelled = labels != -1
    log_p = _log_softmax(student)
    cross_entropy = -log_p[np.arange(len(labels)), np.where(labelled, labels, 0)]
    hard = cross_entropy[labelled].mean() if labelled.any() else 0.0
    if soft_loss == "kl":
        log_t, log_s = _log_softmax(teacher / temperature), _log_softmax(student / temperature)
        soft = (np.exp(log_t) * (log_t - log_s)).sum(-1).mean() * temperature**2
    else:
        soft = ((student - teacher) ** 2).mean(-1).mean()
    return alpha * hard + (1 - alpha) * soft, hard, soft


RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(6, 3)).astype("float32")
TEACHER_LOGITS = (RNG.normal(size=(6, 3)) * 3).astype("float32")
BATCH_LABELS = np.array([2, -1, 0, -1, -1, 1], "int32")  # three unlabelled rows
KERNEL = RNG.normal(size=(3, 3)).astype("float32")
BIAS = np.array([0.1, -0.2, 0.3], "float32")


def linear_student():
    student = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    student.set_weights([KERNEL, BIAS])
    return student


@pytest.mark.parametrize("soft_loss,temperature,alpha", [("kl", 2.0, 0.5), ("kl", 4.0, 0.3), ("mse", 2.0, 0.7)])
def test_loss_equals_numpy_reference(soft_loss, temperature, alpha):
    student_logits = FEATURES @ KERNEL + BIAS
    expected = reference_loss(BATCH_LABELS, TEACHER_LOGITS, student_logits, temperature, alpha, soft_loss)
    actual = kt.distill.distillation_loss(
        BATCH_LABELS, TEACHER_LOGITS, student_logits, temperature, alpha, soft_loss
    )
    np.testing.assert_allclose([float(v) for v in actual], expected, rtol=1e-5)

    # The same numbers through Distiller.evaluate (test_step), one batch of 6.
    distiller = kt.distill.Distiller(linear_student(), temperature, alpha, soft_loss)
    distiller.compile(optimizer="sgd")
    data = tf.data.Dataset.from_tensor_slices(
        (FEATURES, {"label": BATCH_LABELS, "logits": TEACHER_LOGITS})
    ).batch(6)
    result = distiller.evaluate(data, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        [result["loss"], result["hard_loss"], result["soft_loss"]], expected, rtol=1e-5
    )
    labelled = BATCH_LABELS != -1
    accuracy = np.mean(np.argmax(student_logits, -1)[labelled] == BATCH_LABELS[labelled])
    assert result["accuracy"] == pytest.approx(accuracy)


def test_all_unlabelled_batch_trains_on_soft_targets_only():
    labels = np.full(6, -1, "int32")
    student_logits = FEATURES @ KERNEL + BIAS
    loss, hard, soft = kt.distill.distillation_loss(labels, TEACHER_LOGITS, student_logits, 2.0, 0.5)
    assert float(hard) == 0.0
    np.testing.assert_allclose(float(loss), 0.5 * float(soft), rtol=1e-6)
    # alpha = 1 with no labels: nothing to learn, the weights stay put.
    distiller = kt.distill.Distiller(linear_student(), alpha=1.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    distiller.fit(
        tf.data.Dataset.from_tensor_slices((FEATURES, {"label": labels, "logits": TEACHER_LOGITS})).batch(3),
        epochs=2, verbose=0,
    )
    np.testing.assert_array_equal(distiller.student.get_weights()[0], KERNEL)


def test_distiller_arguments_are_checked():
    student = linear_student()
    with pytest.raises(ValueError, match="alpha"):
        kt.distill.Distiller(student, alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        kt.distill.Distiller(student, temperature=0)
    with pytest.raises(ValueError, match="soft_loss"):
        kt.distill.Distiller(student, soft_loss="ce")
    with pytest.raises(TypeError, match="student"):
        kt.distill.Distiller(keras.layers.Dense(2))
    probabilities = keras.Sequential([keras.Input((3,)), kt.heads.ClassificationHead(2, activation="softmax")])
    with pytest.raises(ValueError, match="logits"):
        kt.distill.Distiller(probabilities)
    distiller = kt.distill.Distiller(student)
    distiller.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="'label'"):
        distiller.fit(tf.data.Dataset.from_tensor_slices((FEATURES, BATCH_LABELS)).batch(3), verbose=0)


def test_distiller_config_round_trip():
    distiller = kt.distill.Distiller(linear_student(), temperature=3.0, alpha=0.2, soft_loss="mse")
    revived = assert_config_round_trip(distiller)
    assert (revived.temperature, revived.alpha, revived.soft_loss) == (3.0, 0.2, "mse")


# --------------------------------------------------------------------------
# soft_targets on a tiny BERT teacher
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_teacher(tiny_preset):
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=32, pooling="mean")
    teacher = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    teacher(next(iter(kt.data.prepare(kt.data.from_lists(TEXTS[:2]), encoder.preprocessor))))
    return teacher


def teacher_predict(teacher, texts):
    """The teacher's logits the plain way: every batch padded to sequence_length."""
    preprocessor = teacher.layers[0].preprocessor
    batches = kt.data.prepare(kt.data.from_lists(texts), preprocessor, batch_size=4, bucket=False)
    return teacher.predict(batches, verbose=0)


def collect(targets):
    texts, labels, logits = [], [], []
    for text, target in targets.as_numpy_iterator():
        texts.append(text.decode())
        labels.append(int(target["label"]))
        logits.append(target["logits"])
    return texts, np.array(labels), np.array(logits)


def test_soft_targets_are_the_teachers_logits_and_are_cached(bert_teacher, tmp_path, monkeypatch):
    train = kt.data.from_lists(TEXTS, LABELS)
    targets = kt.distill.soft_targets(bert_teacher, train, batch_size=3, cache_dir=tmp_path)
    assert targets.element_spec[1]["logits"].shape == (2,)
    texts, labels, logits = collect(targets)
    assert texts == TEXTS and labels.tolist() == LABELS  # the dataset's order
    np.testing.assert_allclose(logits, teacher_predict(bert_teacher, TEXTS), atol=1e-5)
    assert targets.class_names == ["0", "1"] and targets.num_labelled == len(TEXTS)

    # A second call, here with the texts reshuffled, reads the cache: no teacher run.
    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher ran although the cache holds its logits")

    monkeypatch.setattr(kt.distill, "_teacher_logits", no_teacher)
    order = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = kt.data.from_lists([TEXTS[i] for i in order], [LABELS[i] for i in order])
    again = kt.distill.soft_targets(bert_teacher, shuffled, batch_size=5, cache_dir=tmp_path)
    assert again.cache_path == targets.cache_path
    texts_again, labels_again, logits_again = collect(again)
    assert texts_again == [TEXTS[i] for i in order]
    assert labels_again.tolist() == [LABELS[i] for i in order]
    np.testing.assert_array_equal(logits_again, logits[order])

    # Unlabelled texts: label -1, same logits, same cache (labels are not in the key).
    unlabelled = kt.distill.soft_targets(bert_teacher, kt.data.from_lists(TEXTS), cache_dir=tmp_path)
    _, labels_none, logits_none = collect(unlabelled)
    assert labels_none.tolist() == [-1] * len(TEXTS) and unlabelled.num_labelled == 0
    np.testing.assert_array_equal(logits_none, logits)
    monkeypatch.undo()

    # Other teacher weights: another cache, other logits.
    head = bert_teacher.layers[-1]
    original = head.get_weights()
    head.set_weights([w * 1.5 + 0.1 for w in original])
    try:
        other = kt.distill.soft_targets(bert_teacher, train, cache_dir=tmp_path)
    finally:
        head.set_weights(original)
    assert other.cache_path != targets.cache_path
    assert not np.allclose(collect(other)[2], logits)


def test_soft_targets_rejects_bad_input(bert_teacher, tmp_path):
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        kt.distill.soft_targets(bert_teacher, TEXTS, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unbatched"):
        kt.distill.soft_targets(bert_teacher, kt.data.from_lists(TEXTS, LABELS).batch(2), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="3 classes"):
        kt.distill.soft_targets(
            bert_teacher, kt.data.from_lists(TEXTS[:3], ["a", "b", "c"]), cache_dir=tmp_path
        )
    multi = kt.data.from_lists(TEXTS[:2], [["a"], ["a", "b"]], multi_label=True)
    with pytest.raises(ValueError, match="multi-hot"):
        kt.distill.soft_targets(bert_teacher, multi, cache_dir=tmp_path)


# --------------------------------------------------------------------------
# Word-vector student learns from a raw-string teacher, and exports
# --------------------------------------------------------------------------

POSITIVE = ["good", "great", "fine", "superb"]
NEGATIVE = ["bad", "awful", "dull", "boring"]
FILLERS = ["the film is", "a movie that is", "this plot was very", "it is"]
WORDS = POSITIVE + NEGATIVE + "the film is a movie that this plot was very it".split()


def toy_encoder(seed):
    matrix = np.random.default_rng(seed).normal(size=(len(WORDS), 8)).astype("float32")
    return kt.encoders.WordVectorEncoder(kt.WordVectors(WORDS, matrix), standardize="lower", seed=seed)


def test_student_learns_from_unlabelled_soft_targets_and_serves(tmp_path):
    texts = [f"{f} {w}" for f in FILLERS for w in POSITIVE + NEGATIVE]
    labels = np.array([int(t.split()[-1] in POSITIVE) for t in texts], "int32")
    keras.utils.set_random_seed(0)
    encoder = toy_encoder(0)
    encoder.adapt(texts)
    teacher = kt.models.TextCNN(encoder, 2, filter_sizes=(2,), num_filters=8, dropout=0.0, learning_rate=1e-2)
    teacher.fit(tf.data.Dataset.from_tensor_slices((texts, labels)).shuffle(64, seed=0).batch(8), epochs=30, verbose=0)
    # The teacher's WordVectorEncoder has a preprocessor: the texts are tokenised
    # in tf.data, and the teacher gets exactly its two inputs (token_ids, padding_mask).
    targets = kt.distill.soft_targets(teacher, kt.data.from_lists(texts), cache_dir=tmp_path)
    assert targets.num_labelled == 0

    student_encoder = toy_encoder(1)
    student_encoder.adapt(texts)
    student = kt.models.TextCNN(student_encoder, 2, filter_sizes=(2, 3), num_filters=4, dropout=0.0)
    before = np.mean(np.argmax(student.predict(tf.constant(texts), verbose=0), -1) == labels)
    distiller = kt.distill.Distiller(student, temperature=2.0, alpha=0.0)  # soft targets only
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(targets.shuffle(64, seed=0).batch(8), epochs=30, verbose=0)
    assert history.history["soft_loss"][-1] < 0.2 * history.history["soft_loss"][0]
    probabilities = tf.nn.softmax(student(tf.constant(texts), training=False)).numpy()
    after = np.mean(np.argmax(probabilities, -1) == labels)
    assert after >= 0.9 > before or after == 1.0, (before, after)

    assert_export_answers_in_fresh_process(
        distiller.student, texts[:4], tmp_path, labels=["negative", "positive"],
        expected_probabilities=probabilities[:4],
    )


# --------------------------------------------------------------------------
# tf.distribute
# --------------------------------------------------------------------------


def test_mirrored_over_two_cpu_devices_matches_single_device():
    """Same global batches on 1 device and on 2 logical CPUs: same weights.

    The labelled rows are spread unevenly between the replicas (3 + 1 of
    each batch of 8), so a replica dividing by its own counts would differ.
    """
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, ktransfer as kt

        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 5)).astype("float32")
        logits = (rng.normal(size=(32, 3)) * 2).astype("float32")
        labels = np.array([0, 1, 2, -1, -1, -1, 2, -1] * 4, "int32")

        def train(strategy, soft_loss):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                student = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
                distiller = kt.distill.Distiller(student, temperature=2.0, alpha=0.5, soft_loss=soft_loss)
                distiller.compile(optimizer=keras.optimizers.SGD(0.5))
            start = [np.array(w) for w in student.get_weights()]
            data = tf.data.Dataset.from_tensor_slices((x, {"label": labels, "logits": logits})).batch(8)
            history = distiller.fit(data, epochs=3, verbose=0, shuffle=False)
            end = [np.array(w) for w in student.get_weights()]
            print("CHANGED", max(float(np.abs(a - b).max()) for a, b in zip(start, end)))
            return end, history.history["loss"][-1]

        mirrored = kt.distribute.get_strategy("mirrored")
        assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
        for soft_loss in ("kl", "mse"):
            (one, loss_one), (two, loss_two) = train(tf.distribute.get_strategy(), soft_loss), train(mirrored, soft_loss)
            print("MAXDIFF", max(float(np.abs(a - b).max()) for a, b in zip(one, two)))
            print("LOSSES", loss_one, loss_two)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for line in result.stdout.splitlines():
        if line.startswith("MAXDIFF"):
            assert float(line.split()[1]) < 1e-5, result.stdout
        if line.startswith("CHANGED"):
            assert float(line.split()[1]) > 1e-2, result.stdout
        if line.startswith("LOSSES"):
            one, two = map(float, line.split()[1:])
            assert two == pytest.approx(one, rel=1e-4), result.stdout
    assert result.stdout.count("MAXDIFF") == 2
