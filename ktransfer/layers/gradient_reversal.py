"""`GradientReversal`: identity forward, gradient times `-lambda` backward.

The layer of domain-adversarial training (Ganin & Lempitsky 2015; Ganin et
al., JMLR 2016): put it between a feature extractor and a domain
classifier, and minimising the domain classifier's loss trains the
classifier to tell the domains apart while it trains the features to make
them indistinguishable.

`lambda_` is a non-trainable variable, so it can change during training
without retracing the train step: `kt.adapt.GradientReversalSchedule`
ramps it with Ganin et al.'s schedule `2 / (1 + exp(-10 p)) - 1`.
"""

from ktransfer._keras import keras

import tensorflow as tf


@tf.custom_gradient
def _reverse_gradient(x, lambda_):
    def grad(upstream):
        return -tf.cast(lambda_, upstream.dtype) * upstream, tf.zeros_like(lambda_)

    return tf.identity(x), grad


@keras.saving.register_keras_serializable(package="ktransfer")
class GradientReversal(keras.layers.Layer):
    """Returns its input unchanged; multiplies the gradient by `-lambda_`.

    Args:
        lambda_: the initial factor (>= 0). It lives in the non-trainable
            variable `layer.lambda_`: change it during training with
            `layer.lambda_.assign(value)` (no retracing) or with the
            `kt.adapt.GradientReversalSchedule` callback. `get_config`
            records its current value.

    Example:

    ```python
    import keras, ktransfer as kt
    reversal = kt.layers.GradientReversal(lambda_=0.5)
    domain_classifier = keras.Sequential([reversal, keras.layers.Dense(1)])
    reversal.lambda_.assign(1.0)  # e.g. from a callback
    ```
    """

    def __init__(self, lambda_=1.0, **kwargs):
        lambda_ = _check_lambda(lambda_)
        super().__init__(**kwargs)
        self.lambda_ = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(lambda_),
            trainable=False,
            dtype="float32",
            name="lambda",
        )
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        return _reverse_gradient(inputs, tf.convert_to_tensor(self.lambda_))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["lambda_"] = float(keras.ops.convert_to_numpy(self.lambda_))
        return config


def _check_lambda(lambda_):
    try:
        value = float(lambda_)
    except (TypeError, ValueError):
        value = None
    if isinstance(lambda_, bool) or value is None or not value >= 0.0:
        raise ValueError(
            "`lambda_` must be a number >= 0 (0 turns the reversal off, 1 reverses "
            f"the full gradient). Received: {lambda_!r}"
        )
    return value
