"""`TokenClassificationHead`: one tag score vector per token (NER, POS)."""

from ktransfer._keras import keras


@keras.saving.register_keras_serializable(package="ktransfer")
class TokenClassificationHead(keras.layers.Layer):
    """Maps per-token encoder outputs `[batch, length, dim]` to tag logits.

    Dropout, then a dense layer with `num_tags` outputs applied to every
    token, computed in float32 even under mixed precision. Each tag is
    decided independently per token (softmax); there is no CRF layer.

    Pair it with an encoder built with `pooling=None`, batches from
    `ktransfer.data.prepare_tokens` (tag ids on each word's first sub-token,
    sample weight 0 elsewhere) and `default_loss()`.

    Args:
        num_tags: the number of tags (>= 2), `len(tags)`.
        dropout: dropout rate applied to the token features.

    Example:

    ```python
    import numpy as np, ktransfer as kt
    head = kt.heads.TokenClassificationHead(num_tags=9, dropout=0.1)
    logits = head(np.zeros((2, 16, 384), "float32"))  # shape (2, 16, 9)
    loss = head.default_loss()  # weighted mean over first sub-tokens
    ```
    """

    def __init__(self, num_tags, dropout=0.0, **kwargs):
        if not isinstance(num_tags, int) or isinstance(num_tags, bool) or num_tags < 2:
            raise ValueError(
                "`num_tags` must be an int >= 2 (e.g. len(kt.data.tag_vocabulary"
                f"(train))). Received: {num_tags!r}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: {dropout!r}")
        super().__init__(**kwargs)
        self.num_tags = num_tags
        self.dropout = float(dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout, name="dropout")
        self.output_dense = keras.layers.Dense(num_tags, dtype="float32", name="logits")

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "TokenClassificationHead needs per-token inputs of shape "
                f"[batch, length, features]. Received shape: {input_shape}. Use "
                "an encoder with pooling=None."
            )
        self.output_dense.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        return self.output_dense(self.dropout_layer(inputs, training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_tags,)

    def default_loss(self):
        """Cross-entropy on logits, averaged over the tokens with weight > 0.

        With the sample weights of `prepare_tokens` this is the mean loss
        over words (first sub-tokens), whatever the padding of the batch.
        """
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        )

    def get_config(self):
        config = super().get_config()
        config.update({"num_tags": self.num_tags, "dropout": self.dropout})
        return config
