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


# --------------------------------------------------------------------------
# KerasHub TransformerDecoder: warm-starting from / sharing an encoder block
# --------------------------------------------------------------------------

# The sublayers a KerasHub `TransformerDecoder` has in common with a
# `TransformerEncoder` (same names, same shapes once both are built with the
# same sizes): self-attention, its layer norm, the feed-forward pair and its
# layer norm. The decoder's cross-attention (`_cross_attention_layer` and
# `_cross_attention_layer_norm`) has no counterpart in an encoder.
BLOCK_SUBLAYER_NAMES = (
    "_self_attention_layer",
    "_self_attention_layer_norm",
    "_feedforward_intermediate_dense",
    "_feedforward_output_dense",
    "_feedforward_layer_norm",
)
# Keras' `MultiHeadAttention` keeps its four projections in these attributes.
ATTENTION_PROJECTION_NAMES = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
CROSS_ATTENTION_NAMES = ("_cross_attention_layer", "_cross_attention_layer_norm")


def block_sublayers(block):
    """`{name: layer}`: the sublayers of a built block that `BLOCK_SUBLAYER_NAMES` names.

    Works for a KerasHub `TransformerEncoder` and `TransformerDecoder` alike.
    """
    missing = [name for name in BLOCK_SUBLAYER_NAMES if getattr(block, name, None) is None]
    if missing:
        raise ValueError(
            f"{type(block).__name__} {block.name!r} has no {missing}: build it first "
            "(block.build(...)) or check the installed KerasHub version."
        )
    return {name: getattr(block, name) for name in BLOCK_SUBLAYER_NAMES}


def cross_attention_sublayers(decoder_block):
    """`{name: layer}`: a built `TransformerDecoder`'s cross-attention and its layer norm."""
    return {name: getattr(decoder_block, name) for name in CROSS_ATTENTION_NAMES}


def copy_block_weights(encoder_block, decoder_block):
    """Copy an encoder block's weights into the matching sublayers of a decoder block.

    The warm start of Rothe, Narayan & Severyn (2020, "BERT2BERT"): the
    decoder's self-attention, feed-forward layers and their layer norms take
    the encoder block's values (copies: the two then train apart); the
    cross-attention keeps its fresh initialisation. Both blocks must be built
    with the same hidden size, heads and intermediate size.

    Returns:
        The names of the sublayers copied.
    """
    source, target = block_sublayers(encoder_block), block_sublayers(decoder_block)
    for name in BLOCK_SUBLAYER_NAMES:
        source_weights = source[name].get_weights()
        target_shapes = [tuple(w.shape) for w in target[name].weights]
        if [tuple(w.shape) for w in source_weights] != target_shapes:
            raise ValueError(
                f"Cannot warm-start {decoder_block.name}.{name} from {encoder_block.name}: "
                f"shapes {[tuple(w.shape) for w in source_weights]} vs {target_shapes}. "
                "Build the decoder with the encoder's hidden size, heads and intermediate size."
            )
        target[name].set_weights(source_weights)
    return list(BLOCK_SUBLAYER_NAMES)


def _replace_tracked_sublayer(layer, name, new):
    old = getattr(layer, name)
    if old is new:
        return
    tracker = layer._tracker
    if tracker.is_in_store("layers", old):
        tracker.replace_tracked_value("layers", old, new)
    object.__setattr__(layer, name, new)


def share_block_weights(encoder_block, decoder_block):
    """Make a decoder block use the encoder block's layers (one set of weights for both).

    The decoder's self-attention projections (query, key, value, output:
    KerasHub's decoder keeps its own `CachedMultiHeadAttention`, whose call
    takes a cache, around the encoder's projection layers), feed-forward
    layers and layer norms become the encoder block's objects; the decoder's
    own copies are dropped from Keras' tracking, so the model lists each
    shared weight once and a `.keras` file stores it once. Cross-attention
    stays the decoder's own.

    Returns:
        The names of the sublayers shared.
    """
    source, target = block_sublayers(encoder_block), block_sublayers(decoder_block)
    for name in BLOCK_SUBLAYER_NAMES:
        if name == "_self_attention_layer":
            for projection in ATTENTION_PROJECTION_NAMES:
                _replace_tracked_sublayer(
                    target[name], projection, getattr(source[name], projection)
                )
        else:
            _replace_tracked_sublayer(decoder_block, name, source[name])
    return list(BLOCK_SUBLAYER_NAMES)


def attention_projections(attention):
    """`{name: EinsumDense}`: the query, key, value and output projections of a built MHA."""
    return {name: getattr(attention, name) for name in ATTENTION_PROJECTION_NAMES}


def token_embedding_layer(backbone):
    """The `ReversibleEmbedding` holding a `BertBackbone`'s word-piece vectors."""
    return backbone.token_embedding


