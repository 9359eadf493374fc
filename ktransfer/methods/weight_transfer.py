"""Fixed-weight transfer between tasks: reuse a trained model's encoder.

Train a classifier on a task with plenty of labels (say, product reviews),
then start a new task (say, film reviews with 200 labels, or a different
label set) from its encoder instead of from the pretrained checkpoint:

```python
import keras, ktransfer as kt
target = kt.transfer.from_model(
    "reviews.keras", new_head=kt.heads.ClassificationHead(2), trainable=False
)
target.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=target.layers[-1].default_loss())
```

`trainable=False` keeps the transferred weights fixed and trains only the
new head; True (or an int k, the top k blocks) fine-tunes them further.
The source model is never modified: the encoder is copied, and a LoRA-tuned
encoder is copied with its adapters merged into plain kernels.
"""

import os

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.encoders import keras_hub_adapter as adapter


def from_model(source_model, new_head, trainable=False, name=None):
    """A new model: the encoder of `source_model` (copied) + `new_head`.

    Args:
        source_model: a trained Keras model holding a `BertEncoder`
            (e.g. `Sequential([encoder, head])`), or the path of one saved as
            `.keras`.
        new_head: the layer (or model) that maps the encoder's output to
            the new task's outputs, e.g. `kt.heads.ClassificationHead(5)`.
        trainable: what of the copied encoder trains: False (fixed weights:
            only the head trains), True (everything), or an int k (the top
            k blocks), as `BertEncoder.set_trainable`.
        name: the new model's name.

    Returns:
        A built `keras.Sequential([encoder_copy, new_head])` that takes the
        encoder's token features (use `kt.data.prepare` to train it,
        `kt.predict` / `kt.export.save` for raw strings).
    """
    if isinstance(source_model, (str, os.PathLike)):
        path = os.fspath(source_model)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No saved model at {path!r}: pass a Keras model, or the path of one "
                "saved with `model.save('name.keras')`."
            )
        source_model = keras.models.load_model(path)
    if not isinstance(source_model, keras.Model):
        raise TypeError(
            "`source_model` must be a Keras model (or a `.keras` path) holding a "
            f"BertEncoder. Received: {type(source_model).__name__}"
        )
    if not isinstance(new_head, keras.layers.Layer):
        raise TypeError(
            "`new_head` must be a Keras layer such as kt.heads.ClassificationHead(5). "
            f"Received: {type(new_head).__name__}"
        )
    encoder = find_encoder(source_model)
    copy = copy_encoder(encoder, trainable=trainable)
    model = keras.Sequential([copy, new_head], name=name)
    build_on_sample(model, copy)
    return model


def find_encoder(model):
    """The first `BertEncoder` inside `model`; a clear error if there is none.

    Example:

    ```python
    encoder = kt.transfer.find_encoder(keras.models.load_model("reviews.keras"))
    ```
    """
    from ktransfer.encoders.bert_encoder import BertEncoder

    for layer in adapter.flatten_layers(model):
        if isinstance(layer, BertEncoder):
            return layer
    raise ValueError(
        f"Model {model.name!r} holds no BertEncoder, so there are no encoder weights "
        "to transfer. Pass a model built from kt.encoders.BertEncoder."
    )


def find_head(model):
    """The last classification head in `model` (the one its outputs come from), or None.

    A head is a layer with `num_classes` and `output_activation` (what maps
    its outputs to probabilities: `"softmax"`, `"sigmoid"`, or None for a
    head that already returns probabilities), e.g. `kt.heads.ClassificationHead`.

    Example:

    ```python
    head = kt.transfer.find_head(model)
    head.output_activation   # 'softmax' for single-label logits
    ```
    """
    last = None
    for layer in adapter.flatten_layers(model):
        if hasattr(layer, "output_activation") and hasattr(layer, "num_classes"):
            last = layer
    return last


def copy_encoder(encoder, trainable=None):
    """A new `BertEncoder` with the same configuration and (merged) weights.

    The backbone is rebuilt from its config and each layer's variables are
    copied through Keras' own `save_own_variables`/`load_own_variables`,
    which hand over a LoRA-adapted layer's merged kernel `W + A B`: the copy
    is a plain encoder (no adapters) that computes the same function. The
    preprocessor (no weights) is shared.

    Args:
        encoder: a `BertEncoder`.
        trainable: the copy's trainable setting (True, False or int k);
            None keeps the source's (LoRA becomes False: the adapters are
            gone).
    """
    from ktransfer.encoders.bert_encoder import BertEncoder

    if not isinstance(encoder, BertEncoder):
        raise TypeError(f"`encoder` must be a BertEncoder. Received: {type(encoder).__name__}")
    backbone = adapter.copy_backbone(encoder.backbone)
    if trainable is None:
        if encoder.lora_rank is not None:
            trainable = False
        elif encoder.trainable_blocks is not None:
            trainable = encoder.trainable_blocks
        else:
            trainable = bool(encoder.trainable)
    return BertEncoder(
        backbone=backbone,
        preprocessor=encoder.preprocessor,
        pooling=encoder.pooling,
        trainable=trainable,
        hidden_activation=encoder.hidden_activation,
        dtype=encoder.dtype_policy,
    )


def build_on_sample(model, encoder):
    """Build `model` by calling it on one tokenised text, with a clear error on a mismatch.

    Keras builds a `Sequential([encoder, head])` lazily, in its first call;
    a model that is to be exported, copied or have its optimizer built
    before training needs its weights now. The sample is
    `encoder.preprocessor(["a"])`; an encoder without a preprocessor is
    left to build on its first batch.

    Example:

    ```python
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    kt.transfer.build_on_sample(model, encoder)
    model.built   # True
    ```
    """
    if encoder.preprocessor is None:
        return
    sample = encoder.preprocessor(tf.constant(["a"]))
    try:
        model(sample, training=False)
    except ValueError as error:
        raise ValueError(
            f"The head does not fit the encoder's output (dimension "
            f"{encoder.output_dim}, pooling={encoder.pooling!r}): {error}"
        ) from error
