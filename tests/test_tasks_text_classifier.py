"""kt.tasks.TextClassifier: raw strings in (fit / evaluate / predict), export, .keras, kt.predict."""

import os

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import serve_in_fresh_process

TEXTS = [
    "a great film", "a dull film", "the plot is boring", "very good acting",
    "i love it", "awful and bad", "it was fine and good", "not good , very dull",
]
LABELS = ["pos", "neg", "neg", "pos", "pos", "neg", "pos", "neg"]
PAIRS = (["the film is great", "the plot was dull", "a film"], ["a good movie", "it is bad", "the acting"])


@pytest.fixture(scope="module")
def trained(tiny_preset):
    """A tiny-BERT classifier trained on raw strings, through the documented calls."""
    keras.utils.set_random_seed(0)
    clf = kt.tasks.TextClassifier.from_preset(
        tiny_preset, num_classes=2, labels=["neg", "pos"], sequence_length=32
    )
    clf.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = clf.fit(x=TEXTS * 4, y=LABELS * 4, batch_size=8, epochs=6, verbose=0)
    return clf, history


def test_fit_on_raw_strings_learns_and_predicts_probabilities(trained):
    clf, history = trained
    assert history.history["loss"][-1] < history.history["loss"][0]
    probabilities = clf.predict(TEXTS, verbose=0)
    assert probabilities.dtype == np.float32 and probabilities.shape == (8, 2)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-6)
    assert clf.predict_labels(TEXTS, verbose=0) == LABELS
    # evaluate takes label strings too, and integer ids give the same numbers.
    by_name = clf.evaluate(TEXTS, LABELS, verbose=0, return_dict=True)
    by_id = clf.evaluate(TEXTS, [["neg", "pos"].index(y) for y in LABELS], verbose=0, return_dict=True)
    assert by_name["accuracy"] == by_id["accuracy"] == 1.0
    np.testing.assert_allclose(by_name["loss"], by_id["loss"], rtol=1e-6)


def test_export_and_keras_file_answer_like_the_task(trained, tmp_path):
    clf, _ = trained
    texts = TEXTS + ["", "good " * 40]  # an empty text and one cut at sequence_length
    expected = clf.predict(texts, verbose=0)
    path = clf.export(tmp_path / "saved_models" / "clf" / "1")
    answer = serve_in_fresh_process(path, texts)
    assert answer["outputs"] == ["label", "probabilities"] and answer["foreign_modules"] == []
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-5)
    assert answer["label"] == clf.predict_labels(texts, verbose=0)
    with open(os.path.join(path, "assets.extra", "labels.txt"), encoding="utf-8") as f:
        assert f.read().split() == ["neg", "pos"]

    clf.save(tmp_path / "clf.keras")
    loaded = keras.models.load_model(tmp_path / "clf.keras")
    assert type(loaded) is kt.tasks.TextClassifier and loaded.labels == ["neg", "pos"]
    for saved, restored in zip(clf.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(saved))
    # Same weights; a predict function traced for other shapes earlier may round 1 ulp apart.
    np.testing.assert_allclose(loaded.predict(texts, verbose=0), expected, atol=1e-6, rtol=0)
    assert loaded.compiled  # the optimizer comes back: training can go on
    loaded.fit(TEXTS, LABELS, batch_size=8, epochs=1, verbose=0)


def test_kt_predict_answers_with_the_serving_keys(trained, tiny_preset):
    clf, _ = trained
    answer = kt.predict(clf, TEXTS[:3])
    assert sorted(answer) == ["label", "probabilities"]
    assert answer["label"] == LABELS[:3]
    np.testing.assert_allclose(answer["probabilities"], clf.predict(TEXTS[:3], verbose=0), atol=1e-5)
    # A plain Sequential is wrapped; raw=True keeps the model's own outputs (logits).
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16)
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(3)])
    logits = kt.predict(model, TEXTS[:3], raw=True)
    answer = kt.predict(model, TEXTS[:3])
    np.testing.assert_allclose(answer["probabilities"], tf.nn.softmax(logits).numpy(), atol=1e-5)
    assert answer["label"] == [str(i) for i in logits.argmax(-1)]


def test_sequential_model_wraps_into_a_task_and_round_trips(tiny_preset, tmp_path):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="mean")
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(3)])  # never called
    clf = kt.tasks.TextClassifier.from_model(model, labels=["a", "b", "c"])
    assert clf.encoder is encoder and clf.preprocessor is encoder.preprocessor
    assert clf.head is model.layers[1] and clf.output_activation == "softmax"
    expected = tf.nn.softmax(model(encoder.preprocessor(tf.constant(TEXTS)))).numpy()
    np.testing.assert_allclose(clf.predict(TEXTS, verbose=0), expected, atol=1e-6)
    clf.save(tmp_path / "wrapped.keras")
    loaded = keras.models.load_model(tmp_path / "wrapped.keras")
    np.testing.assert_array_equal(loaded.predict(TEXTS, verbose=0), clf.predict(TEXTS, verbose=0))
    assert loaded.labels == ["a", "b", "c"]


