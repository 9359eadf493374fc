"""kt.transfer.from_model: reuse a trained encoder for a new task, fixed or not."""

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt

TEXTS = ["a great film", "a good movie", "the plot is dull", "awful and boring"]


@pytest.fixture(scope="module")
def source(tiny_preset):
    """A 2-class model trained so its encoder differs from the checkpoint."""
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="mean")
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    model.compile(optimizer=keras.optimizers.AdamW(3e-2), loss=model.layers[1].default_loss())
    data = kt.data.prepare(
        kt.data.from_lists(TEXTS * 4, [1, 1, 0, 0] * 4), encoder.preprocessor, batch_size=8
    )
    model.fit(data, epochs=2, verbose=0)
    return model


def encode(model, texts=TEXTS):
    encoder = model.layers[0]
    return np.asarray(encoder(encoder.preprocessor(tf.constant(texts))))


def weights(model):
    return [np.array(w) for w in model.get_weights()]


def three_class_data(encoder):
    labels = [0, 1, 2, 2]
    return kt.data.prepare(
        kt.data.from_lists(TEXTS * 4, labels * 4), encoder.preprocessor, batch_size=8
    )


def test_fixed_weights_only_the_new_head_trains(source, tiny_preset):
    target = kt.transfer.from_model(source, new_head=kt.heads.ClassificationHead(3))
    np.testing.assert_allclose(encode(target), encode(source), atol=1e-6)  # the source's encoder
    pretrained = kt.encoders.BertEncoder.from_preset(
        tiny_preset, sequence_length=16, pooling="mean"
    )
    assert (
        np.abs(
            encode(target) - np.asarray(pretrained(pretrained.preprocessor(tf.constant(TEXTS))))
        ).max()
        > 1e-3
    )  # not the checkpoint's
    assert target(target.layers[0].preprocessor(tf.constant(TEXTS))).shape == (4, 3)
    assert {v.path.split("/")[-2] for v in target.trainable_variables} == {"logits"}

    source_before, encoder_before = weights(source), encode(target)
    target.compile(optimizer=keras.optimizers.AdamW(3e-2), loss=target.layers[1].default_loss())
    target.fit(three_class_data(target.layers[0]), epochs=2, verbose=0)
    np.testing.assert_array_equal(encode(target), encoder_before)
    for old, new in zip(source_before, weights(source)):  # the source is untouched
        np.testing.assert_array_equal(old, new)


def test_trainable_copy_fine_tunes_without_touching_the_source(source, tmp_path):
    path = tmp_path / "source.keras"
    source.save(path)
    target = kt.transfer.from_model(str(path), kt.heads.ClassificationHead(3), trainable=1)
    np.testing.assert_allclose(encode(target), encode(source), atol=1e-5)
    assert target.layers[0].trainable_blocks == 1
    before, source_before = encode(target), weights(source)
    target.compile(optimizer=keras.optimizers.AdamW(3e-2), loss=target.layers[1].default_loss())
    target.fit(three_class_data(target.layers[0]), epochs=1, verbose=0)
    assert np.abs(encode(target) - before).max() > 1e-4
    for old, new in zip(source_before, weights(source)):
        np.testing.assert_array_equal(old, new)


def test_lora_source_transfers_merged(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="cls")
    encoder.enable_lora(rank=2)
    source = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    source(encoder.preprocessor(tf.constant(TEXTS)))
    assert len(encoder.lora_layers()) == 4  # query and value of the 2 blocks
    for layer in encoder.lora_layers():  # as if trained: a non-zero update
        layer.lora_kernel_b.assign(np.full(layer.lora_kernel_b.shape, 0.1, "float32"))
    target = kt.transfer.from_model(source, kt.heads.ClassificationHead(4))
    assert not any("lora" in v.path for v in target.weights)
    np.testing.assert_allclose(encode(target), encode(source), atol=1e-5)


def test_bad_arguments_name_the_problem(source, tmp_path):
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="holds no BertEncoder"):
        kt.transfer.from_model(plain, kt.heads.ClassificationHead(2))
    with pytest.raises(TypeError, match="new_head"):
        kt.transfer.from_model(source, new_head=3)
    with pytest.raises(FileNotFoundError, match="No saved model"):
        kt.transfer.from_model(str(tmp_path / "missing.keras"), kt.heads.ClassificationHead(2))
    with pytest.raises(ValueError, match="`trainable` must be"):
        kt.transfer.from_model(source, kt.heads.ClassificationHead(2), trainable=9)
    with pytest.raises(ValueError, match="does not fit the encoder"):
        kt.transfer.from_model(source, keras.layers.Reshape((7, 3)))
