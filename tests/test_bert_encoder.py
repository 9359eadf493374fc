"""BertEncoder: loading, pooling, trainable toggles, serialisation, errors."""

import json
import os

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_export_answers_in_fresh_process
from harness import assert_keras_round_trip

TEXTS = ["a great film", "the plot is dull and boring", "not bad , very fine acting !"]


def make_model(preset, pooling="mean", trainable=True, sequence_length=32):
    encoder = kt.encoders.BertEncoder.from_preset(
        preset, sequence_length=sequence_length, pooling=pooling, trainable=trainable
    )
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2, dropout=0.1)])
    return encoder, model


def toy_dataset(encoder, n=64, batch_size=8):
    texts = ["a great film", "a good movie", "the plot is dull", "awful and boring"] * (n // 4)
    labels = [1, 1, 0, 0] * (n // 4)
    return kt.data.prepare(
        kt.data.from_lists(texts, labels), encoder.preprocessor, batch_size=batch_size,
        shuffle=True, seed=0,
    )


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooled", None])
def test_pooling_shapes_and_values(tiny_preset, pooling):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling=pooling)
    features = encoder.preprocessor(tf.constant(TEXTS))
    output = np.asarray(encoder(features))
    sequence = np.asarray(encoder.backbone(features)["sequence_output"])
    mask = np.asarray(features["padding_mask"]).astype("float32")
    if pooling is None:
        assert output.shape == (3, 16, 16)
        np.testing.assert_allclose(output, sequence, atol=1e-6)
    elif pooling == "cls":
        np.testing.assert_allclose(output, sequence[:, 0], atol=1e-6)
    elif pooling == "mean":
        expected = (sequence * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        np.testing.assert_allclose(output, expected, atol=1e-5)
    else:
        pooled = np.asarray(encoder.backbone(features)["pooled_output"])
        np.testing.assert_allclose(output, pooled, atol=1e-6)


def test_mean_pooling_ignores_padding(tiny_preset):
    """Padding a text further must not change its mean-pooled vector."""
    short = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=8, pooling="mean")
    longer = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=24, pooling="mean")
    a = np.asarray(short(short.preprocessor(tf.constant(["a great film"]))))
    b = np.asarray(longer(longer.preprocessor(tf.constant(["a great film"]))))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_config_round_trip(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=32, pooling="mean", trainable=1)
    revived = assert_config_round_trip(encoder)
    assert revived.trainable_blocks == 1
    assert revived.pooling == "mean"
    assert revived.preprocessor.sequence_length == 32


def test_keras_round_trip_sequential_and_functional(tiny_preset, tmp_path):
    encoder, model = make_model(tiny_preset, trainable=1)
    features = encoder.preprocessor(tf.constant(TEXTS))
    loaded = assert_keras_round_trip(model, features, tmp_path / "sequential")
    assert loaded.layers[0].trainable_blocks == 1
    # The vocabulary travels with the file: the reloaded preprocessor tokenises the same.
    again = loaded.layers[0].preprocessor(tf.constant(TEXTS))
    np.testing.assert_array_equal(again["token_ids"], features["token_ids"])

    inputs = {
        name: keras.Input(shape=(None,), dtype=dtype, name=name)
        for name, dtype in [("token_ids", "int32"), ("segment_ids", "int32"), ("padding_mask", "bool")]
    }
    encoder2 = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling="cls")
    outputs = kt.heads.ClassificationHead(3)(encoder2(inputs))
    functional = keras.Model(inputs, outputs)
    assert_keras_round_trip(functional, features, tmp_path / "functional")


def _weights(layers):
    return {v.path: np.array(v) for layer in layers for v in layer.weights}


def test_trainable_top_k_changes_exactly_those_weights(tiny_preset):
    encoder, model = make_model(tiny_preset, trainable=1)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss=model.layers[1].default_loss())
    data = toy_dataset(encoder)
    model(next(iter(data))[0])
    before = _weights([encoder])
    model.fit(data, epochs=1, verbose=0)
    after = _weights([encoder])
    top_block = "transformer_layer_1/"
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    for path in before:
        if path.startswith(top_block):
            assert path in changed, f"{path} should train"
        else:
            assert path not in changed, f"{path} should stay frozen"
    assert changed, "nothing trained"


def test_toggle_after_build_changes_what_trains(tiny_preset):
    encoder, model = make_model(tiny_preset, trainable=True)
    data = toy_dataset(encoder)
    model(next(iter(data))[0])
    encoder.trainable = False  # feature extraction: only the head trains
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss=model.layers[1].default_loss())
    before = _weights([encoder, model.layers[1]])
    model.fit(data, epochs=1, verbose=0)
    after = _weights([encoder, model.layers[1]])
    encoder_paths = {v.path for v in encoder.weights}
    for path in before:
        same = np.array_equal(before[path], after[path])
        assert same == (path in encoder_paths), path

    encoder.set_trainable(2)  # all blocks, embeddings frozen
    assert encoder.trainable_blocks == 2
    trainable = {v.path for v in encoder.trainable_weights}
    assert any(p.startswith("transformer_layer_0/") for p in trainable)
    assert not any(p.startswith("token_embedding/") for p in trainable)
    assert not any(p.startswith("pooled_dense/") for p in trainable)  # pooling="mean"
    encoder.trainable = True
    assert encoder.trainable_blocks is None
    assert any(v.path.startswith("token_embedding/") for v in encoder.trainable_weights)


