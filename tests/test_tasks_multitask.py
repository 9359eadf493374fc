"""kt.tasks.MultiTask: one encoder, a head per task, raw texts in, one signature per task."""

import numpy as np
import pytest

import keras

import ktransfer as kt
from harness import assert_task_contract

SEQUENCE_LENGTH = 16
BERT_WEIGHTS = 5 + 2 * 16 + 2
TEXTS = ["a great film", "the plot is dull and boring"]
LABELS = {"sentiment": ["neg", "pos"], "topic": ["acting", "plot", "other"]}


def make_task(tiny_preset):
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=SEQUENCE_LENGTH, pooling="mean")
    return kt.tasks.MultiTask(
        encoder,
        heads={"sentiment": kt.heads.ClassificationHead(2), "topic": kt.heads.ClassificationHead(3)},
        labels=LABELS,
    )


def test_contract_and_fresh_process_export_of_every_signature(tiny_preset, tmp_path):
    task, loaded = assert_task_contract(
        lambda: make_task(tiny_preset), TEXTS, {"sentiment": ["pos", "neg"], "topic": [2, 1]},
        {"sentiment": (2, 2), "topic": (2, 3)},
        num_trainable_weights=BERT_WEIGHTS - 2 + 4, num_non_trainable_weights=2, tmp_path=tmp_path,
    )
    assert type(loaded) is kt.tasks.MultiTask and loaded.labels == LABELS
    assert sorted(task.serving_signatures()) == ["sentiment", "serving_default", "topic"]
    labels = loaded.predict_labels(TEXTS)
    assert labels == task.predict_labels(TEXTS) and set(labels["topic"]) <= set(LABELS["topic"])


def test_fits_each_task_on_its_own_texts_and_wraps_a_multitask_model(tiny_preset):
    task = make_task(tiny_preset)
    task.compile(optimizer=keras.optimizers.Adam(1e-2))
    sentiment = (["a great film", "good acting", "a dull film", "awful plot"] * 4, ["pos", "pos", "neg", "neg"] * 4)
    topic = (["the acting", "the plot", "it is"] * 4, [0, 1, 2] * 4)
    history = task.fit({"sentiment": sentiment, "topic": topic}, batch_size=4, epochs=4, seed=0, verbose=0)
    assert sorted(history.history) == ["loss", "sentiment_accuracy", "sentiment_loss", "topic_accuracy", "topic_loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    results = task.evaluate({"sentiment": sentiment, "topic": topic}, verbose=0, return_dict=True)
    assert 0.0 <= results["topic_accuracy"] <= 1.0
    # A MultiTaskModel (the old way) wraps into a task sharing its encoder and heads.
    old = kt.multitask.MultiTaskModel(task.encoder, heads=dict(task.heads))
    wrapped = kt.tasks.MultiTask.from_model(old, labels=LABELS)
    for name, probabilities in wrapped.predict(TEXTS, verbose=0).items():
        np.testing.assert_allclose(probabilities, task.predict(TEXTS, verbose=0)[name], atol=1e-6)
    assert task.task_classifier("topic").predict_labels(TEXTS, verbose=0) == task.predict_labels(TEXTS, verbose=0)["topic"]
    with pytest.raises(ValueError, match="task 'topic' has 2 names"):
        kt.tasks.MultiTask.from_model(old, labels={"topic": ["a", "b"]})
    with pytest.raises(ValueError, match="unknown tasks"):
        task.fit({"topics": topic}, verbose=0)
