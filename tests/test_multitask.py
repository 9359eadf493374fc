"""kt.data.mix and kt.multitask.MultiTaskModel: schedules, losses, metrics, export."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from conftest import make_tiny_preset
from ktransfer.data.mixing import task_schedule
from harness import assert_config_round_trip
from harness import serve_in_fresh_process
from harness import train_on_one_and_two_devices


# --------------------------------------------------------------------------
# kt.data.mix
# --------------------------------------------------------------------------


def _batches(marker, num_batches, batch_size=2, label_width=None):
    """A batched (features, label) dataset whose token_ids say (task marker, batch index)."""
    n = num_batches * batch_size
    index = np.repeat(np.arange(num_batches), batch_size)
    token_ids = np.stack([np.full(n, marker), index, np.zeros(n)], axis=1).astype("int32")
    features = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    if label_width is None:
        labels = np.full(n, marker % 2, "int32")
    else:
        labels = np.full((n, label_width), 1.0, "float32")
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size)


def _epoch(mixed):
    """[(task_id, marker, batch index)] of one pass, checking each batch is one task's."""
    seen = []
    for features, labels, weights in mixed:
        task_ids = features["task_id"].numpy()
        assert len(set(task_ids)) == 1
        task = mixed.tasks[task_ids[0]]
        tokens = features["token_ids"].numpy()
        assert len(set(tokens[:, 0])) == 1 and len(set(tokens[:, 1])) == 1
        for other in mixed.tasks:  # the batch counts for its own head only
            expected = 1.0 if other == task else 0.0
            np.testing.assert_array_equal(weights[other].numpy(), expected)
            if other != task:
                assert not np.any(labels[other].numpy())
        seen.append((int(task_ids[0]), int(tokens[0, 0]), int(tokens[0, 1])))
    return seen


def test_proportional_shows_every_batch_once_with_its_own_task_id():
    mixed = kt.data.mix({"big": _batches(7, 6), "small": _batches(9, 2)}, seed=3)
    assert mixed.tasks == ["big", "small"] and mixed.counts == {"big": 6, "small": 2}
    assert int(mixed.cardinality()) == 8
    epoch = _epoch(mixed)
    markers = {0: 7, 1: 9}
    assert all(marker == markers[task] for task, marker, _ in epoch)  # task id matches the data
    assert sorted((m, b) for _, m, b in epoch) == [(7, b) for b in range(6)] + [(9, 0), (9, 1)]
    assert [t for t, _, _ in epoch] != [0] * 6 + [1] * 2  # interleaved, not concatenated
    again = kt.data.mix({"big": _batches(7, 6), "small": _batches(9, 2)}, seed=3)
    assert _epoch(again) == epoch  # the seed fixes the order


def test_round_robin_alternates_exactly_and_repeats_smaller_tasks():
    mixed = kt.data.mix(
        {"a": _batches(1, 3), "b": _batches(2, 1), "c": _batches(3, 2)}, strategy="round_robin"
    )
    epoch = _epoch(mixed)
    assert [t for t, _, _ in epoch] == [0, 1, 2] * 3
    assert [b for t, _, b in epoch if t == 0] == [0, 1, 2]
    assert [b for t, _, b in epoch if t == 1] == [0, 0, 0]  # one batch, seen three times
    assert [b for t, _, b in epoch if t == 2] == [0, 1, 0]


def test_temperature_shares_follow_size_to_the_one_over_t():
    sizes = {"a": 40, "b": 10, "c": 2}
    datasets = {name: _batches(i + 1, n) for i, (name, n) in enumerate(sizes.items())}
    mixed = kt.data.mix(datasets, strategy="temperature", temperature=2.0, seed=0)
    root = {name: n**0.5 for name, n in sizes.items()}
    expected = {name: 52 * r / sum(root.values()) for name, r in root.items()}  # 30.2, 15.1, 6.7
    assert mixed.counts == {"a": 30, "b": 15, "c": 7}
    assert all(abs(mixed.counts[t] - expected[t]) < 1 for t in sizes)
    epoch = _epoch(mixed)
    assert {t: sum(1 for i, _, _ in epoch if i == k) for k, t in enumerate(sizes)} == mixed.counts
    proportional = kt.data.mix(datasets, strategy="temperature", temperature=1.0)
    assert proportional.counts == sizes
    flat = task_schedule([40, 10, 2], "temperature", temperature=1e6)
    assert np.bincount(flat).tolist() == [18, 17, 17]  # T -> infinity: uniform


