"""kt.data.prepare: tokenising, bucketing, label checks, errors."""

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt


@pytest.fixture(scope="module")
def encoder(tiny_preset):
    return kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=32)


def texts_of_lengths(lengths):
    return [" ".join(["film"] * n) for n in lengths]


def test_batches_are_trimmed_to_bucket_and_keep_order(encoder):
    texts = texts_of_lengths([3, 5, 2, 20])  # +2 for [CLS]/[SEP]
    batches = list(kt.data.prepare(kt.data.from_lists(texts), encoder.preprocessor, batch_size=2,
                                   bucket=kt.data.bucket_boundaries(32, step=8)))
    assert [b["token_ids"].shape[1] for b in batches] == [8, 24]
    full = encoder.preprocessor(tf.constant(texts))
    np.testing.assert_array_equal(batches[0]["token_ids"], full["token_ids"][:2, :8])
    np.testing.assert_array_equal(batches[1]["token_ids"], full["token_ids"][2:, :24])
    fine = kt.data.prepare(kt.data.from_lists(texts), encoder.preprocessor, batch_size=2,
                           bucket=kt.data.bucket_boundaries(32, step=2))
    assert [b["token_ids"].shape[1] for b in fine] == [8, 22]  # 7 and 22 tokens
    default = kt.data.prepare(kt.data.from_lists(texts), encoder.preprocessor, batch_size=2)
    # The default buckets follow the devices: steps of 2 on this CPU, 8 with a GPU/TPU.
    expected = [8, 22] if kt.data.default_bucket_step() == 2 else [8, 24]
    assert [b["token_ids"].shape[1] for b in default] == expected
    custom = kt.data.prepare(kt.data.from_lists(texts), encoder.preprocessor, batch_size=2, bucket=[10, 20])
    assert [b["token_ids"].shape[1] for b in custom] == [10, 32]
    with pytest.raises(ValueError, match="increasing positive lengths"):
        kt.data.prepare(kt.data.from_lists(texts), encoder.preprocessor, bucket=[0, 4])


def test_bucket_boundaries():
    assert kt.data.bucket_boundaries(128, step=8) == [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128]
    assert kt.data.bucket_boundaries(40, step=8) == [8, 16, 24, 32, 40]
    step = kt.data.default_bucket_step()
    assert kt.data.bucket_boundaries(128) == kt.data.bucket_boundaries(128, step=step)
    assert kt.data.bucket_boundaries(20, step=5) == [5, 10, 15, 20]
    assert kt.data.bucket_boundaries(100, step=2)[:3] == [2, 4, 6]
    assert kt.data.bucket_boundaries(100, step=5)[-5:] == [60, 64, 80, 96, 100]
    for bad in (0, 65, 2.0, True, "8"):
        with pytest.raises(ValueError, match="`step` must be an int from 1 to 64"):
            kt.data.bucket_boundaries(128, step=bad)


def test_default_bucket_step_follows_the_devices(monkeypatch):
    class TPUStrategy:  # what tf.distribute.get_strategy() returns in a TPU scope
        pass

    devices = {"GPU": [], "TPU": []}
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: devices.get(kind, []))
    assert kt.data.default_bucket_step() == 2  # CPU only: fine buckets, no XLA compiles
    assert kt.data.bucket_boundaries(24) == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]
    devices["GPU"] = ["/physical_device:GPU:0"]
    assert kt.data.default_bucket_step() == 8  # Keras compiles with XLA there: fewer shapes
    assert kt.data.bucket_boundaries(24) == [8, 16, 24]
    devices["GPU"] = []
    monkeypatch.setattr(tf.distribute, "get_strategy", lambda: TPUStrategy())
    assert kt.data.default_bucket_step() == 8


def test_trimming_does_not_change_model_outputs(encoder):
    texts = texts_of_lengths([1, 4, 9])
    trimmed = next(iter(kt.data.prepare(kt.data.from_lists(texts), encoder.preprocessor, batch_size=3)))
    padded = encoder.preprocessor(tf.constant(texts))
    encoder_mean = kt.encoders.BertEncoder.from_config({**encoder.get_config(), "pooling": "mean"})
    encoder_mean.set_weights(encoder.get_weights())
    np.testing.assert_allclose(encoder_mean(trimmed), encoder_mean(padded), atol=1e-5)


