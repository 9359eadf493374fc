"""`Encoder`: the one protocol by which ktransfer finds and drives an encoder.

Every ktransfer encoder (`BertEncoder`, `WordVectorEncoder`) subclasses
`Encoder`, a `keras.layers.Layer`. Export, `kt.predict`, the tasks and the
transfer methods find the encoder in a model with `find_encoder(model)`
(an `isinstance` check, never a guess from attribute names) and use only
what this class defines:

- `preprocessor`: the callable layer that turns raw strings into the
  encoder's inputs, run in the tf.data pipeline (None when the encoder
  reads raw strings itself);
- `layer_groups()`: the encoder's layers in groups from the input up,
  `[embeddings, block 1, ..., block L, pooler]`, for gradual unfreezing,
  layer-wise learning rates and LoRA;
- `output_dim`: the size of the vectors the encoder returns;
- `set_trainable(trainable)`: True, False, or an int k (the top k blocks
  and the pooler train).
"""

from ktransfer._keras import keras
from ktransfer.encoders.keras_hub_adapter import flatten_layers


class Encoder(keras.layers.Layer):
    """Base class of ktransfer's encoders (a `keras.layers.Layer`).

    Subclasses set `self.preprocessor` (or leave the class default None),
    and define `layer_groups()` and `output_dim`; `set_trainable` has a
    default built on `layer_groups()`.

    Example:

    ```python
    import ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
    isinstance(encoder, kt.encoders.Encoder)   # True
    encoder.output_dim                         # 384
    ```
    """

    # Raw strings -> the encoder's inputs; None: the encoder reads strings itself.
    preprocessor = None

    def layer_groups(self):
        """The encoder's layers, grouped from the input up.

        Returns:
            A list of lists of layers: `[embeddings, block 1, ..., block L,
            pooler]` (the pooler group may be empty).
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not define `layer_groups()`: an Encoder "
            "subclass must return its layers as [embeddings, block 1, ..., block L, "
            "pooler] (lists of layers) for unfreezing, layer-wise rates and LoRA."
        )

    @property
    def output_dim(self):
        """The size of the vectors the encoder returns (the last axis)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not define `output_dim`: an Encoder "
            "subclass must say the size of the vectors it returns."
        )

    @property
    def num_blocks(self):
        """The number of blocks between the embeddings and the pooler."""
        return len(self.layer_groups()) - 2

    def set_trainable(self, trainable):
        """Choose what trains: True, False, or an int k (top k blocks + pooler).

        The default implementation works from `layer_groups()`. Keras builds
        a model's train step for the variables trainable when `compile` is
        called: compile again after a toggle.
        """
        if isinstance(trainable, bool):
            self.trainable = trainable
            return
        groups = self.layer_groups()
        blocks = len(groups) - 2
        if not isinstance(trainable, int) or not 0 <= trainable <= blocks:
            raise ValueError(
                f"`trainable` must be True, False, or an int k in [0, {blocks}] (train "
                f"only the top k of the {blocks} blocks and the pooler). Received: "
                f"{trainable!r}"
            )
        self.trainable = True
        for group in groups[: 1 + blocks - trainable]:
            for layer in group:
                layer.trainable = False


def iter_layers(layer):
    """Yield `layer` and every layer nested in it, each once, depth first (parents first).

    Keras' own walk of tracked layers (through `keras_hub_adapter`): it also
    finds layers held in attributes of subclassed layers and models.

    Example:

    ```python
    import keras, ktransfer as kt
    model = keras.Sequential([keras.Input((4,)), kt.heads.ClassificationHead(2)])
    [type(layer).__name__ for layer in kt.encoders.iter_layers(model)][:2]
    # ['Sequential', 'ClassificationHead']
    ```
    """
    return iter(flatten_layers(layer, include_self=True, recursive=True))


def find_encoder(model):
    """The first `Encoder` in `model` (the model itself included), or None.

    Example:

    ```python
    import keras, ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    kt.encoders.find_encoder(model) is encoder   # True
    ```
    """
    for layer in iter_layers(model):
        if isinstance(layer, Encoder):
            return layer
    return None
