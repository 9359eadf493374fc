"""BertEncoder.enable_lora: only the factors and the head train; save, merge, export."""

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_export_answers_in_fresh_process
from harness import assert_keras_round_trip

TEXTS = ["a great film", "the plot is dull and boring", "not bad , very fine acting !"]
RANK = 4


def toy_data(encoder):
    texts = ["a great film", "a good movie", "the plot is dull", "awful and boring"] * 8
    return kt.data.prepare(
        kt.data.from_lists(texts, [1, 1, 0, 0] * 8), encoder.preprocessor, batch_size=8
    )


@pytest.fixture(scope="module")
def trained(tiny_preset):
    """A LoRA model trained a little, with its weights before and after."""
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=24, pooling="mean")
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    features = encoder.preprocessor(tf.constant(TEXTS))
    plain_output = np.asarray(model(features))
    encoder.enable_lora(rank=RANK)
    lora_output = np.asarray(model(features))
    before = {v.path: np.array(v) for v in model.weights}
    model.compile(optimizer=keras.optimizers.AdamW(3e-2), loss=model.layers[1].default_loss())
    model.fit(toy_data(encoder), epochs=3, verbose=0)
    after = {v.path: np.array(v) for v in model.weights}
    return {
        "encoder": encoder,
        "model": model,
        "features": features,
        "plain_output": plain_output,
        "lora_output": lora_output,
        "before": before,
        "after": after,
    }


def test_only_the_factors_and_the_head_train(trained):
    model, encoder = trained["model"], trained["encoder"]
    # B starts at zero: enabling LoRA leaves the function unchanged.
    np.testing.assert_allclose(trained["lora_output"], trained["plain_output"], atol=1e-6)
    trainable = {v.path for v in model.trainable_variables}
    factors = {p for p in trainable if "lora_kernel" in p}
    assert trainable - factors == {p for p in trainable if "classification_head" in p} != set()
    # A and B for query and value of each of the 2 blocks; Keras' EinsumDense
    # LoRA: A is [hidden=16, heads=2, rank], B is [rank, head_dim=8].
    assert len(factors) == 2 * 2 * 2
    lora_parameters = sum(
        int(np.prod(v.shape)) for v in model.trainable_variables if "lora_kernel" in v.path
    )
    assert lora_parameters == 2 * 2 * (16 * 2 * RANK + RANK * 8)
    changed = {
        p
        for p in trained["before"]
        if not np.array_equal(trained["before"][p], trained["after"][p])
    }
    assert changed == trainable  # every factor moved, every frozen weight stayed (biases too)
    assert encoder.get_config()["lora_rank"] == encoder.lora_rank == RANK
    # The adapted layers are those of the transformer blocks of layer_groups().
    blocks = [layer.name for group in encoder.layer_groups()[1:-1] for layer in group]
    assert sorted(layer.name for layer in encoder.lora_layers()) == ["query", "query", "value", "value"]
    assert all(any(v.path.startswith(f"{block}/") for block in blocks)
               for layer in encoder.lora_layers() for v in layer.trainable_weights)


def test_keras_round_trip_keeps_lora_and_answers(trained, tmp_path):
    model, features = trained["model"], trained["features"]
    loaded = assert_keras_round_trip(model, features, tmp_path, atol=1e-5)
    revived = loaded.layers[0]
    assert revived.get_config()["lora_rank"] == RANK
    assert any("lora_kernel" in v.path for v in revived.trainable_variables)
    assert not any(v.path.endswith("query/kernel") for v in revived.trainable_variables)


def test_config_round_trip(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="cls")
    encoder.enable_lora(rank=2, target_layer_names=["query", "key", "value"])
    revived = assert_config_round_trip(encoder)
    assert revived.get_config()["lora_target_layer_names"] == ["query", "key", "value"]
    assert sum("lora_kernel_a" in v.path for v in revived.weights) == 2 * 3


def test_merged_export_answers_like_the_lora_model(trained, tmp_path):
    model, features = trained["model"], trained["features"]
    merged = kt.strategies.merge_lora(model)
    assert not any("lora" in v.path for v in merged.weights)
    assert len(merged.weights) < len(model.weights)
    np.testing.assert_allclose(np.asarray(merged(features)), np.asarray(model(features)), atol=1e-5)
    expected = tf.nn.softmax(kt.predict(model, TEXTS, raw=True)).numpy()
    assert_export_answers_in_fresh_process(
        merged, TEXTS, tmp_path, labels=["negative", "positive"], expected_probabilities=expected
    )
    assert kt.strategies.merge_lora(merged) is merged  # nothing left to merge
    # One function, three names: its home, the methods package, its old module.
    assert kt.methods.lora.merge_lora is kt.methods.merge_lora is kt.strategies.merge_lora
    assert kt.methods.feature_extraction.merge_lora is kt.methods.lora.merge_lora
    assert kt.methods.lora.has_lora(encoder_of(model)) and not kt.methods.lora.has_lora(encoder_of(merged))


def encoder_of(model):
    return model.layers[0]


def test_bad_arguments_name_the_problem(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16)
    for rank in (0, 2.5, True):
        with pytest.raises(ValueError, match="positive int"):
            encoder.enable_lora(rank=rank)
    with pytest.raises(ValueError, match="adapt nothing"):
        encoder.enable_lora(rank=2, target_layer_names=["no_such_layer"])
    assert encoder.lora_rank is None and encoder.lora_layers() == []
    encoder.enable_lora(rank=2)
    with pytest.raises(ValueError, match="already enabled"):
        encoder.enable_lora(rank=4)


@pytest.mark.slow
def test_minilm_rank_8_trains_2_percent_of_the_parameters(minilm_path):
    encoder = kt.encoders.BertEncoder.from_preset(minilm_path, pooling="mean", load_weights=False)
    total = encoder.backbone.count_params()
    encoder.enable_lora(rank=8)
    lora = sum(int(np.prod(v.shape)) for v in encoder.trainable_variables)
    # 6 blocks x (query, value) x (A [384, 12 heads, 8] + B [8, 32]).
    assert lora == 6 * 2 * (384 * 12 * 8 + 8 * 32) == 445_440
    assert total == 22_713_216 and lora / total < 0.02
