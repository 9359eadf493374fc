"""Every use of KerasHub's (and Keras') private attributes, in one place.

ktransfer drives a `keras_hub.models.BertBackbone` in ways its public API
does not cover: it groups the backbone's layers for unfreezing, swaps the
feed-forward activation, computes the attention softmax in float32 under
mixed precision, copies weights layer by layer, and asks an optimizer which
variables it was built for. Each of those touches a name that KerasHub or
Keras keeps private (`block._self_attention_layer`, `attention._softmax`,
`layer._flatten_layers`, ...). They are used here and nowhere else, one
documented function each, and `tests/test_keras_hub_adapter.py` pins every
attribute these functions rely on against the installed KerasHub (0.32) and
Keras (3.x): an upgrade that renames one fails that test, with the name,
instead of failing somewhere deep in training.

Example:

```python
import keras_hub
from ktransfer.encoders import keras_hub_adapter as adapter
backbone = keras_hub.models.BertBackbone(
    vocabulary_size=30, num_layers=2, num_heads=2, hidden_dim=8,
    intermediate_dim=16, max_sequence_length=16,
)
groups = adapter.backbone_layer_groups(backbone)   # embeddings, 2 blocks, pooler
[len(group) for group in groups]                   # [6, 1, 1, 1]
```
"""

from ktransfer._keras import keras

# The BertBackbone attributes (public, but a KerasHub layout) that make up
# the embedding stage, in the order the backbone applies them.
EMBEDDING_LAYER_NAMES = (
    "token_embedding",
    "position_embedding",
    "segment_embedding",
    "embeddings_add",
    "embeddings_layer_norm",
    "embeddings_dropout",
)
POOLER_LAYER_NAME = "pooled_dense"


# --------------------------------------------------------------------------
# Keras: walking a model's layers, optimizer bookkeeping
# --------------------------------------------------------------------------


def flatten_layers(layer, include_self=True, recursive=True):
    """Every layer tracked inside `layer`, as Keras itself tracks them.

    Keras' private `Layer._flatten_layers`: unlike `model.layers` it also
    finds layers held in attributes of subclassed layers and models (a
    `BertEncoder`'s backbone, a `DANN`'s heads), each once, depth first.

    Args:
        layer: a Keras layer or model.
        include_self: yield `layer` first.
        recursive: go into nested layers (False: direct children only).

    Returns:
        A list of layers.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def optimizer_is_built_for(optimizer, variables):
    """Whether a built Keras `optimizer` has slots for every one of `variables`.

    Keras keeps no public list of the variables an optimizer was built for;
    this reads its private index (`_trainable_variables_indices`, keyed by
    `_var_key`). A `LossScaleOptimizer` is looked through.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    known = inner._trainable_variables_indices
    return all(inner._var_key(variable) in known for variable in variables)


def set_compile_metrics(model, metrics):
    """Make `metrics` what a compiled `model` updates and reports as its compiled metrics.

    Keras' `Trainer` keeps the metrics of `compile(metrics=...)` in its
    private `_compile_metrics` (a `CompileMetrics`): `compute_metrics`
    updates it with `(y, y_pred, sample_weight)` and `model.metrics` reports
    its `result()` dict. A model with its own metric logic (per-task metrics
    of `kt.multitask.MultiTaskModel`) puts a `keras.metrics.Metric` there
    instead, set past Keras' attribute tracking so it is reported once.
    Call it after `super().compile(...)`.
    """
    object.__setattr__(model, "_compile_metrics", metrics)


# --------------------------------------------------------------------------
# KerasHub BertBackbone / TransformerEncoder
# --------------------------------------------------------------------------


def backbone_layer_groups(backbone):
    """The backbone's layers from the input up: `[embeddings, block 1..L, pooler]`.

    `embeddings` holds the token, position and segment embeddings with their
    sum, layer norm and dropout; each block is one KerasHub
    `TransformerEncoder`; the pooler is BERT's tanh `pooled_dense`.

    Args:
        backbone: a `keras_hub.models.BertBackbone`.

    Returns:
        A list of `num_layers + 2` lists of layers.
    """
    embeddings = [
        getattr(backbone, name)
        for name in EMBEDDING_LAYER_NAMES
        if getattr(backbone, name, None) is not None
    ]
    blocks = [[block] for block in backbone.transformer_layers]
    return [embeddings] + blocks + [[getattr(backbone, POOLER_LAYER_NAME)]]


def self_attention_layer(block):
    """The `keras.layers.MultiHeadAttention` of a KerasHub `TransformerEncoder`."""
    return block._self_attention_layer


def attention_softmax(attention):
    """The `Softmax` layer a `MultiHeadAttention` normalises its scores with (None before build)."""
    return getattr(attention, "_softmax", None)


def feedforward_intermediate_dense(block):
    """The first (activated) `Dense` of a `TransformerEncoder`'s feed-forward part."""
    return block._feedforward_intermediate_dense


def set_feedforward_activation(block, activation):
    """Use `activation` in a built `TransformerEncoder`'s feed-forward layer.

    KerasHub passes `activation` to the intermediate `Dense` when the block
    is built; a built block keeps that `Dense`, so both are set (the block's
    own attribute is what its `get_config` reports).
    """
    block.activation = activation
    feedforward_intermediate_dense(block).activation = activation


def softmax_in_float32(backbone):
    """Under a mixed policy, compute each block's attention softmax in float32.

    KerasHub runs the attention softmax in the compute dtype (bfloat16 /
    float16). A float32 `keras.layers.Softmax` takes the low-precision
    scores, and the dropout after it casts the probabilities back to the
    compute dtype. The replacement is weightless and set past Keras' state
    tracking (nothing to track or save). Blocks already in float32 are left
    alone.

    Keras' `MultiHeadAttention` calls this softmax only when its dropout is
    above 0 (every BERT checkpoint's attention has dropout); with dropout 0
    it calls the fused `keras.ops.dot_product_attention` instead, in the
    compute dtype, and the swap has no effect.

    Returns:
        The number of blocks changed.
    """
    changed = 0
    for block in backbone.transformer_layers:
        attention = self_attention_layer(block)
        softmax = attention_softmax(attention)
        if softmax is None or softmax.compute_dtype == "float32":
            continue
        object.__setattr__(
            attention, "_softmax", keras.layers.Softmax(axis=softmax.axis, dtype="float32")
        )
        changed += 1
    return changed


def copy_backbone(backbone):
    """A new backbone with `backbone`'s configuration and weights (LoRA merged).

    The copy is rebuilt from the config, and each layer's variables are
    handed over through Keras' `save_own_variables` / `load_own_variables`,
    which give a LoRA-adapted layer's merged kernel `W + A B`: the copy is a
    plain backbone (no adapters) computing the same function.
    """
    copy = type(backbone).from_config(backbone.get_config())
    source_layers = flatten_layers(backbone)
    target_layers = flatten_layers(copy)
    if len(source_layers) != len(target_layers):
        raise RuntimeError("The rebuilt backbone differs in structure from the source.")
    for source_layer, target_layer in zip(source_layers, target_layers):
        store = {}
        source_layer.save_own_variables(store)  # merges LoRA into the kernel
        if store:
            target_layer.load_own_variables(store)
    return copy
