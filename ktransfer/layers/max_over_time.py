"""`MaxOverTimeConv1D`: Kim (2014)'s convolutions of several widths, max-pooled over time."""

import tensorflow as tf

from ktransfer._keras import keras
from ktransfer.layers.checks import check_positive_int


@keras.saving.register_keras_serializable(package="ktransfer")
class MaxOverTimeConv1D(keras.layers.Layer):
    """Convolutions of several widths, each max-pooled over the real tokens.

    Takes `[batch, length, dim]` token vectors (and their Keras mask, which a
    `WordVectorEncoder` attaches) and returns
    `[batch, len(filter_sizes) * num_filters]`. Each convolution uses `"same"`
    padding, so every real token is the centre of one window (windows at the
    ends see zero vectors, as in Kim's zero padding), and the maximum is taken
    over the windows centred on real tokens only: a text's features do not
    depend on how much padding its batch has. An empty text gives zeros.

    Args:
        filter_sizes: window widths, e.g. `(3, 4, 5)`.
        num_filters: feature maps per width.
        activation: name of the convolutions' activation (`"relu"`).

    Example:

    ```python
    import numpy as np
    import ktransfer as kt
    layer = kt.layers.MaxOverTimeConv1D(filter_sizes=(2, 3), num_filters=4)
    layer(np.zeros((8, 10, 50), "float32")).shape  # (8, 8)
    ```
    """

    def __init__(self, filter_sizes=(3, 4, 5), num_filters=100, activation="relu", **kwargs):
        filter_sizes = tuple(filter_sizes) if isinstance(filter_sizes, (list, tuple)) else None
        if not filter_sizes:
            raise ValueError("`filter_sizes` must be a non-empty list of window widths, e.g. (3, 4, 5).")
        for size in filter_sizes:
            check_positive_int(size, "filter_sizes")
        check_positive_int(num_filters, "num_filters")
        if not isinstance(activation, str):
            raise ValueError(
                "`activation` must be the name of a Keras activation, e.g. 'relu'. "
                f"Received: {activation!r}"
            )
        keras.activations.get(activation)  # an unknown name raises here, at the boundary
        super().__init__(**kwargs)
        self.filter_sizes = filter_sizes
        self.num_filters = num_filters
        self.activation = activation
        self.convolutions = [
            keras.layers.Conv1D(
                num_filters,
                size,
                padding="same",
                activation=activation,
                dtype=self.dtype_policy,
                name=f"conv_{position}_width_{size}",
            )
            for position, size in enumerate(filter_sizes)
        ]
        self.supports_masking = True  # reads the mask; returns none (see compute_mask)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "MaxOverTimeConv1D takes token vectors [batch, length, dim] with a "
                f"known dim. Received shape: {input_shape}"
            )
        for convolution in self.convolutions:
            convolution.build(input_shape)
        self.built = True

    def call(self, inputs, mask=None):
        inputs = tf.identity(inputs)  # the convolutions need no mask: this layer applies it
        pooled = []
        for convolution in self.convolutions:
            maps = convolution(inputs)
            if mask is None:
                pooled.append(tf.reduce_max(maps, axis=1))
                continue
            lowest = tf.constant(maps.dtype.min, maps.dtype)
            best = tf.reduce_max(tf.where(mask[..., None], maps, lowest), axis=1)
            has_tokens = tf.reduce_any(mask, axis=1, keepdims=True)
            pooled.append(tf.where(has_tokens, best, tf.zeros_like(best)))
        return tf.concat(pooled, axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.filter_sizes) * self.num_filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filter_sizes": list(self.filter_sizes),
                "num_filters": self.num_filters,
                "activation": self.activation,
            }
        )
        return config