def test_mix_carries_multi_hot_labels_and_rejects_bad_input():
    mixed = kt.data.mix({"single": _batches(1, 2), "multi": _batches(2, 2, label_width=3)})
    spec = mixed.element_spec[1]
    assert spec["multi"].shape.as_list() == [None, 3] and spec["multi"].dtype == tf.float32
    _epoch(mixed)
    with pytest.raises(ValueError, match="strategy"):
        kt.data.mix({"a": _batches(1, 2)}, strategy="uniform")
    with pytest.raises(ValueError, match="identifiers"):
        kt.data.mix({"my task": _batches(1, 2)})
    with pytest.raises(ValueError, match="temperature"):
        kt.data.mix({"a": _batches(1, 2)}, strategy="temperature", temperature=0)
    with pytest.raises(ValueError, match="cardinality"):
        kt.data.mix({"a": _batches(1, 2).filter(lambda x, y: True)})
    with pytest.raises(ValueError, match="different features"):
        words = tf.data.Dataset.from_tensor_slices(({"text": ["a", "b"]}, [0, 1])).batch(2)
        kt.data.mix({"a": _batches(1, 2), "b": words})
    with pytest.raises(TypeError, match="non-empty dict"):
        kt.data.mix([_batches(1, 2)])


# --------------------------------------------------------------------------
# MultiTaskModel
# --------------------------------------------------------------------------

SENTIMENT = (["a great film", "a good movie", "the plot is dull", "awful and boring"] * 3, [1, 1, 0, 0] * 3)
TOPIC = (["the acting", "the plot", "it was fine", "the movie"] * 3, [0, 1, 2, 0] * 3)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return make_tiny_preset(tmp_path_factory.mktemp("tiny_mtl"), dropout=0.0)  # exact gradients


def _model(preset):
    encoder = kt.encoders.BertEncoder.from_preset(preset, sequence_length=16, pooling="mean")
    heads = {"sentiment": kt.heads.ClassificationHead(2), "topic": kt.heads.ClassificationHead(3)}
    return kt.multitask.MultiTaskModel(encoder, heads)


def _mixed(model, batch_size=4, **kwargs):
    preprocessor = model.encoder.preprocessor
    return kt.data.mix(
        {
            "sentiment": kt.data.prepare(kt.data.from_lists(*SENTIMENT), preprocessor, batch_size=batch_size),
            "topic": kt.data.prepare(kt.data.from_lists(*TOPIC), preprocessor, batch_size=batch_size),
        },
        seed=0,
        **kwargs,
    )


def test_loss_weights_scale_each_tasks_gradient_as_computed_by_hand(preset):
    model = _model(preset)
    texts = SENTIMENT[0][:3] + TOPIC[0][:3]
    x = dict(model.encoder.preprocessor(tf.constant(texts)), task_id=tf.constant([0, 0, 0, 1, 1, 1]))
    y = {"sentiment": tf.constant([1, 1, 0, 0, 0, 0]), "topic": tf.constant([0, 0, 0, 0, 1, 2])}
    sample_weight = {
        "sentiment": tf.constant([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]),
        "topic": tf.constant([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
    }
    model(x)
    initial = model.get_weights()
    learning_rate = 0.5
    for weights in ({"sentiment": 1.0, "topic": 1.0}, {"sentiment": 0.25, "topic": 2.0}, {"topic": 0.0}):
        model.set_weights(initial)
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            # Mean cross-entropy over each task's own three examples, weighted.
            sentiment = -tf.nn.log_softmax(outputs["sentiment"])[:3]
            topic = -tf.nn.log_softmax(outputs["topic"])[3:]
            expected_loss = weights.get("sentiment", 1.0) * tf.reduce_mean(
                tf.gather(sentiment, [1, 1, 0], batch_dims=1)
            ) + weights.get("topic", 1.0) * tf.reduce_mean(tf.gather(topic, [0, 1, 2], batch_dims=1))
        variables = model.trainable_variables
        gradients = tape.gradient(expected_loss, variables)
        before = [np.array(v) for v in variables]
        model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss_weights=weights)
        logs = model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
        np.testing.assert_allclose(logs["loss"], float(expected_loss), rtol=1e-5)
        for variable, start, gradient in zip(variables, before, gradients):
            step = start - np.array(variable)
            expected = learning_rate * (0.0 if gradient is None else tf.convert_to_tensor(gradient).numpy())
            np.testing.assert_allclose(step, expected, atol=1e-6, err_msg=variable.path)
        if weights.get("topic") == 0.0:  # a zero weight leaves that head untouched
            kernel = model.heads["topic"].output_dense.kernel
            np.testing.assert_array_equal(np.array(kernel), initial[_index(model, kernel)])


def _index(model, variable):
    return [id(w) for w in model.weights].index(id(variable))


@pytest.fixture(scope="module")
def trained(preset):
    """A model fitted on a round-robin mix, with per-task metrics and loss weights."""
    keras.utils.set_random_seed(0)
    model = _model(preset)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        metrics={"sentiment": ["accuracy"], "topic": ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2)]},
        loss_weights={"topic": 0.5},
    )
    train = _mixed(model, strategy="round_robin")
    history = model.fit(train, epochs=3, verbose=0)
    return model, history.history, train


