"""What ktransfer relies on in KerasHub and Keras internals, pinned.

`ktransfer/encoders/keras_hub_adapter.py` is the one module that touches
private KerasHub / Keras attributes. These tests fail, naming the attribute,
when an upgrade of KerasHub (0.32 here) or Keras (3.x) renames or changes
one, and check that each adapter function has its intended effect on a tiny
backbone.
"""

import numpy as np
import pytest

import keras
import keras_hub

from ktransfer.encoders import keras_hub_adapter as adapter


def tiny_backbone(num_layers=2, seed=0, dropout=0.0):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=16,
        dropout=dropout,
    )


def tiny_inputs():
    token_ids = np.array([[2, 7, 8, 9, 3, 0], [2, 10, 3, 0, 0, 0]], "int32")
    return {
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": (token_ids != 0).astype("int32"),
    }


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone()


# --- the attributes the adapter reads ------------------------------------------


def test_bert_backbone_has_the_layers_the_groups_name(backbone):
    for name in adapter.EMBEDDING_LAYER_NAMES + (adapter.POOLER_LAYER_NAME,):
        assert isinstance(getattr(backbone, name), keras.layers.Layer), name
    assert len(backbone.transformer_layers) == backbone.num_layers == 2
    assert all(
        isinstance(block, keras_hub.layers.TransformerEncoder) for block in backbone.transformer_layers
    )
    assert callable(backbone.enable_lora) and callable(backbone.default_lora_layer_names)


def test_transformer_encoder_private_attributes(backbone):
    block = backbone.transformer_layers[0]
    assert isinstance(block._self_attention_layer, keras.layers.MultiHeadAttention)
    assert isinstance(block._feedforward_intermediate_dense, keras.layers.Dense)
    assert hasattr(block, "activation")
    softmax = block._self_attention_layer._softmax
    assert isinstance(softmax, keras.layers.Softmax) and hasattr(softmax, "axis")


def test_keras_private_methods_the_adapter_calls(backbone):
    assert callable(backbone._flatten_layers)
    optimizer = keras.optimizers.Adam()
    optimizer.build(backbone.trainable_variables)
    assert isinstance(optimizer._trainable_variables_indices, dict)
    assert optimizer._var_key(backbone.trainable_variables[0]) in optimizer._trainable_variables_indices


def test_compile_metrics_is_what_a_model_updates_and_reports():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    assert model._compile_metrics is not None  # the private attribute set_compile_metrics replaces
    own = keras.metrics.MeanSquaredError(name="own_mse")
    adapter.set_compile_metrics(model, own)
    x, y = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "own_mse"}
    np.testing.assert_allclose(logs["own_mse"], logs["loss"], rtol=1e-5)


def test_keras_optimizer_internals_that_ktransfer_optimizers_override_or_call():
    """`FusedAdamW` overrides and `LayerwiseOptimizer` calls these (ktransfer/optimizers.py)."""
    for name in (
        "_apply_weight_decay",
        "_distributed_tf_update_step",
        "_get_variable_index",
        "_use_weight_decay",
        "_var_key",
        "_filter_empty_gradients",
        "_check_variables_are_known",
        "_clip_gradients",
        "_get_current_learning_rate",
    ):
        assert callable(getattr(keras.optimizers.AdamW, name, None)), name
    optimizer = keras.optimizers.AdamW(1e-3)
    variable = keras.Variable(np.ones((2, 2), "float32"))
    optimizer.build([variable])
    optimizer.exclude_from_weight_decay(var_names=["bias"])  # LayerwiseOptimizer copies these
    for name in ("_momentums", "_velocities", "_iterations", "_learning_rate",
                 "_trainable_variables", "_distribution_strategy",
                 "_exclude_from_weight_decay", "_exclude_from_weight_decay_pattern"):
        assert hasattr(optimizer, name), name


# --- what each adapter function does ---------------------------------------------


def test_layer_groups_cover_every_weight_once_in_order(backbone):
    groups = adapter.backbone_layer_groups(backbone)
    assert len(groups) == backbone.num_layers + 2
    assert [layer.name for layer in groups[0]] == list(adapter.EMBEDDING_LAYER_NAMES)
    assert [group[0].name for group in groups[1:-1]] == ["transformer_layer_0", "transformer_layer_1"]
    assert [layer.name for layer in groups[-1]] == ["pooled_dense"]
    grouped = [v.path for group in groups for layer in group for v in layer.weights]
    assert len(grouped) == len(set(grouped))
    assert sorted(grouped) == sorted(v.path for v in backbone.weights)  # nothing left out


def test_flatten_layers(backbone):
    everything = adapter.flatten_layers(backbone)
    assert everything[0] is backbone
    assert adapter.flatten_layers(backbone, include_self=False)[0] is not backbone
    children = adapter.flatten_layers(backbone, include_self=False, recursive=False)
    block = backbone.transformer_layers[0]
    attention = adapter.self_attention_layer(block)
    assert block in children and attention not in children
    assert attention in everything


def test_optimizer_is_built_for(backbone):
    optimizer = keras.optimizers.Adam()
    optimizer.build(backbone.transformer_layers[1].trainable_variables)
    assert adapter.optimizer_is_built_for(optimizer, backbone.transformer_layers[1].trainable_variables)
    assert not adapter.optimizer_is_built_for(optimizer, backbone.trainable_variables)
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
    scaled.build(backbone.pooled_dense.trainable_variables)
    assert adapter.optimizer_is_built_for(scaled, backbone.pooled_dense.trainable_variables)


