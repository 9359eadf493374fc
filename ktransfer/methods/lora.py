"""LoRA: train low-rank adapters on a frozen encoder, then merge them for export.

`BertEncoder.enable_lora(rank)` (Hu et al. 2021) freezes the encoder and
gives the query and value projections of each transformer block of
`encoder.layer_groups()` trainable low-rank factors; `merge_lora(model)`
returns a copy whose kernels hold `W + A B`, the same function without the
adapter matmuls.

```python
import keras, ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
encoder.enable_lora(rank=8)
model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
# ... compile, fit ...
kt.export.save(kt.methods.merge_lora(model), "saved_models/lora/1", labels=["neg", "pos"])
```
"""

from ktransfer._keras import keras

from ktransfer.encoders import keras_hub_adapter as adapter


def has_lora(layer):
    """Whether `layer` is a `BertEncoder` with LoRA enabled."""
    from ktransfer.encoders.bert_encoder import BertEncoder

    return isinstance(layer, BertEncoder) and layer.lora_rank is not None


def merge_lora(model):
    """A copy of `model` whose LoRA encoders have their adapters merged.

    Each `BertEncoder` with LoRA enabled is replaced by a plain copy whose
    kernels are `W + A B` (see `BertEncoder.enable_lora`); the other layers
    are shared with `model`. The result computes the same function without
    the adapter matmuls: export it with `kt.export.save`. A model without
    LoRA is returned as it is.

    Example:

    ```python
    merged = kt.methods.merge_lora(model)
    kt.export.save(merged, "saved_models/lora/1", labels=["neg", "pos"])
    ```
    """
    from ktransfer.encoders.bert_encoder import BertEncoder
    from ktransfer.methods.weight_transfer import build_on_sample
    from ktransfer.methods.weight_transfer import copy_encoder

    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras model. Received: {type(model).__name__}")
    if not any(has_lora(layer) for layer in adapter.flatten_layers(model)):
        return model

    def replace(layer):
        return copy_encoder(layer, trainable=False) if has_lora(layer) else layer

    merged = keras.models.clone_model(model, clone_function=replace)
    encoders = [
        layer for layer in adapter.flatten_layers(merged) if isinstance(layer, BertEncoder)
    ]
    if encoders and not merged.built:
        build_on_sample(merged, encoders[0])
    return merged


__all__ = ["has_lora", "merge_lora"]