def test_fit_and_evaluate_report_each_tasks_metrics_over_its_own_batches(trained):
    model, history, train = trained
    names = {"loss", "sentiment_loss", "sentiment_accuracy", "topic_loss", "topic_accuracy",
             "topic_sparse_top_k_categorical_accuracy"}
    assert set(history) == names
    assert history["loss"][-1] < history["loss"][0]
    logs = model.evaluate(train, verbose=0, return_dict=True)
    assert set(logs) == names
    # By hand: each head on its own task's examples only.
    for task, (texts, labels) in {"sentiment": SENTIMENT, "topic": TOPIC}.items():
        logits = kt.predict(model.task_model(task), texts, raw=True)
        accuracy = float(np.mean(np.argmax(logits, -1) == np.array(labels)))
        loss = float(np.mean(-tf.nn.log_softmax(logits).numpy()[np.arange(len(labels)), labels]))
        assert logs[f"{task}_accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert logs[f"{task}_loss"] == pytest.approx(loss, rel=1e-4)
    assert logs["sentiment_accuracy"] > 0.5  # learnt something on its task


def test_keras_file_and_config_round_trip(trained, tmp_path):
    model, _, train = trained
    revived = assert_config_round_trip(model)
    assert revived.tasks == ["sentiment", "topic"]
    path = str(tmp_path / "multitask.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = next(iter(train))[0]
    for task, output in model(x).items():
        np.testing.assert_array_equal(np.asarray(loaded(x)[task]), np.asarray(output))
    # The compile arguments (per-task metrics and loss weights) come back too.
    assert loaded.evaluate(train, verbose=0, return_dict=True) == pytest.approx(
        model.evaluate(train, verbose=0, return_dict=True)
    )


def test_argument_errors_name_the_fix(preset):
    model = _model(preset)
    head = kt.heads.ClassificationHead(2)
    with pytest.raises(TypeError, match="non-empty dict"):
        kt.multitask.MultiTaskModel(model.encoder, [head])
    with pytest.raises(ValueError, match="identifiers"):
        kt.multitask.MultiTaskModel(model.encoder, {"task_id": head})
    with pytest.raises(ValueError, match="own head"):
        kt.multitask.MultiTaskModel(model.encoder, {"a": head, "b": head})
    with pytest.raises(ValueError, match="unknown tasks"):
        model.compile(optimizer="sgd", loss_weights={"sentment": 2.0})
    with pytest.raises(ValueError, match=">= 0"):
        model.compile(optimizer="sgd", loss_weights={"topic": -1.0})
    with pytest.raises(ValueError, match="Unknown task"):
        model.task_model("sentment")
    model.compile(optimizer="sgd")
    single = kt.data.prepare(kt.data.from_lists(*SENTIMENT), model.encoder.preprocessor, batch_size=4)
    with pytest.raises(ValueError, match=r"kt\.data\.mix"):
        model.fit(single, epochs=1, verbose=0)


def test_mirrored_over_two_cpus_matches_single_device(preset):
    difference, change = train_on_one_and_two_devices(
        f"""
        def train(strategy):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                encoder = kt.encoders.BertEncoder.from_preset({preset!r}, sequence_length=16, pooling="mean")
                model = kt.multitask.MultiTaskModel(encoder, heads={{
                    "sentiment": kt.heads.ClassificationHead(2), "topic": kt.heads.ClassificationHead(3)}})
                model.compile(optimizer=keras.optimizers.SGD(0.1), loss_weights={{"topic": 0.5}},
                              metrics={{"sentiment": ["accuracy"], "topic": ["accuracy"]}})
                def task(texts, labels):
                    return kt.data.prepare(kt.data.from_lists(texts * 4, labels * 4), encoder.preprocessor,
                                           batch_size=8, drop_remainder=True)
                data = kt.data.mix({{
                    "sentiment": task(["a great film", "a good movie", "the plot is dull", "awful and boring"], [1, 1, 0, 0]),
                    "topic": task(["the acting", "the plot", "it was fine", "the movie"], [0, 1, 2, 0]),
                }}, seed=0)
                model(next(iter(data))[0])
            start = [np.array(w) for w in model.get_weights()]
            logs = model.fit(data, epochs=2, verbose=0).history
            assert set(logs) >= {{"sentiment_accuracy", "topic_loss"}}, logs
            return start, [np.array(w) for w in model.get_weights()]
        """
    )
    assert difference < 1e-4
    assert change > 1e-3


# --------------------------------------------------------------------------
# Export: one SavedModel, one signature per task
# --------------------------------------------------------------------------

SIGNATURES_SCRIPT = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
path, texts = sys.argv[1], json.loads(sys.argv[2])
loaded = tf.saved_model.load(path)
answers = {}
for name, serve in loaded.signatures.items():
    out = serve(text=tf.constant(texts, tf.string))
    answers[name] = {"probabilities": out["probabilities"].numpy().tolist(),
                     "label": [s.decode() for s in out["label"].numpy()]}
print(json.dumps(answers))
"""


def test_export_answers_every_task_signature_in_a_fresh_process(trained, tmp_path):
    model = trained[0]
    labels = {"sentiment": ["negative", "positive"], "topic": ["acting", "plot", "other"]}
    texts = ["a great film", "the plot was dull"]
    path = kt.export.save(model, tmp_path / "saved_models" / "mtl" / "1", labels=labels)  # dispatches
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", SIGNATURES_SCRIPT, path, json.dumps(texts)],
        capture_output=True, text=True, env=env, cwd="/", timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(answers) == ["sentiment", "serving_default", "topic"]
    for task in model.tasks:
        expected = tf.nn.softmax(kt.predict(model.task_model(task), texts, raw=True)).numpy()
        np.testing.assert_allclose(answers[task]["probabilities"], expected, atol=1e-5)
        assert answers[task]["label"] == [labels[task][i] for i in expected.argmax(-1)]
    assert answers["serving_default"] == answers["sentiment"]  # the first task
    served = serve_in_fresh_process(path, texts)  # the shared single-signature contract
    assert served["foreign_modules"] == [] and served["label"] == answers["sentiment"]["label"]
    with open(os.path.join(path, "assets.extra", "labels_topic.txt"), encoding="utf-8") as f:
        assert f.read().split() == labels["topic"]

    with pytest.raises(TypeError, match=r"dict \{task"):
        kt.export.save_multitask(model, tmp_path / "m" / "1", labels=["negative", "positive"])
    with pytest.raises(ValueError, match="unknown tasks"):
        kt.export.save_multitask(model, tmp_path / "m" / "1", labels={"topics": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="task 'topic' has 2 names"):
        kt.export.save_multitask(model, tmp_path / "m" / "1", labels={"topic": ["a", "b"]})
    with pytest.raises(ValueError, match="save_multitask"):
        kt.export.save(model, tmp_path / "m" / "1", output_activation="softmax")
    with pytest.raises(TypeError, match="MultiTaskModel"):
        kt.export.save_multitask(model.task_model("topic"), tmp_path / "m" / "1")
    assert not os.path.exists(tmp_path / "m" / "1")