def test_shuffled_bucketing_groups_lengths_and_sees_every_example_once(encoder):
    lengths = [1, 25] * 64
    texts = [f"{t} {'a' if i % 2 else 'the'}" for i, t in enumerate(texts_of_lengths(lengths))]
    labels = list(range(len(texts)))
    ds = kt.data.prepare(
        kt.data.from_lists(texts, labels, class_names=[str(i) for i in range(len(texts))]),
        encoder.preprocessor, batch_size=8, shuffle=True, seed=3,
    )
    assert int(ds.cardinality()) == 16
    seen, widths = [], []
    for features, label in ds:
        seen += label.numpy().tolist()
        widths.append(features["token_ids"].shape[1])
    assert sorted(seen) == labels
    short = min(b for b in kt.data.bucket_boundaries(32) if b >= 4)  # [CLS] word word [SEP]
    assert widths.count(short) == 8  # short texts were batched together, not padded to 32
    epoch2 = [int(y) for _, ys in ds for y in ys]
    assert epoch2 != seen  # reshuffled each epoch


def test_static_shapes_without_bucketing(encoder):
    ds = kt.data.prepare(
        kt.data.from_lists(["a film"] * 5, [0] * 5), encoder.preprocessor,
        batch_size=2, bucket=False, drop_remainder=True,
    )
    assert ds.element_spec[0]["token_ids"].shape.as_list() == [2, 32]
    assert int(ds.cardinality()) == 2


def test_label_out_of_range_stops_with_a_clear_error(encoder):
    ds = kt.data.prepare(
        tf.data.Dataset.from_tensor_slices((["a film", "the film"], [0, 5])),
        encoder.preprocessor, batch_size=2, num_classes=2,
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="label out of range"):
        list(ds)


def test_bad_inputs(encoder):
    with pytest.raises(ValueError, match="empty"):
        kt.data.prepare(tf.data.Dataset.from_tensor_slices((tf.zeros([0], tf.string), tf.zeros([0], tf.int32))), encoder.preprocessor)
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        kt.data.prepare(["a film"], encoder.preprocessor)
    with pytest.raises(ValueError, match="already batched|element_spec"):
        kt.data.prepare(tf.data.Dataset.from_tensor_slices(["a", "b"]).batch(2), encoder.preprocessor)
    with pytest.raises(ValueError, match="batch_size"):
        kt.data.prepare(kt.data.from_lists(["a"]), encoder.preprocessor, batch_size=0)


def test_string_labels_reach_export_names(encoder):
    ds = kt.data.from_lists(["a great film", "a dull film"], ["pos", "neg"])
    prepared = kt.data.prepare(ds, encoder.preprocessor, batch_size=2)
    assert prepared.class_names == ["neg", "pos"]
    assert [int(y) for y in next(iter(prepared))[1]] == [1, 0]


POSITIVE, NEGATIVE = ["great", "good", "love"], ["dull", "awful", "boring"]
FILLER = ["a", "the", "film", "movie", "plot", "it", "was"]


def toy_pairs(n, seed):
    """(text_a, text_b) pairs labelled by the sentiment word of text_b (a is filler)."""
    rng = np.random.default_rng(seed)
    texts_a, texts_b, labels = [], [], []
    for _ in range(n):
        label = int(rng.integers(2))
        word = rng.choice(POSITIVE if label else NEGATIVE)
        texts_a.append(" ".join(rng.choice(FILLER, 3)))
        texts_b.append(" ".join(list(rng.choice(FILLER, 2)) + [word]))
        labels.append(label)
    return tf.data.Dataset.from_tensor_slices(((texts_a, texts_b), labels))


def test_fit_on_prepared_pairs(tiny_preset):
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=32, pooling="mean")
    pairs = tf.data.Dataset.from_tensor_slices(((["a film", "the plot"], ["a movie", "is dull"]), [1, 0]))
    batch = next(iter(kt.data.prepare(pairs, encoder.preprocessor, batch_size=2)))
    segment_ids = batch[0]["segment_ids"].numpy()
    # One sequence per pair: [CLS] a [SEP] b [SEP], the second text in segment 1.
    np.testing.assert_array_equal(segment_ids[0][:7], [0, 0, 0, 0, 1, 1, 1])
    assert segment_ids[0][7:].max() == 0  # padding

    train = kt.data.prepare(toy_pairs(64, seed=0), encoder.preprocessor, batch_size=16, shuffle=True, seed=0)
    held_out = kt.data.prepare(toy_pairs(32, seed=1), encoder.preprocessor, batch_size=32)
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    model.compile(keras.optimizers.Adam(3e-3), model.layers[-1].default_loss(), metrics=["accuracy"])
    before = model.evaluate(held_out, verbose=0, return_dict=True)
    history = model.fit(train, epochs=5, verbose=0).history
    assert int(model.optimizer.iterations) == 5 * 4
    assert history["loss"][-1] < 0.6 * history["loss"][0], history["loss"]
    after = model.evaluate(held_out, verbose=0, return_dict=True)
    # Held-out pairs (new fillers): chance is 0.5, an untrained model 0.41.
    assert after["accuracy"] >= 0.75 > before["accuracy"], (before, after)
