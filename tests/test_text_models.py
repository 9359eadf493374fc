"""Tests for kt.models.TextCNN and kt.models.BiLSTMClassifier (raw strings in)."""

import itertools
import os

import numpy as np
import pytest
import tensorflow as tf

import keras

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_export_answers_in_fresh_process
from harness import assert_keras_round_trip
from ktransfer.tasks.text_cnn import MaxOverTimeConv1D

POSITIVE = ["good", "great", "fine", "superb"]
NEGATIVE = ["bad", "awful", "dull", "boring"]
FILLERS = ["the film is", "a movie that is", "this plot was very", "it is"]
WORDS = POSITIVE + NEGATIVE + "the film is a movie that this plot was very it".split()
MODELS = {
    "text_cnn": lambda encoder: kt.models.TextCNN(
        encoder, 2, filter_sizes=(2, 3), num_filters=8, dropout=0.1, learning_rate=1e-2
    ),
    "bilstm": lambda encoder: kt.models.BiLSTMClassifier(encoder, 2, units=8, dropout=0.1, learning_rate=1e-2),
}


def toy_task():
    """Sentences "<filler> <sentiment word>"; label 1 for positive words."""
    texts, labels = [], []
    for filler, word in itertools.product(FILLERS, POSITIVE + NEGATIVE):
        texts.append(f"{filler} {word}")
        labels.append(int(word in POSITIVE))
    return texts, np.array(labels, "int32")


def toy_vectors(dim=8, seed=0):
    matrix = np.random.default_rng(seed).normal(size=(len(WORDS), dim)).astype(np.float32)
    return kt.WordVectors(WORDS, matrix)


def trained(name, epochs=30):
    texts, labels = toy_task()
    encoder = kt.encoders.WordVectorEncoder(toy_vectors(), standardize="lower", seed=0)
    encoder.adapt(texts)
    model = MODELS[name](encoder)
    batches = tf.data.Dataset.from_tensor_slices((texts, labels)).shuffle(64, seed=0).batch(8)
    model.fit(batches, epochs=epochs, verbose=0)
    return model


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    keras.utils.set_random_seed(0)
    return trained(request.param)


def probabilities(model, texts):
    return tf.nn.softmax(model(tf.constant(texts), training=False)).numpy()


def test_learns_the_toy_task_and_generalises_to_new_fillers(model):
    texts, labels = toy_task()
    assert np.mean(np.argmax(probabilities(model, texts), -1) == labels) == 1.0
    unseen = [f"{filler} {word}" for filler in ("that was", "very") for word in POSITIVE + NEGATIVE]
    predicted = np.argmax(probabilities(model, unseen), -1)
    assert np.mean(predicted == [int(w in POSITIVE) for w in 2 * (POSITIVE + NEGATIVE)]) >= 0.75


def test_prediction_does_not_depend_on_the_batch_padding(model):
    alone = probabilities(model, ["it is superb"])
    padded = probabilities(model, ["it is superb", "a movie that is " * 6 + "dull", ""])
    np.testing.assert_allclose(padded[0], alone[0], rtol=0, atol=1e-6)


def test_keras_round_trip(model, tmp_path):
    inputs = tf.constant(["the film is great", "zorg blorp", "", "it is awful"])
    loaded = assert_keras_round_trip(model, inputs, tmp_path)
    assert loaded.name == model.name


def test_export_answers_raw_strings_in_a_fresh_process(model, tmp_path):
    texts = ["the film is great", "this plot was very boring", "", "unknown words here"]
    expected = probabilities(model, texts)
    _, answer = assert_export_answers_in_fresh_process(
        model, texts, tmp_path, labels=["negative", "positive"], expected_probabilities=expected
    )
    assert answer["label"][:2] == ["positive", "negative"]


def test_frozen_encoder_leaves_only_the_layers_above_trainable(model):
    encoder = model.encoder
    assert isinstance(encoder, kt.encoders.WordVectorEncoder) and not encoder.trainable
    trainable = {id(v) for v in model.trainable_variables}
    assert trainable and not trainable & {id(v) for v in encoder.weights}
    assert len(model.trainable_variables) == len(model.weights) - len(encoder.weights)


def test_is_a_text_classifier_whose_tokenisation_runs_in_tf_data(model):
    texts, labels = toy_task()
    assert isinstance(model, kt.tasks.TextClassifier) and isinstance(model, kt.tasks.Task)
    assert model.preprocessor is model.encoder.preprocessor
    assert isinstance(model.optimizer, keras.optimizers.Adam)  # compiled when built
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 1e-2)
    # A batched dataset of raw strings keeps its batches; the model gets int ids only.
    batches = model.make_dataset(tf.data.Dataset.from_tensor_slices((texts, labels)).batch(8), labelled=True)
    assert int(batches.cardinality()) == 4
    features, y = next(iter(batches))
    assert sorted(features) == ["padding_mask", "token_ids"] and features["token_ids"].dtype == tf.int32
    assert features["token_ids"].shape[0] == 8 and y.numpy().tolist() == labels[:8].tolist()
    # predict (raw strings, tf.data) answers what the model answers when called on them.
    np.testing.assert_allclose(model.predict(texts, verbose=0), probabilities(model, texts), atol=1e-6)
    assert model.predict_labels(["it is superb", "it is awful"], verbose=0) == ["1", "0"]
    # Prepared batches go to Keras as they are.
    prepared = kt.data.prepare(kt.data.from_lists(texts, labels), model.preprocessor, batch_size=16)
    assert model.evaluate(prepared, verbose=0, return_dict=True)["accuracy"] == 1.0


