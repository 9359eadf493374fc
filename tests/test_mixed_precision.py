"""kt.train(precision=...): low-precision compute, float32 weights and outputs."""

import numpy as np
import pytest

import keras
import ktransfer as kt
from conftest import make_tiny_preset
from ktransfer.encoders import keras_hub_adapter as adapter
from test_train import write_tiny_project


@pytest.mark.parametrize(
    "precision, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")]
)
def test_mixed_precision_training(tmp_path, precision, compute):
    preset = make_tiny_preset(tmp_path / "preset", dropout=0.0)
    config = write_tiny_project(tmp_path / "project", preset, validation=False, epochs=1,
                                tensorboard=False, precision=precision)
    run = kt.train(config, export=None, verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored

    encoder, head = run.model.layers
    block = encoder.backbone.transformer_layers[0]
    assert block.compute_dtype == compute
    assert all(v.dtype == "float32" for v in run.model.weights)  # master weights stay float32
    features = encoder.preprocessor(["a great film", "awful and boring"])
    hidden = encoder(features)
    assert hidden.dtype == compute
    outputs = run.model(features)
    assert outputs.dtype == "float32"  # the head's logits stay float32
    assert np.isfinite(run.history["loss"][0])
    if precision == "mixed_float16":  # float16 needs loss scaling; Keras adds it
        assert isinstance(run.model.optimizer, keras.optimizers.LossScaleOptimizer)
        # The dynamic loss scale starts high: a step whose float16 gradients
        # overflow is skipped (not applied) while the scale comes down.
        assert 5 <= run.steps <= 8
    else:
        assert run.steps == 8


def test_attention_softmax_and_layer_norm_run_in_float32_under_bfloat16(tmp_path):
    """bf16 compute with float32 reductions: close to the float32 encoder."""
    preset = make_tiny_preset(tmp_path / "preset", dropout=0.0)
    texts = ["a great film", "the plot was dull and very boring"]
    reference_encoder = kt.encoders.BertEncoder.from_preset(preset, pooling="mean")
    reference = reference_encoder(reference_encoder.preprocessor(texts)).numpy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        encoder = kt.encoders.BertEncoder.from_preset(preset, pooling="mean")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    attention = adapter.self_attention_layer(encoder.backbone.transformer_layers[0])
    assert adapter.attention_softmax(attention).compute_dtype == "float32"
    assert attention._dropout_layer.compute_dtype == "bfloat16"
    features = encoder.preprocessor(texts)
    outputs = keras.ops.cast(encoder(features), "float32")
    # bfloat16 keeps ~3 significant digits; the float32 reductions keep the
    # error at that level instead of compounding through the blocks.
    np.testing.assert_allclose(outputs.numpy(), reference, atol=0.05)
    assert np.abs(outputs.numpy() - reference).max() > 0  # it really ran in bf16
