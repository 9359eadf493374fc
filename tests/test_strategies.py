"""kt.strategies.cache_features and attach_head: encode once, train the head, export."""

import os

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_export_answers_in_fresh_process

TEXTS = [
    "a great film",
    "a good movie",
    "the plot is dull",
    "awful and boring",
    "not bad , very fine acting !",
    "it was very boring",
]
LABELS = [1, 1, 0, 0, 1, 0]


def frozen(preset, pooling="mean"):
    return kt.encoders.BertEncoder.from_preset(
        preset, sequence_length=24, pooling=pooling, trainable=False
    )


def raw(texts=TEXTS, labels=LABELS):
    return kt.data.from_lists(
        list(texts), None if labels is None else list(labels), class_names=None
    )


def rows(dataset):
    return list(dataset.as_numpy_iterator())


def test_features_equal_the_encoder_outputs_in_order(tiny_preset, tmp_path):
    encoder = frozen(tiny_preset)
    data = kt.data.from_lists(TEXTS, ["pos" if y else "neg" for y in LABELS])
    features = kt.strategies.cache_features(
        encoder, data, cache_dir=tmp_path, batch_size=4, shard_size=4
    )
    got = rows(features)
    expected = np.asarray(encoder(encoder.preprocessor(tf.constant(TEXTS))))
    np.testing.assert_allclose(np.stack([f for f, _ in got]), expected, atol=1e-5)
    assert [int(label) for _, label in got] == LABELS
    assert features.class_names == ["neg", "pos"] and features.num_examples == 6
    assert int(features.cardinality()) == 6
    shards = sorted(
        name for name in os.listdir(features.cache_path) if name.startswith("features-")
    )
    assert shards == ["features-00000.npy", "features-00001.npy"]  # 4 + 2 examples
    np.testing.assert_allclose(
        np.load(os.path.join(features.cache_path, shards[1])), expected[4:], atol=1e-5
    )


def test_second_run_reads_the_cache(tiny_preset, tmp_path, monkeypatch):
    first = kt.strategies.cache_features(frozen(tiny_preset), raw(), cache_dir=tmp_path)

    def no_encoding(*args, **kwargs):
        raise AssertionError("the encoder ran again")

    monkeypatch.setattr(kt.methods.feature_extraction, "_write_cache", no_encoding)
    # A new encoder object from the same checkpoint (as in a new process), the
    # data reshuffled, or already tokenised: the same cache.
    again = kt.strategies.cache_features(frozen(tiny_preset), raw(), cache_dir=tmp_path)
    shuffled = kt.strategies.cache_features(
        frozen(tiny_preset), raw().shuffle(6, seed=1), cache_dir=tmp_path
    )
    encoder = frozen(tiny_preset)
    prepared = kt.data.prepare(raw(), encoder.preprocessor, batch_size=2, shuffle=True, seed=3)
    tokenised = kt.strategies.cache_features(encoder, prepared, cache_dir=tmp_path)
    assert again.cache_path == shuffled.cache_path == tokenised.cache_path == first.cache_path
    assert os.listdir(tmp_path) == [os.path.basename(first.cache_path)]


def test_other_weights_or_data_get_another_cache(tiny_preset, tmp_path):
    encoder = frozen(tiny_preset)
    first = kt.strategies.cache_features(encoder, raw(), cache_dir=tmp_path)
    other_data = kt.strategies.cache_features(encoder, raw(labels=[0] * 6), cache_dir=tmp_path)
    variable = encoder.backbone.transformer_layers[0].weights[0]
    variable.assign(variable + 0.01)
    other_weights = kt.strategies.cache_features(encoder, raw(), cache_dir=tmp_path)
    other_pooling = kt.strategies.cache_features(
        frozen(tiny_preset, "cls"), raw(), cache_dir=tmp_path
    )
    paths = {
        first.cache_path,
        other_data.cache_path,
        other_weights.cache_path,
        other_pooling.cache_path,
    }
    assert len(paths) == 4


def test_per_token_features_and_unlabelled_data(tiny_preset, tmp_path):
    encoder = frozen(tiny_preset, pooling=None)
    features = kt.strategies.cache_features(
        encoder, raw(labels=None), cache_dir=tmp_path, shard_size=3, dtype="float16"
    )
    got = rows(features)
    assert len(got) == 6 and isinstance(got[0], dict)
    inputs = encoder.preprocessor(tf.constant(TEXTS))
    sequence = np.asarray(encoder(inputs))
    for i, element in enumerate(got):
        mask = element["padding_mask"].astype(bool)
        assert mask.sum() == int(np.asarray(inputs["padding_mask"][i]).sum())
        assert element["sequence_output"].dtype == np.float16
        np.testing.assert_allclose(
            element["sequence_output"][mask], sequence[i][: mask.sum()], atol=1e-2
        )
    batch = next(iter(features.padded_batch(6)))
    assert batch["sequence_output"].shape[:2] == batch["padding_mask"].shape