def test_fits_label_names_from_lists_with_the_default_compile():
    keras.utils.set_random_seed(0)
    texts, labels = toy_task()
    names = [["negative", "positive"][label] for label in labels]
    encoder = kt.encoders.WordVectorEncoder(toy_vectors(), standardize="lower", seed=0)
    encoder.adapt(texts)
    model = kt.models.TextCNN(encoder, labels=["negative", "positive"], filter_sizes=(2, 3), num_filters=8,
                              dropout=0.1, learning_rate=2e-2)
    assert model.num_classes == 2
    model.compile()  # "auto": Adam at the task's learning rate, the head's loss, accuracy
    model.fit(x=texts, y=names, batch_size=8, epochs=12, verbose=0)
    assert model.predict_labels(texts, verbose=0) == names


def test_an_encoder_without_sequence_length_pads_each_batch_to_its_longest_text():
    texts, labels = toy_task()
    encoder = kt.encoders.WordVectorEncoder(toy_vectors(), standardize="lower", seed=0, sequence_length=None)
    encoder.adapt(texts)
    model = kt.models.BiLSTMClassifier(encoder, 2, units=4)
    long_text = " ".join(["very"] * 80) + " good"  # each batch: its longest text, nothing cut
    batches = list(model.make_dataset(texts + [long_text], labels.tolist() + [1], batch_size=8, labelled=True))
    widths = [features["token_ids"].shape[1] for features, _ in batches]
    assert widths == [4, 5, 5, 3, 81] and sum(len(y) for _, y in batches) == len(texts) + 1
    model.fit(x=texts, y=labels, batch_size=8, epochs=1, shuffle=True, verbose=0)
    np.testing.assert_allclose(model.predict([long_text], verbose=0), probabilities(model, [long_text]), atol=1e-6)


# ---------------------------------------------------------- MaxOverTimeConv1D


def test_max_over_time_ignores_padding_windows():
    layer = MaxOverTimeConv1D(filter_sizes=(2, 3), num_filters=4)
    short = np.random.default_rng(0).normal(size=(1, 3, 5)).astype("float32")
    padded = np.concatenate([short, np.zeros((1, 4, 5), "float32")], axis=1)
    mask = tf.constant([[True] * 3 + [False] * 4])
    np.testing.assert_allclose(layer(padded, mask=mask), layer(short), rtol=0, atol=1e-6)
    assert layer(padded).shape == (1, 8)
    np.testing.assert_array_equal(layer(padded, mask=tf.zeros((1, 7), bool)), np.zeros((1, 8)))


def test_max_over_time_config_round_trip():
    revived = assert_config_round_trip(MaxOverTimeConv1D(filter_sizes=(2, 5), num_filters=3, activation="tanh"))
    assert revived.filter_sizes == (2, 5) and revived.activation == "tanh"


# --------------------------------------------------------------- bad input


def test_bad_arguments_get_clear_errors():
    texts, _ = toy_task()
    pooled = kt.encoders.WordVectorEncoder(toy_vectors(), pooling="mean")
    pooled.adapt(texts)
    with pytest.raises(ValueError, match="pooling=None"):
        kt.models.TextCNN(pooled, 2)
    with pytest.raises(ValueError, match="adapt"):
        kt.models.BiLSTMClassifier(kt.encoders.WordVectorEncoder(toy_vectors()), 2)
    with pytest.raises(TypeError, match="WordVectorEncoder"):
        kt.models.TextCNN(keras.layers.Dense(3), 2)
    encoder = kt.encoders.WordVectorEncoder(toy_vectors())
    encoder.adapt(texts)
    with pytest.raises(ValueError, match="`num_classes`"):
        kt.models.TextCNN(encoder, 1)
    with pytest.raises(ValueError, match="`units`"):
        kt.models.BiLSTMClassifier(encoder, 2, units=0)
    with pytest.raises(ValueError, match="`learning_rate`"):
        kt.models.BiLSTMClassifier(encoder, 2, learning_rate=-1)
    with pytest.raises(ValueError, match="`filter_sizes`"):
        MaxOverTimeConv1D(filter_sizes=())
    with pytest.raises(ValueError, match="`filter_sizes`"):
        MaxOverTimeConv1D(filter_sizes=(3, 0))
    with pytest.raises(ValueError, match="`activation`"):
        MaxOverTimeConv1D(activation=None)


# ------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.shared_data
def test_text_cnn_on_frozen_glove_beats_chance_on_sst2(shared_data):
    from ktransfer import assets

    if not assets.is_cached("glove50"):
        pytest.skip("GloVe asset not fetched; run `ktransfer assets fetch glove50`")
    keras.utils.set_random_seed(0)
    vectors = kt.WordVectors.load(assets.path("glove50"))
    train = kt.data.from_tsv(os.path.join(shared_data, "sst2", "train.tsv")).take(8000)
    dev = kt.data.from_tsv(os.path.join(shared_data, "sst2", "dev.tsv"))
    encoder = kt.encoders.WordVectorEncoder(vectors, standardize="lower", seed=0)
    coverage = encoder.adapt(train)
    assert coverage["tokens"] > 0.97  # GloVe 6B is lowercased and PTB-tokenised like SST-2
    model = kt.models.TextCNN(encoder, num_classes=2)
    model.fit(train.shuffle(8000, seed=0).batch(50), epochs=1, verbose=0)
    _, accuracy = model.evaluate(dev.batch(256), verbose=0)
    # Dev is 444 positive / 428 negative: chance is 0.51; 1 epoch on 8k phrases gives ~0.72.
    assert accuracy > 0.65
