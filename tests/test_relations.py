"""Relation extraction: entity markers in the vocabulary, RelationHead."""

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_export_answers_in_fresh_process
from harness import assert_keras_round_trip


@pytest.fixture(scope="module")
def marked(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=24, pooling=None)
    return encoder, kt.heads.add_entity_markers(encoder)


def test_markers_are_whole_special_tokens_with_new_embedding_rows(marked):
    encoder, new = marked
    old_size = encoder.backbone.vocabulary_size
    assert new.backbone.vocabulary_size == old_size + 4
    tokenizer = new.preprocessor.tokenizer
    ids = [tokenizer.token_to_id(m) for m in kt.heads.relation_head.ENTITY_MARKERS]
    assert ids == list(range(old_size, old_size + 4))
    features = new.preprocessor(tf.constant(["the [E1] film [/E1] is[E2]great [/E2]"]))
    vocab = tokenizer.get_vocabulary()
    tokens = [vocab[i] for i in features["token_ids"][0].numpy() if i]
    assert tokens == ["[CLS]", "the", "[E1]", "film", "[/E1]", "is", "[E2]", "great", "[/E2]", "[SEP]"]
    # Old rows are copied, new rows start at the mean embedding; the rest is equal.
    old_table = np.asarray(encoder.backbone.token_embedding.embeddings)
    new_table = np.asarray(new.backbone.token_embedding.embeddings)
    np.testing.assert_array_equal(new_table[:old_size], old_table)
    np.testing.assert_allclose(new_table[old_size:], np.repeat(old_table.mean(0, keepdims=True), 4, 0), rtol=1e-6)
    plain = encoder.preprocessor(tf.constant(["the film is great"]))
    np.testing.assert_allclose(new(plain), encoder(plain), atol=1e-5)
    assert new.backbone.token_embedding.trainable


def test_add_entity_markers_errors(marked):
    _, new = marked
    with pytest.raises(ValueError, match="already holds"):
        kt.heads.add_entity_markers(new)
    with pytest.raises(TypeError, match="BertEncoder"):
        kt.heads.add_entity_markers(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="4 non-empty strings"):
        kt.heads.add_entity_markers(new, markers=("<e1>", "</e1>"))


def test_head_pools_the_start_markers():
    head = kt.heads.RelationHead(3, marker_ids=(7, 9))
    sequence = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    token_ids = np.array([[1, 7, 2, 9, 3], [9, 3, 7, 0, 0]])
    logits = np.asarray(head([sequence, token_ids]))
    kernel, bias = head.output_dense.get_weights()
    pooled = np.stack([
        np.concatenate([sequence[0, 1], sequence[0, 3]]),
        np.concatenate([sequence[1, 2], sequence[1, 0]]),
    ])
    np.testing.assert_allclose(logits, pooled @ kernel + bias, rtol=1e-5, atol=1e-5)
    assert_config_round_trip(head)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1, "marker_ids": (1, 2)}, "num_classes"),
        ({"num_classes": 3, "marker_ids": (1,)}, "marker_ids"),
        ({"num_classes": 3, "marker_ids": (1, 2), "dropout": -0.1}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.heads.RelationHead(**kwargs)


def test_build_classifier_needs_markers_and_token_output(marked, tiny_preset):
    encoder, _ = marked
    with pytest.raises(ValueError, match="add_entity_markers"):
        kt.heads.RelationHead.build_classifier(encoder, 3)
    pooled = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling="cls")
    with pytest.raises(ValueError, match="pooling=None"):
        kt.heads.RelationHead.build_classifier(pooled, 3)


def toy_relations(n, seed=0):
    """Which entity is a "film" decides the label: the direction matters."""
    rng = np.random.default_rng(seed)
    nouns = ["plot", "acting", "movie"]
    texts, labels = [], []
    for _ in range(n):
        other = rng.choice(nouns)
        label = int(rng.integers(0, 3))  # 0: none, 1: film first, 2: film second
        first, second = {0: (other, rng.choice(nouns)), 1: ("film", other), 2: (other, "film")}[label]
        filler = " ".join(rng.choice(["the", "a", "is", "and", "very"], size=rng.integers(0, 4)))
        texts.append(f"the [E1] {first} [/E1] {filler} [E2] {second} [/E2] .")
        labels.append(label)
    return texts, labels


def test_trains_and_exports(marked, tmp_path):
    keras.utils.set_random_seed(0)
    _, encoder = marked
    model = kt.heads.RelationHead.build_classifier(encoder, 3, dropout=0.0)
    texts, labels = toy_relations(192)
    batches = kt.data.prepare(kt.data.from_lists(texts, labels), encoder.preprocessor, 32, shuffle=True, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(batches, epochs=10, verbose=0)
    test_texts, test_labels = toy_relations(64, seed=1)
    test = kt.data.prepare(kt.data.from_lists(test_texts, test_labels), encoder.preprocessor, 64)
    _, accuracy = model.evaluate(test, verbose=0)
    assert accuracy > 0.9  # chance is 1/3
    features = next(iter(test))[0]
    assert_keras_round_trip(model, features, tmp_path / "keras")
    probabilities = np.asarray(tf.nn.softmax(model(encoder.preprocessor(tf.constant(test_texts[:3])))))
    assert_export_answers_in_fresh_process(
        model, test_texts[:3], tmp_path, labels=["none", "film-first", "film-second"],
        expected_probabilities=probabilities,
    )
