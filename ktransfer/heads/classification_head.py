"""`ClassificationHead`: dropout + dense for binary, multi-class, multi-label."""

from ktransfer._keras import keras

ACTIVATIONS = (None, "softmax", "sigmoid")


@keras.saving.register_keras_serializable(package="ktransfer")
class ClassificationHead(keras.layers.Layer):
    """Maps a pooled encoder output `[batch, dim]` to class scores.

    Dropout, optional hidden dense layers, then a dense layer with
    `num_classes` outputs. The output is computed in float32 even under a
    mixed-precision policy, so losses and probabilities stay accurate.

    Args:
        num_classes: number of classes (>= 2; for multi-label, the number of
            labels, >= 1).
        dropout: dropout rate applied to the input features.
        activation: None returns logits (pair with `from_logits=True`
            losses, as KerasHub's classifiers do), `"softmax"` returns
            probabilities, `"sigmoid"` independent label probabilities.
        multi_label: True for multi-label classification (one sigmoid per
            label; used by `ktransfer.export.save` to turn logits into
            probabilities and labels).
        hidden_dims: sizes of optional hidden layers before the output.
        hidden_activation: activation of the hidden layers.

    Example:

    ```python
    import numpy as np, ktransfer as kt
    head = kt.heads.ClassificationHead(num_classes=3, dropout=0.1)
    logits = head(np.zeros((4, 384), "float32"))  # shape (4, 3)
    loss = head.default_loss()  # SparseCategoricalCrossentropy(from_logits=True)
    ```
    """

    def __init__(
        self,
        num_classes,
        dropout=0.0,
        activation=None,
        multi_label=False,
        hidden_dims=(),
        hidden_activation="gelu",
        **kwargs,
    ):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool):
            raise ValueError(f"`num_classes` must be an int. Received: {num_classes!r}")
        if num_classes < (1 if multi_label else 2):
            raise ValueError(
                "`num_classes` must be >= 2 for single-label classification "
                f"(>= 1 with multi_label=True). Received: {num_classes}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: {dropout!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {ACTIVATIONS}. Received: {activation!r}"
            )
        if multi_label and activation == "softmax":
            raise ValueError("multi_label=True needs activation=None or 'sigmoid'.")
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dropout = float(dropout)
        self.activation = activation
        self.multi_label = bool(multi_label)
        self.hidden_dims = tuple(int(d) for d in hidden_dims)
        self.hidden_activation = hidden_activation
        self.dropout_layer = keras.layers.Dropout(self.dropout, name="dropout")
        self.hidden_layers = [
            keras.layers.Dense(
                dim,
                activation=hidden_activation,
                dtype=self.dtype_policy,
                name=f"hidden_{i}",
            )
            for i, dim in enumerate(self.hidden_dims)
        ]
        self.output_dense = keras.layers.Dense(
            num_classes, activation=activation, dtype="float32", name="logits"
        )

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "ClassificationHead needs inputs of shape [batch, features] with a "
                f"known feature size. Received shape: {input_shape}. Use an "
                "encoder with pooling='cls', 'mean' or 'pooled'."
            )
        shape = input_shape
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = tuple(shape[:-1]) + (layer.units,)
        self.output_dense.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = self.dropout_layer(inputs, training=training)
        for layer in self.hidden_layers:
            x = layer(x)
        return self.output_dense(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes,)

    @property
    def output_activation(self):
        """The activation that maps this head's output to probabilities."""
        if self.activation is not None:
            return None
        return "sigmoid" if self.multi_label else "softmax"

    def default_loss(self):
        """The loss that matches this head's output and integer labels."""
        from_logits = self.activation is None
        if self.multi_label:
            return keras.losses.BinaryCrossentropy(from_logits=from_logits)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "dropout": self.dropout,
                "activation": self.activation,
                "multi_label": self.multi_label,
                "hidden_dims": list(self.hidden_dims),
                "hidden_activation": self.hidden_activation,
            }
        )
        return config