def test_probe_on_cached_features_exports_a_raw_string_model(tiny_preset, tmp_path):
    encoder = frozen(tiny_preset)
    texts = TEXTS * 4
    features = kt.strategies.cache_features(
        encoder, raw(texts, LABELS * 4), cache_dir=tmp_path / "cache"
    )
    head = kt.heads.ClassificationHead(2)
    probe = keras.Sequential([keras.Input((encoder.output_dim,)), head])
    probe.compile(
        optimizer=keras.optimizers.Adam(3e-2), loss=head.default_loss(), metrics=["accuracy"]
    )
    history = probe.fit(features.shuffle(24, seed=0).batch(8), epochs=30, verbose=0)
    assert history.history["accuracy"][-1] == 1.0  # the toy data is separable

    model = kt.strategies.attach_head(encoder, probe)
    vectors = np.asarray(encoder(encoder.preprocessor(tf.constant(TEXTS))))
    np.testing.assert_allclose(kt.predict(model, TEXTS, raw=True), np.asarray(probe(vectors)), atol=1e-5)
    expected = tf.nn.softmax(kt.predict(model, TEXTS, raw=True)).numpy()
    assert_export_answers_in_fresh_process(
        model, TEXTS, tmp_path, labels=["negative", "positive"], expected_probabilities=expected
    )


def test_interrupted_write_leaves_nothing(tiny_preset, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        kt.strategies.cache_features(frozen(tiny_preset), raw(), cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_bad_arguments_name_the_problem(tiny_preset, tmp_path):
    encoder = frozen(tiny_preset)
    with pytest.raises(TypeError, match="BertEncoder"):
        kt.strategies.cache_features(keras.layers.Dense(2), raw(), cache_dir=tmp_path)
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        kt.strategies.cache_features(encoder, TEXTS, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="float16"):
        kt.strategies.cache_features(encoder, raw(), cache_dir=tmp_path, dtype="int8")
    with pytest.raises(ValueError, match="empty"):
        kt.strategies.cache_features(encoder, raw().take(0), cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="not a feature cache"):
        kt.strategies.load_cached_features(tmp_path)
    probe = keras.Sequential([keras.Input((7,)), kt.heads.ClassificationHead(2)])
    with pytest.raises(ValueError, match="size 7 but the encoder outputs 16"):
        kt.strategies.attach_head(encoder, probe)


@pytest.mark.slow
@pytest.mark.shared_data
def test_minilm_probe_on_cached_sst2_features_beats_chance(minilm_path, shared_data, tmp_path):
    rows_ = rows(kt.data.from_tsv(os.path.join(shared_data, "sst2", "dev.tsv")))
    train, dev = rows_[:600], rows_[600:]  # dev sentences: full sentences, both classes
    encoder = kt.encoders.BertEncoder.from_preset(
        minilm_path, sequence_length=64, pooling="mean", trainable=False
    )

    def cached(part):
        return kt.strategies.cache_features(
            encoder,
            raw([t.decode() for t, _ in part], [int(y) for _, y in part]),
            cache_dir=tmp_path,
        )

    head = kt.heads.ClassificationHead(2)
    probe = keras.Sequential([keras.Input((encoder.output_dim,)), head])
    probe.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=head.default_loss(), metrics=["accuracy"]
    )
    probe.fit(cached(train).shuffle(600, seed=0).batch(32), epochs=30, verbose=0)
    accuracy = probe.evaluate(cached(dev).batch(64), verbose=0)[1]
    assert accuracy > 0.7, accuracy  # chance is ~0.5


def test_encoding_pass_shows_a_progress_bar_unless_silent(tiny_preset, tmp_path, capsys):
    encoder = frozen(tiny_preset)
    capsys.readouterr()
    kt.strategies.cache_features(encoder, raw(), cache_dir=tmp_path / "a", batch_size=4, verbose=1)
    shown = capsys.readouterr().out
    assert "6/6" in shown and "/example" in shown  # examples done / total, time per example
    kt.strategies.cache_features(encoder, raw(), cache_dir=tmp_path / "a", verbose=1)
    assert capsys.readouterr().out == ""  # a cache hit encodes nothing
    kt.strategies.cache_features(encoder, raw(), cache_dir=tmp_path / "b", verbose=0)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="`verbose` must be"):
        kt.strategies.cache_features(encoder, raw(), cache_dir=tmp_path / "c", verbose="yes")