def test_meaningless_setups_are_errors(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16)
    with pytest.raises(ValueError, match="embeddings"):
        kt.tasks.TextClassifier.from_model(keras.Sequential([encoder]))
    functional = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no classification head"):
        kt.tasks.TextClassifier.from_model(functional)
    with pytest.raises(ValueError, match="string 'abc'"):
        kt.tasks.TextClassifier(encoder=encoder, num_classes=3, labels="abc")
    with pytest.raises(ValueError, match="duplicate names"):
        kt.tasks.TextClassifier(encoder=encoder, labels=["a", "b", "a"])
    with pytest.raises(ValueError, match="line break"):
        kt.tasks.TextClassifier(encoder=encoder, labels=["a", "b\nc"])
    with pytest.raises(ValueError, match="one name per class"):
        kt.tasks.TextClassifier(encoder=encoder, num_classes=3, labels=["a", "b"])
    token_encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling=None)
    with pytest.raises(ValueError, match="pooling=None"):
        kt.tasks.TextClassifier(encoder=token_encoder, num_classes=2)
    # kt.export.save gets the same checks (issue 22: encoder-only models served "probabilities").
    with pytest.raises(ValueError, match="embeddings"):
        kt.export.save(keras.Sequential([encoder]), "/tmp/kt_never_written/1")
    assert not os.path.exists("/tmp/kt_never_written")


def test_bad_labels_name_the_value_before_training(trained):
    clf, _ = trained
    with pytest.raises(ValueError, match=r"Label 2 at y\[1\] is out of range"):
        clf.fit(TEXTS[:2], [0, 2], verbose=0)
    with pytest.raises(ValueError, match=r"Unknown label 'meh' at y\[1\]"):
        clf.evaluate(TEXTS[:2], ["pos", "meh"], verbose=0)
    with pytest.raises(ValueError, match="Boolean label"):
        clf.fit(TEXTS[:2], [True, False], verbose=0)
    with pytest.raises(ValueError, match="one label per text"):
        clf.fit(TEXTS[:2], [0], verbose=0)
    bad = tf.data.Dataset.from_tensor_slices((TEXTS[:3], [0, 1, 5]))
    with pytest.raises(ValueError, match=r"Label 5 at the dataset's labels\[2\]"):
        clf.evaluate(bad, verbose=0)
    unknown = tf.data.Dataset.from_tensor_slices((TEXTS[:2], ["pos", "great"]))
    with pytest.raises(ValueError, match="Unknown label 'great'"):
        clf.fit(unknown, verbose=0)


def test_datasets_of_strings_and_prepared_batches(trained):
    clf, _ = trained
    expected = clf.predict(TEXTS, verbose=0)
    unbatched = tf.data.Dataset.from_tensor_slices(TEXTS)
    np.testing.assert_allclose(clf.predict(unbatched, verbose=0), expected, atol=1e-6)
    np.testing.assert_allclose(clf.predict(unbatched.batch(3), verbose=0), expected, atol=1e-6)
    labelled = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS)).batch(4)  # label names
    assert clf.evaluate(labelled, verbose=0, return_dict=True)["accuracy"] == 1.0
    # Batches are cut to length buckets (32 tokens padded; these texts need 8).
    features, labels = next(iter(clf.make_dataset(TEXTS, LABELS, batch_size=8)))
    assert features["token_ids"].shape[1] < 32 and labels.dtype == tf.int32
    # A dataset prepared by kt.data.prepare passes through to Keras unchanged.
    prepared = kt.data.prepare(kt.data.from_lists(TEXTS, [["neg", "pos"].index(y) for y in LABELS]),
                               clf.preprocessor, batch_size=4)
    assert clf.evaluate(prepared, verbose=0, return_dict=True)["accuracy"] == 1.0
    np.testing.assert_allclose(clf.predict(prepared.map(lambda x, y: x), verbose=0), expected, atol=1e-6)


