"""`TextCNN`: Kim (2014)'s convolutional sentence classifier over word vectors.

Yoon Kim, "Convolutional Neural Networks for Sentence Classification", EMNLP
2014: word vectors -> convolutions of widths 3, 4, 5 (100 filters each, ReLU)
-> max over time -> dropout 0.5 -> softmax. With frozen vectors it is
"CNN-static", with `encoder.trainable = True` "CNN-non-static".
"""

import tensorflow as tf

from ktransfer._keras import keras
from ktransfer.tasks.word_vector_model import check_positive_int
from ktransfer.tasks.word_vector_model import check_token_encoder
from ktransfer.tasks.word_vector_model import classifier
from ktransfer.tasks.word_vector_model import string_input


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
    from ktransfer.tasks.text_cnn import MaxOverTimeConv1D
    layer = MaxOverTimeConv1D(filter_sizes=(2, 3), num_filters=4)
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


def TextCNN(
    encoder,
    num_classes,
    filter_sizes=(3, 4, 5),
    num_filters=100,
    dropout=0.5,
    learning_rate=1e-3,
):
    """Kim (2014)'s CNN sentence classifier, raw strings in, compiled.

    `text [batch] -> encoder -> MaxOverTimeConv1D -> ClassificationHead`
    (dropout then a dense layer returning logits), compiled with Adam,
    sparse categorical cross-entropy from logits and accuracy. Train it with
    `model.fit` on batches of `(raw text, label)` (e.g. `kt.data.from_tsv(...)
    .batch(50)`), export it with `kt.export.save(model, path, labels=...)`: the
    SavedModel takes raw strings, since vectorisation is inside the model.

    Args:
        encoder: an adapted `kt.encoders.WordVectorEncoder(..., pooling=None)`.
            Frozen (`trainable=False`) is Kim's CNN-static; `trainable=True`
            CNN-non-static (toggling later needs `model.compile(...)` again).
        num_classes: number of classes (>= 2).
        filter_sizes, num_filters: the convolutions (see `MaxOverTimeConv1D`).
            Kim's 3/4/5 x 100 by default. With frozen low-dimensional
            vectors the convolutions are the only learnt features, and more
            of them help: over frozen GloVe-50d on SST-2,
            `filter_sizes=(1, 2, 3, 4, 5), num_filters=300` reached 79.3%
            dev accuracy against 77.75% (docs/word_vectors.md).
        dropout: dropout rate on the pooled features.
        learning_rate: Adam's learning rate (compile again to change more).

    Returns:
        A compiled functional `keras.Model`.

    Example:

    ```python
    import ktransfer as kt
    train = kt.data.from_tsv("sst2/train.tsv")
    encoder = kt.encoders.WordVectorEncoder("glove50", standardize="lower")
    encoder.adapt(train)
    model = kt.models.TextCNN(encoder, num_classes=2)
    model.fit(train.shuffle(70_000, seed=0).batch(50), epochs=3)
    kt.export.save(model, "saved_models/sst2_cnn/1", labels=["negative", "positive"])
    ```
    """
    check_token_encoder(encoder, "TextCNN")
    text = string_input()
    tokens = encoder(text)
    features = MaxOverTimeConv1D(filter_sizes, num_filters, name="convolutions")(tokens)
    return classifier(text, features, num_classes, dropout, learning_rate, name="text_cnn")
