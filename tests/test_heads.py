"""ClassificationHead: outputs, losses, serialisation, errors."""

import numpy as np
import pytest

import keras

import ktransfer as kt


def test_logits_match_a_plain_dense_layer():
    head = kt.heads.ClassificationHead(3, dropout=0.5)
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    logits = np.asarray(head(x, training=False))
    kernel, bias = (np.asarray(w) for w in head.output_dense.weights)
    np.testing.assert_allclose(logits, x @ kernel + bias, atol=1e-5)
    assert head.output_activation == "softmax"


def test_multi_label_uses_sigmoid_and_binary_loss():
    head = kt.heads.ClassificationHead(4, multi_label=True)
    assert head.output_activation == "sigmoid"
    assert isinstance(head.default_loss(), keras.losses.BinaryCrossentropy)
    probabilities = kt.heads.ClassificationHead(3, activation="softmax")
    assert probabilities.output_activation is None
    assert probabilities.default_loss().get_config()["from_logits"] is False


def test_output_stays_float32_under_mixed_precision():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        head = kt.heads.ClassificationHead(2, hidden_dims=(8,))
        out = head(np.zeros((2, 8), "float32"))
        assert str(out.dtype) == "<dtype: 'float32'>" or "float32" in str(out.dtype)
        assert head.hidden_layers[0].compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


# Config and .keras round trips, shapes, weights: tests/test_contracts.py::test_classification_head.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1}, "must be >= 2"),
        ({"num_classes": "2"}, "must be an int"),
        ({"num_classes": 2, "dropout": 1.5}, "dropout"),
        ({"num_classes": 2, "activation": "relu"}, "activation"),
        ({"num_classes": 2, "multi_label": True, "activation": "softmax"}, "multi_label"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.heads.ClassificationHead(**kwargs)


def test_per_token_input_is_rejected_with_a_hint():
    head = kt.heads.ClassificationHead(2)
    with pytest.raises(ValueError, match="pooling"):
        head.build((2, 5, None))