def backbone_with_token_rows(backbone, rows):
    """A copy of `backbone` whose vocabulary is the token-embedding rows `rows`.

    The copy is rebuilt from the backbone's config with `vocabulary_size =
    len(rows)`; its token embedding is `old_embeddings[rows]` (row `i` of the
    copy is row `rows[i]` of the source) and every other layer's variables
    are handed over through Keras' `save_own_variables` /
    `load_own_variables`, as in `copy_backbone`. Used by
    `BertEncoder.trim_vocabulary`.

    Args:
        backbone: a built `keras_hub.models.BertBackbone` (not quantised).
        rows: a 1-D int array of distinct row indices, in the order the copy
            keeps them.

    Returns:
        The new backbone.
    """
    import numpy as np

    rows = np.asarray(rows, dtype="int64")
    source_embedding = token_embedding_layer(backbone)
    if getattr(source_embedding, "quantization_mode", None):
        raise ValueError(
            "Cannot trim the vocabulary of a quantised token embedding "
            f"({source_embedding.quantization_mode}): trim first, then quantise."
        )
    config = dict(backbone.get_config())
    config["vocabulary_size"] = int(len(rows))
    copy = type(backbone).from_config(config)
    source_layers = flatten_layers(backbone)
    target_layers = flatten_layers(copy)
    if len(source_layers) != len(target_layers):
        raise RuntimeError("The rebuilt backbone differs in structure from the source.")
    for source_layer, target_layer in zip(source_layers, target_layers):
        if source_layer is source_embedding:
            embeddings = keras.ops.convert_to_numpy(source_layer.embeddings)
            target_layer.embeddings.assign(embeddings[rows])
            if not source_layer.tie_weights:
                reverse = keras.ops.convert_to_numpy(source_layer.reverse_embeddings)
                target_layer.reverse_embeddings.assign(reverse[:, rows])
            continue
        store = {}
        source_layer.save_own_variables(store)
        if store:
            target_layer.load_own_variables(store)
    return copy


# --------------------------------------------------------------------------
# KerasHub tokenizers and token embeddings as static word-piece vectors
# --------------------------------------------------------------------------


def token_embedding_matrix(backbone):
    """A `BertBackbone`'s token-embedding matrix, `[vocabulary_size, hidden_dim]` float32 NumPy.

    The rows of the `ReversibleEmbedding` (`token_embedding_layer`), read
    once (a copy: later training of the backbone does not change it).
    `WordVectors.from_encoder` uses it.

    Raises:
        ValueError: the backbone has no token embedding, or it is quantised.
    """
    import numpy as np

    layer = getattr(backbone, "token_embedding", None)
    embeddings = getattr(layer, "embeddings", None)
    if embeddings is None:
        raise ValueError(
            f"{type(backbone).__name__} {getattr(backbone, 'name', '')!r} has no token "
            "embedding (`token_embedding.embeddings`): use a BERT encoder "
            "(kt.encoders.BertEncoder) or a keras_hub BertBackbone."
        )
    if getattr(layer, "quantization_mode", None):
        raise ValueError(
            "Cannot read static vectors from a quantised token embedding "
            f"({layer.quantization_mode}): take the vectors before quantising."
        )
    return np.asarray(keras.ops.convert_to_numpy(embeddings), dtype=np.float32)


def tokenizer_pieces(tokenizer):
    """A KerasHub tokenizer's pieces in id order (`tokenizer.get_vocabulary()`, as str).

    Works for SentencePiece (`XLMRobertaTokenizer`, with its fairseq id
    offset) and WordPiece (`BertTokenizer`) tokenizers alike.

    Raises:
        ValueError: the tokenizer has no vocabulary (yet).
    """
    get_vocabulary = getattr(tokenizer, "get_vocabulary", None)
    if get_vocabulary is None:
        raise ValueError(
            f"{type(tokenizer).__name__} is not a KerasHub tokenizer (no `get_vocabulary`): "
            "pass a keras_hub tokenizer such as `encoder.preprocessor.tokenizer`."
        )
    try:
        pieces = get_vocabulary()
    except (ValueError, AttributeError) as error:
        raise ValueError(
            f"The tokenizer ({type(tokenizer).__name__}) has no vocabulary yet ({error}): "
            "load it with its proto / vocabulary first."
        ) from error
    return [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in pieces]


def tokenizer_special_tokens(tokenizer):
    """The special tokens of a KerasHub tokenizer (`[CLS]`, `<s>`, `<pad>`, ...): a set of str."""
    try:
        tokens = tokenizer.special_tokens
    except (AttributeError, ValueError):
        tokens = []
    special = {str(token) for token in tokens or [] if token is not None}
    ids = set()
    try:
        ids.update(int(i) for i in tokenizer.special_token_ids or [])
    except (AttributeError, ValueError, TypeError):
        pass
    for name in ("cls_token", "sep_token", "pad_token", "mask_token", "start_token",
                 "end_token", "unk_token"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, str):
            special.add(value)
        token_id = getattr(tokenizer, name + "_id", None)  # XLM-R names `<mask>` by id only
        if isinstance(token_id, int):
            ids.add(token_id)
    if ids:
        pieces = tokenizer_pieces(tokenizer)
        special.update(pieces[i] for i in ids if 0 <= i < len(pieces))
    return special


def tokenizer_unknown_id(tokenizer):
    """The id a tokenizer gives unknown pieces (`<unk>`, `[UNK]`), or None if it names none."""
    value = getattr(tokenizer, "unk_token_id", None)
    if value is None and getattr(tokenizer, "oov_token", None) is not None:
        value = tokenizer.token_to_id(tokenizer.oov_token)
    return None if value is None else int(value)