def test_multi_label_uses_independent_sigmoids(tiny_preset, tmp_path):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16)
    clf = kt.tasks.TextClassifier(encoder=encoder, labels=["x", "y", "z"], multi_label=True)
    clf.head.output_dense.set_weights([np.zeros((16, 3), "float32"), np.array([3.0, -3.0, 2.0], "float32")])
    probabilities = clf.predict(["a film", "a plot"], verbose=0)
    np.testing.assert_allclose(probabilities, np.tile(1 / (1 + np.exp(-np.array([3.0, -3.0, 2.0]))), (2, 1)),
                               atol=1e-6)
    assert clf.predict_labels(["a film"], verbose=0) == ["x,z"]
    assert clf.predict_labels(["a film"], threshold=0.9, verbose=0) == ["x"]
    assert kt.predict(clf, ["a film"])["label"] == ["x,z"]
    multi_hot = np.array([[1, 0, 1], [0, 1, 0]], "float32")
    (_, by_names), = clf.make_dataset(["a", "b"], [["x", "z"], ["y"]]).take(1)
    (_, by_hot), = clf.make_dataset(["a", "b"], multi_hot).take(1)
    np.testing.assert_array_equal(by_names, multi_hot)
    np.testing.assert_array_equal(by_hot, multi_hot)
    clf.compile()
    assert isinstance(clf.loss, keras.losses.BinaryCrossentropy)
    clf.fit(["a", "b"], [["x", "z"], []], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="Unknown label 'w'"):
        clf.fit(["a"], [["w"]], verbose=0)
    with pytest.raises(ValueError, match="may not contain one"):
        kt.tasks.TextClassifier(encoder=encoder, labels=["a,b", "c"], multi_label=True)


def test_sentence_pairs_train_and_export_two_inputs(tiny_preset, tmp_path):
    clf = kt.tasks.TextClassifier.from_preset(tiny_preset, num_classes=2, labels=["no", "yes"],
                                              sequence_length=32, pooling="cls")
    clf.compile()
    clf.fit(x=PAIRS, y=["yes", "no", "no"], batch_size=2, epochs=1, verbose=0)
    assert clf.pairs is True
    features, _ = next(iter(clf.make_dataset(PAIRS, [1, 0, 0], batch_size=3)))
    assert int(features["segment_ids"].numpy().max()) == 1  # [CLS] a [SEP] b [SEP]
    expected = clf.predict(PAIRS, verbose=0)
    path = clf.export(tmp_path / "nli" / "1")
    served = tf.saved_model.load(path).signatures["serving_default"]
    out = served(text_a=tf.constant(PAIRS[0]), text_b=tf.constant(PAIRS[1]))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not compatible"):  # a scalar is no batch
        served(text_a=tf.constant("a film"), text_b=tf.constant(["a plot"]))
    assert kt.predict(clf, PAIRS)["label"] == clf.predict_labels(PAIRS, verbose=0)
    with pytest.raises(ValueError, match="text pairs"):
        clf.fit(x=PAIRS[0], y=[1, 0, 0], verbose=0)


@pytest.mark.slow
def test_minilm_on_real_sst2_sentences_through_the_documented_calls(minilm_path, tmp_path):
    """The issue's calls, on raw SST-2 sentences (examples/data), scored, exported, reloaded."""
    data = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "data")

    def read(name, limit):
        with open(os.path.join(data, name), encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t") for line in f][1 : limit + 1]
        return [text for text, _ in rows], [["neg", "pos"][int(label)] for _, label in rows]

    texts, labels = read("sst2_train_sample.tsv", 480)
    dev_texts, dev_labels = read("sst2_dev.tsv", 300)
    clf = kt.tasks.TextClassifier.from_preset(
        minilm_path, num_classes=2, labels=["neg", "pos"], sequence_length=64
    )
    clf.compile()
    clf.fit(x=texts, y=labels, batch_size=32, epochs=1, verbose=0)
    predicted = clf.predict_labels(dev_texts, verbose=0)
    accuracy = float(np.mean(np.array(predicted) == np.array(dev_labels)))
    print(f"TextClassifier MiniLM, 480 SST-2 sentences, 1 epoch: dev accuracy {accuracy:.3f}")
    assert accuracy > 0.70, accuracy  # chance is about 0.5

    sample = dev_texts[:20]  # >= 16: the served graph runs in length groups
    expected = clf.predict(sample, verbose=0)
    answer = serve_in_fresh_process(clf.export(tmp_path / "sst2" / "1"), sample)
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-4)
    assert answer["label"] == clf.predict_labels(sample, verbose=0)
    clf.save(tmp_path / "sst2.keras")
    loaded = keras.models.load_model(tmp_path / "sst2.keras")
    for saved, restored in zip(clf.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(saved))
    np.testing.assert_allclose(loaded.predict(sample, verbose=0), expected, atol=1e-5, rtol=0)
    assert loaded.predict_labels(sample, verbose=0) == clf.predict_labels(sample, verbose=0)