def test_layer_groups_are_embeddings_blocks_pooler(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling="pooled")
    groups = encoder.layer_groups()
    assert len(groups) == encoder.num_blocks + 2 == 4
    assert {layer.name for layer in groups[0]} >= {
        "token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm"
    }
    assert [[layer.name for layer in group] for group in groups[1:]] == [
        ["transformer_layer_0"], ["transformer_layer_1"], ["pooled_dense"]
    ]
    grouped = sorted(v.path for group in groups for layer in group for v in layer.weights)
    assert grouped == sorted(v.path for v in encoder.weights)  # every weight in one group

    def trainable_groups():
        return [any(layer.trainable_weights for layer in group) for group in groups]

    for k, expected in [
        (0, [False, False, False, True]),
        (1, [False, False, True, True]),
        (2, [False, True, True, True]),
        (True, [True, True, True, True]),
        (False, [False, False, False, False]),
    ]:
        encoder.set_trainable(k)
        assert trainable_groups() == expected, k


def test_layerwise_rates_follow_the_layer_groups(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset)
    optimizer = kt.optimizers.layerwise(keras.optimizers.SGD(0.1), encoder, decay=0.5)
    groups = encoder.layer_groups()
    expected = [1 / 4, 1 / 2, 1.0, 1.0]  # embeddings, block 1, block 2 (top), pooler
    for group, multiplier in zip(groups, expected):
        for layer in group:
            for variable in layer.weights:
                assert optimizer.learning_rate_multiplier(variable) == multiplier, variable.path


def test_pooler_trains_only_with_pooled(tiny_preset):
    pooled = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling="pooled", trainable=0)
    assert {v.path.split("/")[0] for v in pooled.trainable_weights} == {"pooled_dense"}
    cls = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling="cls", trainable=0)
    assert cls.trainable_weights == []


def test_export_answers_in_fresh_process(tiny_preset, tmp_path):
    encoder, model = make_model(tiny_preset, sequence_length=24)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss=model.layers[1].default_loss())
    model.fit(toy_dataset(encoder), epochs=1, verbose=0)
    texts = TEXTS + ["a " * 40]  # longer than sequence_length: truncated like in training
    expected = tf.nn.softmax(kt.predict(model, texts, raw=True)).numpy()
    path, answer = assert_export_answers_in_fresh_process(
        model, texts, tmp_path, labels=["negative", "positive"], expected_probabilities=expected
    )
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))

    # A model just loaded from a `.keras` file exports too (nothing built yet).
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    kt.export.save(loaded, tmp_path / "from_keras" / "1", labels=["negative", "positive"])


@pytest.mark.parametrize(
    "preset, error, match",
    [
        ("no_such_bert_preset", ValueError, "Unknown preset"),
        ("./missing/folder", FileNotFoundError, "does not exist"),
        ("", ValueError, "non-empty string"),
    ],
)
def test_bad_presets_name_the_problem(preset, error, match):
    with pytest.raises(error, match=match):
        kt.encoders.BertEncoder.from_preset(preset)


def test_bad_folders_name_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        kt.encoders.BertEncoder.from_preset(str(empty))
    roberta = tmp_path / "roberta"
    roberta.mkdir()
    (roberta / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(ValueError, match="model_type 'bert'"):
        kt.encoders.BertEncoder.from_preset(str(roberta))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_act": "gelu"}))
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        kt.encoders.BertEncoder.from_preset(str(bert))
    (bert / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        kt.encoders.BertEncoder.from_preset(str(bert))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"trainable": "yes"}, "`trainable` must be"),
        ({"trainable": 7}, r"int k in \[0, 2\]"),
        ({"pooling": "max"}, "`pooling` must be one of"),
        ({"sequence_length": 1}, "`sequence_length` must be an int >= 2"),
        ({"sequence_length": 1000}, "exceeds the checkpoint's maximum"),
    ],
)
def test_bad_arguments_name_the_problem(tiny_preset, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.encoders.BertEncoder.from_preset(tiny_preset, **kwargs)


def test_raw_strings_into_the_layer_explain_what_to_do(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset)
    with pytest.raises(TypeError, match="kt|ktransfer.predict"):
        encoder(tf.constant(["a great film"]))


def test_unfetched_asset_says_what_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv("KTRANSFER_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ktransfer assets fetch minilm"):
        kt.encoders.BertEncoder.from_preset("minilm")


def test_exact_gelu_matches_keras_values_and_gradient():
    from ktransfer.encoders.bert_encoder import _approximate_gelu
    from ktransfer.encoders.bert_encoder import _exact_gelu

    x = tf.constant(np.random.default_rng(0).normal(scale=3.0, size=(64, 32)), tf.float32)
    for ours, approximate in ((_exact_gelu, False), (_approximate_gelu, True)):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            mine = ours(x)
            reference = keras.activations.gelu(x, approximate=approximate)
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            tape.gradient(mine, x).numpy(), tape.gradient(reference, x).numpy(), rtol=1e-5, atol=1e-6
        )
        # Half precision in, half precision out, computed in float32.
        half = tf.cast(x, tf.bfloat16)
        with tf.GradientTape() as tape:
            tape.watch(half)
            value = ours(half)
        assert value.dtype == tf.bfloat16 and tape.gradient(value, half).dtype == tf.bfloat16
        expected = keras.activations.gelu(tf.cast(half, tf.float32), approximate=approximate)
        np.testing.assert_allclose(
            tf.cast(value, tf.float32).numpy(), expected.numpy(), rtol=1e-2, atol=1e-2
        )