def test_set_feedforward_activation_is_what_the_block_runs():
    backbone = tiny_backbone(num_layers=1)
    block = backbone.transformer_layers[0]
    calls = []

    def counting_gelu(x):
        calls.append(1)
        return keras.activations.gelu(x, approximate=False)

    adapter.set_feedforward_activation(block, counting_gelu)
    backbone(tiny_inputs())
    assert calls  # the feed-forward dense applied it
    assert block.activation is counting_gelu
    assert adapter.feedforward_intermediate_dense(block).activation is counting_gelu


def test_softmax_in_float32_is_used_by_the_attention():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        # With dropout 0 Keras' attention calls the fused ops.dot_product_attention
        # and no softmax layer at all; BERT checkpoints have attention dropout.
        backbone = tiny_backbone(num_layers=2, dropout=0.1)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    attention = adapter.self_attention_layer(backbone.transformer_layers[0])
    assert adapter.attention_softmax(attention).compute_dtype == "bfloat16"
    weights = [v.path for v in backbone.weights]
    assert adapter.softmax_in_float32(backbone) == 2
    assert [v.path for v in backbone.weights] == weights  # weightless: nothing new to save
    softmax = adapter.attention_softmax(attention)
    assert softmax.compute_dtype == "float32"
    assert adapter.softmax_in_float32(backbone) == 0  # already float32: left alone
    # The attention really calls the layer set in its place.
    seen = []
    original_call = softmax.call

    def recording_call(inputs, mask=None):
        seen.append(inputs.dtype)
        return original_call(inputs, mask=mask)

    softmax.call = recording_call
    outputs = backbone(tiny_inputs(), training=False)
    assert seen == ["float32"]  # the bf16 scores are normalised in float32
    assert outputs["sequence_output"].dtype == "bfloat16"


def test_copy_backbone_computes_the_same_function_with_lora_merged():
    source = tiny_backbone(num_layers=2, seed=3)
    source.enable_lora(2)
    for layer in adapter.flatten_layers(source):
        if getattr(layer, "lora_enabled", False):  # non-zero factors: W + A B differs from W
            layer.lora_kernel_b.assign(np.full(layer.lora_kernel_b.shape, 0.1, "float32"))
    copy = adapter.copy_backbone(source)
    assert copy is not source
    assert not any(getattr(layer, "lora_enabled", False) for layer in adapter.flatten_layers(copy))
    expected = source(tiny_inputs())["sequence_output"]
    np.testing.assert_allclose(copy(tiny_inputs())["sequence_output"], expected, atol=1e-5)


# --- TransformerDecoder: warm start and sharing (kt.tasks.Seq2Seq) ---------------


def tiny_decoder(backbone, seed=5):
    keras.utils.set_random_seed(seed)
    decoder = keras_hub.layers.TransformerDecoder(
        intermediate_dim=backbone.intermediate_dim, num_heads=backbone.num_heads,
        layer_norm_epsilon=1e-12,
    )
    decoder.build((None, 6, backbone.hidden_dim), (None, 6, backbone.hidden_dim))
    return decoder


def test_transformer_decoder_private_attributes(backbone):
    decoder = tiny_decoder(backbone)
    for name in adapter.BLOCK_SUBLAYER_NAMES + adapter.CROSS_ATTENTION_NAMES:
        assert isinstance(getattr(decoder, name), keras.layers.Layer), name
    encoder_block = backbone.transformer_layers[0]
    for name in adapter.BLOCK_SUBLAYER_NAMES:
        assert isinstance(getattr(encoder_block, name), keras.layers.Layer), name
    for attention in (adapter.self_attention_layer(encoder_block), decoder._self_attention_layer):
        assert isinstance(attention, keras.layers.MultiHeadAttention)
        for name in adapter.ATTENTION_PROJECTION_NAMES:
            assert isinstance(getattr(attention, name), keras.layers.EinsumDense), name
    assert callable(decoder._tracker.replace_tracked_value)
    assert callable(decoder._tracker.is_in_store)


def test_copy_block_weights_copies_all_but_cross_attention(backbone):
    encoder_block, decoder = backbone.transformer_layers[0], tiny_decoder(backbone)
    cross_before = [w.copy() for w in decoder._cross_attention_layer.get_weights()]
    assert adapter.copy_block_weights(encoder_block, decoder) == list(adapter.BLOCK_SUBLAYER_NAMES)
    for name, layer in adapter.block_sublayers(decoder).items():
        source = adapter.block_sublayers(encoder_block)[name]
        assert layer is not source
        for a, b in zip(layer.get_weights(), source.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(decoder._cross_attention_layer.get_weights(), cross_before):
        np.testing.assert_array_equal(a, b)
    small = keras_hub.layers.TransformerDecoder(intermediate_dim=4, num_heads=2)
    small.build((None, 6, backbone.hidden_dim), (None, 6, backbone.hidden_dim))
    with pytest.raises(ValueError, match="intermediate size"):
        adapter.copy_block_weights(encoder_block, small)


def test_share_block_weights_lists_each_variable_once(backbone):
    encoder_block, decoder = backbone.transformer_layers[1], tiny_decoder(backbone)
    cross = {id(v) for name in adapter.CROSS_ATTENTION_NAMES
             for v in getattr(decoder, name).weights}
    adapter.share_block_weights(encoder_block, decoder)
    encoder_ids = {id(v) for v in encoder_block.weights}
    decoder_ids = [id(v) for v in decoder.weights]
    assert len(decoder_ids) == len(set(decoder_ids))
    assert set(decoder_ids) == encoder_ids | cross  # the decoder's own copies are gone
    sequence = np.random.default_rng(0).normal(size=(1, 6, backbone.hidden_dim)).astype("float32")
    decoder(sequence, encoder_sequence=sequence)  # still runs, on the shared layers
