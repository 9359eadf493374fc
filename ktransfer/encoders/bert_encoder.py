"""`BertEncoder`: a pretrained BERT as one Keras layer with trainable toggles."""

import math

from ktransfer._keras import keras

import keras_hub
import tensorflow as tf

from ktransfer.encoders.base import Encoder
from ktransfer.encoders.bert_presets import HIDDEN_ACTIVATIONS  # noqa: F401  (public here too)
from ktransfer.encoders import keras_hub_adapter as adapter
from ktransfer.encoders.bert_presets import resolve_preset

POOLING_MODES = ("cls", "mean", "pooled", None)


@keras.saving.register_keras_serializable(package="ktransfer")
class PrefixedTextClassifierPreprocessor(keras_hub.models.BertTextClassifierPreprocessor):
    """BERT preprocessing that puts a fixed text before every input segment.

    For checkpoints trained with an instruction prefix, such as e5's
    `"query: "` (and `"passage: "` for retrieved documents): the prefix is
    part of the preprocessor, so training, `ktransfer.predict` and exported
    SavedModels all tokenise `prefix + text`. Each segment of a pair gets it.

    Args:
        tokenizer: a KerasHub tokenizer (`BertTokenizer`, or the
            `XLMRobertaTokenizer` of an XLM-R tokenised BERT).
        text_prefix: the text put before every input string.
        sequence_length, truncate: as in `BertTextClassifierPreprocessor`.

    Example:

    ```python
    encoder = kt.encoders.BertEncoder.from_preset(
        "multilingual-e5-small", pooling="mean", text_prefix="query: "
    )
    encoder.preprocessor(["how are you?"])  # tokenises "query: how are you?"
    ```
    """

    def __init__(self, tokenizer, text_prefix="", **kwargs):
        if not isinstance(text_prefix, str):
            raise TypeError(f"`text_prefix` must be a str. Received: {text_prefix!r}")
        super().__init__(tokenizer, **kwargs)
        self.text_prefix = text_prefix

    def call(self, x, y=None, sample_weight=None):
        if self.text_prefix:
            segments = x if isinstance(x, tuple) else (x,)
            segments = tuple(
                tf.strings.join([self.text_prefix, tf.convert_to_tensor(segment, tf.string)])
                for segment in segments
            )
            x = segments if isinstance(x, tuple) else segments[0]
        return super().call(x, y, sample_weight)

    def get_config(self):
        config = super().get_config()
        config["text_prefix"] = self.text_prefix
        return config


_HALF_DTYPES = ("bfloat16", "float16")


@tf.custom_gradient
def _exact_gelu_float32(x):
    cdf = 0.5 * (1.0 + tf.math.erf(x * (1.0 / math.sqrt(2.0))))

    def gradient(upstream):
        pdf = tf.exp(-0.5 * tf.square(x)) * (1.0 / math.sqrt(2.0 * math.pi))
        return upstream * (cdf + x * pdf)

    return x * cdf, gradient


def _exact_gelu(x):
    """The exact GELU `x * Phi(x)`, in float32, with its derivative written out.

    Same values as `keras.activations.gelu(x, approximate=False)` (to float32
    rounding; tested), but cheaper to train: autodiff of the erf formula
    runs about ten elementwise ops backward where `Phi(x) + x * phi(x)`
    needs four, and TensorFlow's CPU erf on bfloat16 is several times
    slower than on float32, so half-precision inputs are computed in
    float32 and cast back. Measured on this 2-core CPU, forward + backward
    of a [512, 1536] activation: 1.8 vs 3.0 ms in float32, 2.5 vs 6.9 ms
    under bfloat16.
    """
    dtype = tf.as_dtype(x.dtype)
    if dtype == tf.float32:
        return _exact_gelu_float32(x)
    if dtype.name in _HALF_DTYPES:
        return tf.cast(_exact_gelu_float32(tf.cast(x, tf.float32)), dtype)
    return keras.activations.gelu(x, approximate=False)


def _approximate_gelu(x):
    """The tanh GELU; half-precision inputs are computed in float32 (see `_exact_gelu`)."""
    dtype = tf.as_dtype(x.dtype)
    if dtype.name in _HALF_DTYPES:
        return tf.cast(keras.activations.gelu(tf.cast(x, tf.float32), approximate=True), dtype)
    return keras.activations.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="ktransfer")
class BertEncoder(Encoder):
    """A pretrained BERT encoder as one Keras layer, with trainable toggles.

    Wraps a `keras_hub.models.BertBackbone` (`.backbone`) and keeps the
    matching tokenizer-and-packer (`.preprocessor`, a
    `keras_hub.models.BertTextClassifierPreprocessor`) beside it. The layer
    takes the dict that the preprocessor produces (`token_ids`, `segment_ids`,
    `padding_mask`) and returns one vector per text (`pooling="cls"`,
    `"mean"`, `"pooled"`) or one per token (`pooling=None`). Tokenisation
    stays in the tf.data pipeline (see `ktransfer.data.prepare`), so the same
    model trains on CPU, GPU and TPU; `ktransfer.predict` and
    `ktransfer.export.save` put it back in front for raw strings.

    Args:
        backbone: a `keras_hub.models.BertBackbone`.
        preprocessor: a `keras_hub.models.BertTextClassifierPreprocessor`,
            or None.
        pooling: `"cls"` (the [CLS] token's final hidden state), `"mean"`
            (average over non-padding tokens; right for sentence-transformers
            checkpoints such as MiniLM), `"pooled"` (BERT's tanh pooler on
            [CLS]) or None (per-token output `[batch, length, hidden]`).
        trainable: True (everything trains), False (frozen: feature
            extraction) or an int k (only the top k transformer blocks and
            the pooler train; embeddings and lower blocks are frozen). The
            tanh pooler trains only with `pooling="pooled"`, the one mode
            that uses it.
        hidden_activation: `"gelu"` (exact) or `"gelu_approximate"` (tanh),
            the activation of the feed-forward blocks. None keeps the
            backbone's own (KerasHub builds the tanh approximation).
        original_vocabulary_size: set by `trim_vocabulary` (None otherwise):
            the tokenizer's vocabulary size. The encoder then holds
            `token_id_map` (int32, one entry per tokenizer id), which maps
            the preprocessor's ids to rows of the trimmed token embedding
            before the backbone runs.

    Example:

    ```python
    import keras, ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset(
        "minilm", sequence_length=64, pooling="mean", trainable=2
    )
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    features = encoder.preprocessor(["a great film", "a dull film"])
    logits = model(features)  # shape (2, 2)
    ```
    """

    def __init__(
        self,
        backbone,
        preprocessor=None,
        pooling="cls",
        trainable=True,
        hidden_activation=None,
        original_vocabulary_size=None,
        **kwargs,
    ):
        if not isinstance(backbone, keras_hub.models.BertBackbone):
            raise TypeError(
                "`backbone` must be a keras_hub.models.BertBackbone (use "
                "BertEncoder.from_preset to load one). Received: "
                f"{type(backbone).__name__}"
            )
        if pooling not in POOLING_MODES:
            raise ValueError(
                f"`pooling` must be one of {POOLING_MODES}. Received: {pooling!r}"
            )
        if hidden_activation not in (None, "gelu", "gelu_approximate"):
            raise ValueError(
                "`hidden_activation` must be None, 'gelu' or 'gelu_approximate'. "
                f"Received: {hidden_activation!r}"
            )
        _check_trainable(trainable, backbone.num_layers)
        if original_vocabulary_size is not None and (
            isinstance(original_vocabulary_size, bool)
            or not isinstance(original_vocabulary_size, int)
            or original_vocabulary_size < backbone.vocabulary_size
        ):
            raise ValueError(
                "`original_vocabulary_size` (set by `trim_vocabulary`) must be an int at "
                f"least the backbone's vocabulary size {backbone.vocabulary_size}. "
                f"Received: {original_vocabulary_size!r}"
            )
        super().__init__(**kwargs)
        self.backbone = backbone
        self.original_vocabulary_size = original_vocabulary_size
        # After `trim_vocabulary`: the tokenizer's id -> the trimmed embedding's row.
        self.token_id_map = None
        if original_vocabulary_size is not None:
            self.token_id_map = self.add_weight(
                shape=(original_vocabulary_size,),
                dtype="int32",
                initializer="zeros",
                trainable=False,
                name="token_id_map",
            )
        self.preprocessor = preprocessor
        self.pooling = pooling  # before set_trainable: it decides about the pooler
        self.hidden_activation = hidden_activation
        if hidden_activation is not None:
            activation = (
                _exact_gelu if hidden_activation == "gelu" else _approximate_gelu
            )
            for block in backbone.transformer_layers:
                adapter.set_feedforward_activation(block, activation)
        # Under a mixed policy, attention probabilities in float32: Keras already
        # runs layer normalisation in float32 and ktransfer's heads return
        # float32 logits; the softmax is the remaining reduction in bf16/fp16.
        adapter.softmax_in_float32(backbone)
        self._lora_rank = None
        self._lora_target_layer_names = None
        self._trainable_blocks = None
        self.set_trainable(trainable)
        self.supports_masking = False

    @classmethod
    def from_preset(
        cls,
        preset,
        sequence_length=None,
        pooling="cls",
        trainable=True,
        load_weights=True,
        text_prefix=None,
        **kwargs,
    ):
        """Load a pretrained BERT and its tokenizer.

        Args:
            preset: a KerasHub BERT preset name (e.g. `"bert_base_en_uncased"`,
                needs hub access), a `kaggle://`/`hf://` handle, a local
                KerasHub preset folder, a local Hugging Face BERT folder
                (config.json + model.safetensors + vocab.txt, or
                sentencepiece.bpe.model for an XLM-R tokenised one such as
                intfloat/multilingual-e5-small), or a ktransfer asset name
                (`"minilm"`, `"multilingual-e5-small"`, fetched with
                `ktransfer assets fetch`).
            sequence_length: texts are truncated and padded to this length
                (default 128, or the checkpoint's maximum if smaller).
            pooling, trainable: see the class docstring.
            load_weights: False builds the architecture with random weights.
            text_prefix: a text put before every input (e.g. e5's
                `"query: "`); the preprocessor is then a
                `PrefixedTextClassifierPreprocessor`. None: texts as they are.
        """
        if sequence_length is not None and (
            not isinstance(sequence_length, int) or sequence_length < 2
        ):
            raise ValueError(
                "`sequence_length` must be an int >= 2 (room for [CLS] and "
                f"[SEP]). Received: {sequence_length!r}"
            )
        location, hidden_activation = resolve_preset(preset)
        try:
            backbone = keras_hub.models.BertBackbone.from_preset(
                location, load_weights=load_weights
            )
            if sequence_length is None:
                sequence_length = min(128, backbone.max_sequence_length)
            preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
                location, sequence_length=sequence_length
            )
        except (OSError, ValueError) as error:
            raise ValueError(
                f"Could not load BERT preset {preset!r} ({location}): {error}. "
                "Without access to Kaggle or Hugging Face, use a local folder or "
                "`ktransfer assets fetch minilm` and preset='minilm'."
            ) from error
        if text_prefix is not None:
            preprocessor = PrefixedTextClassifierPreprocessor(
                preprocessor.tokenizer,
                text_prefix=text_prefix,
                sequence_length=sequence_length,
                truncate=preprocessor.truncate,
            )
        if sequence_length > backbone.max_sequence_length:
            raise ValueError(
                f"`sequence_length`={sequence_length} exceeds the checkpoint's "
                f"maximum of {backbone.max_sequence_length} positions."
            )
        return cls(
            backbone=backbone,
            preprocessor=preprocessor,
            pooling=pooling,
            trainable=trainable,
            hidden_activation=hidden_activation,
            **kwargs,
        )

    # --- trainable toggles -------------------------------------------------
    @property
    def num_blocks(self):
        """The number of transformer blocks."""
        return self.backbone.num_layers

    @property
    def trainable_blocks(self):
        """The k of `set_trainable(k)`, or None after a bool toggle."""
        return self._trainable_blocks

    def layer_groups(self):
        """The encoder's layers from the input up: `[embeddings, block 1, ..., block L, pooler]`.

        `embeddings` holds the token, position and segment embeddings (with
        their sum, layer norm and dropout), block i is the i-th transformer
        block from the bottom, and the pooler is BERT's tanh dense layer.
        `set_trainable(k)`, `kt.callbacks.GradualUnfreezing`,
        `kt.optimizers.layerwise` and LoRA all work from these groups.

        Example:

        ```python
        encoder = kt.encoders.BertEncoder.from_preset("minilm")
        groups = encoder.layer_groups()
        len(groups) == encoder.num_blocks + 2        # True
        [layer.name for layer in groups[1]]          # ['transformer_layer_0']
        ```
        """
        return adapter.backbone_layer_groups(self.backbone)

    def set_trainable(self, trainable):
        """Choose what trains: True, False, or int k (top k blocks + pooler).

        With an int k, the embeddings and the lower `L - k` blocks of
        `layer_groups()` are frozen. Keras builds a model's train step for
        the variables trainable when `compile` is called: call
        `model.compile(...)` again after a toggle.
        """
        _check_trainable(trainable, self.backbone.num_layers)
        if isinstance(trainable, bool):
            self._trainable_blocks = None
            self.trainable = trainable
            return
        self.trainable = True  # resets `_trainable_blocks` (see __setattr__)
        self._trainable_blocks = trainable
        groups = self.layer_groups()
        for group in groups[: len(groups) - 1 - trainable]:  # embeddings + lower blocks
            for layer in group:
                layer.trainable = False

    def __setattr__(self, name, value):
        # `encoder.trainable = bool` is the plain Keras toggle; forget any k.
        if name == "trainable" and getattr(self, "_trainable_blocks", None) is not None:
            object.__setattr__(self, "_trainable_blocks", None)
        super().__setattr__(name, value)
        if name == "trainable" and hasattr(self, "backbone"):
            # Keras' setter does not always reach every layer nested in the
            # functional backbone (a sublayer frozen by `set_trainable(k)`
            # stayed frozen): set each layer explicitly.
            for layer in adapter.flatten_layers(self.backbone):
                layer.trainable = bool(value)
            if getattr(self, "pooling", "pooled") != "pooled":
                # The tanh pooler only feeds pooling="pooled": keep it out of the
                # trainable variables (no optimizer slots, no missing-gradient warnings).
                for layer in self.layer_groups()[-1]:
                    layer.trainable = False

    # --- LoRA ----------------------------------------------------------------
    @property
    def lora_rank(self):
        """The rank given to `enable_lora`, or None when LoRA is off."""
        return getattr(self, "_lora_rank", None)

    def lora_layers(self):
        """The layers of the transformer blocks that carry LoRA factors (empty when off)."""
        return [
            layer
            for group in self.layer_groups()[1:-1]
            for block in group
            for layer in adapter.flatten_layers(block)
            if getattr(layer, "lora_enabled", False)
        ]

    def enable_lora(self, rank=8, target_layer_names=None):
        """Train low-rank adapters (LoRA, Hu et al. 2021) instead of the encoder.

        Calls KerasHub's `backbone.enable_lora(rank)`: every weight of the
        backbone is frozen, and the query and value projections of each
        transformer block (the blocks of `layer_groups()`) get trainable
        factors `A` (random) and `B` (zeros at first) whose product is added
        to the frozen kernel (Keras' `EinsumDense` LoRA: `A` is
        `[hidden, heads, rank]`, `B` is `[rank, head_dim]`). Only those
        factors, and the layers after the encoder (the head), train: 445k
        parameters for MiniLM at rank 8 instead of 22.7M. Call it before
        `model.compile` (a toggle such as `set_trainable` afterwards unfreezes
        the base weights again).

        A `.keras` file keeps LoRA on (the config stores the rank) and holds
        the merged kernels `W + A B`, as Keras saves them, so the reloaded
        model answers the same; its factors restart at zero, so continuing
        LoRA training from it starts from the merged weights. An exported
        SavedModel answers like the in-memory model;
        `ktransfer.methods.merge_lora(model)` folds the factors into plain
        kernels first.

        Args:
            rank: the rank of the factors, a positive int.
            target_layer_names: names of the layers to adapt; default
                KerasHub's `backbone.default_lora_layer_names()` (BERT's
                `query` and `value` projections).

        Example:

        ```python
        encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
        encoder.enable_lora(rank=8)
        model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
        ```
        """
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"`rank` must be a positive int. Received: {rank!r}")
        if self.lora_rank is not None:
            raise ValueError(
                f"LoRA is already enabled on this encoder (rank {self.lora_rank}); "
                "it can be enabled once. Load a fresh encoder to change the rank."
            )
        names = target_layer_names or self.backbone.default_lora_layer_names()
        block_layer_names = {
            layer.name
            for group in self.layer_groups()[1:-1]
            for block in group
            for layer in adapter.flatten_layers(block)
        }
        if not block_layer_names.intersection(names):
            raise ValueError(
                f"No layer of the transformer blocks is named any of {list(names)}: LoRA "
                "would adapt nothing. Pass `target_layer_names` that exist, e.g. "
                "['query', 'value']."
            )
        self.trainable = True  # the encoder itself; enable_lora refreezes the backbone
        self.backbone.enable_lora(rank, target_layer_names=target_layer_names)
        for layer in self.lora_layers():
            if getattr(layer, "bias", None) is not None:
                # KerasHub leaves the adapted layers' biases trainable; LoRA
                # (and KerasHub's own `save_lora_weights`) keeps them frozen.
                layer.bias.trainable = False
        self._lora_rank = rank
        self._lora_target_layer_names = (
            list(target_layer_names) if target_layer_names is not None else None
        )

    # --- vocabulary trimming -------------------------------------------------
    @property
    def vocabulary_size(self):
        """Rows of the token embedding (after `trim_vocabulary`, the kept pieces)."""
        return self.backbone.vocabulary_size

    @property
    def trim_summary(self):
        """What `trim_vocabulary` kept (a dict), or None for an untrimmed encoder."""
        return getattr(self, "_trim_summary", None)

    def trim_vocabulary(self, texts, batch_size=1024):
        """A copy of this encoder that keeps only the word pieces `texts` use.

        The tokenizer is left as it is; the copy's token embedding keeps the
        rows of the pieces that tokenising `texts` produces (with the
        preprocessor's `text_prefix`, e.g. e5's `"query: "`) plus the
        tokenizer's special tokens, and a table stored in the encoder
        (`token_id_map`, a non-trainable int32 weight, one entry per
        original id) maps each tokenizer id to its row; a piece `texts` never
        produced maps to `<unk>` (`[UNK]`). The same code serves WordPiece
        (MiniLM, BERT) and SentencePiece (e5's XLM-R vocabulary) tokenizers,
        and every preprocessor that reads the tokenizer (tagging, question
        answering) works unchanged. The mapping is part of the model, so a
        `.keras` file or an exported SavedModel maps ids the same way.

        On texts whose pieces are all kept, the copy computes exactly what
        this encoder computes; the rest of it (blocks, pooling, trainable
        toggles, hidden activation) is the same, and the preprocessor is
        shared. Trim before `enable_lora`.

        Args:
            texts: the corpus (a list / array / pandas Series of str): e.g.
                every text the model will be trained on and asked about.
            batch_size: texts tokenised per call.

        Returns:
            The trimmed `BertEncoder` (this one is unchanged). Its
            `trim_summary` says how many pieces and parameters it kept.

        Example:

        ```python
        import ktransfer as kt
        encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=32, pooling="mean")
        small = encoder.trim_vocabulary(["a great film", "a dull film"])
        small.vocabulary_size                     # the kept pieces + the special tokens
        small.trim_summary["parameters_after"] < small.trim_summary["parameters_before"]  # True
        features = encoder.preprocessor(["a great film"])
        # small(features) equals encoder(features)
        ```
        """
        import numpy as np

        if self.lora_rank is not None:
            raise ValueError(
                "trim_vocabulary copies the backbone's plain weights: trim before "
                "`enable_lora`, not after (LoRA is on, rank "
                f"{self.lora_rank})."
            )
        tokenizer = getattr(self.preprocessor, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "trim_vocabulary tokenises the corpus with the encoder's preprocessor, but "
                "this encoder has none (or it has no `tokenizer`): load it with "
                "BertEncoder.from_preset, or pass preprocessor=."
            )
        if isinstance(texts, (str, bytes)):
            raise ValueError(
                "`texts` must be a list of texts (the corpus), not one string: "
                "wrap a single text in a list."
            )
        texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in list(texts)]
        if not texts:
            raise ValueError("`texts` is empty: give the corpus whose word pieces to keep.")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(
                f"texts[{bad}] is a {type(texts[bad]).__name__}, not a str: pass texts."
            )
        prefix = getattr(self.preprocessor, "text_prefix", "") or ""
        current_size = self.original_vocabulary_size or self.backbone.vocabulary_size
        if self.token_id_map is not None:
            current_map = keras.ops.convert_to_numpy(self.token_id_map).astype("int64")
        else:
            current_map = np.arange(current_size, dtype="int64")
        unk_id = _unknown_token_id(tokenizer)
        used = np.zeros(current_size, dtype=bool)
        for special in _special_token_ids(tokenizer) + [unk_id]:
            used[special] = True
        for start in range(0, len(texts), batch_size):
            batch = [prefix + text for text in texts[start : start + batch_size]]
            used[_flat_ids(tokenizer(tf.constant(batch)))] = True
        kept = np.flatnonzero(used)
        rows = np.unique(current_map[kept])  # rows of the current embedding to keep
        new_map = np.full(current_size, np.searchsorted(rows, current_map[unk_id]), dtype="int64")
        new_map[kept] = np.searchsorted(rows, current_map[kept])
        backbone = adapter.backbone_with_token_rows(self.backbone, rows)
        trimmed = type(self)(
            backbone=backbone,
            preprocessor=self.preprocessor,
            pooling=self.pooling,
            trainable=self._trainable_blocks if self._trainable_blocks is not None
            else self.trainable,
            hidden_activation=self.hidden_activation,
            original_vocabulary_size=int(current_size),
            dtype=self.dtype_policy,
        )
        trimmed.token_id_map.assign(new_map.astype("int32"))
        hidden = self.backbone.hidden_dim
        before = self.backbone.count_params()
        after = backbone.count_params()
        trimmed._trim_summary = {
            "vocabulary_size_before": int(self.backbone.vocabulary_size),
            "vocabulary_size_after": int(len(rows)),
            "parameters_before": int(before),
            "parameters_after": int(after),
            "token_embedding_parameters_before": int(self.backbone.vocabulary_size * hidden),
            "token_embedding_parameters_after": int(len(rows) * hidden),
            "texts": len(texts),
        }
        return trimmed

    # --- forward -------------------------------------------------------------
    def build(self, input_shape=None):
        self.built = True

    def call(self, inputs, training=None):
        if not isinstance(inputs, dict) or "token_ids" not in inputs:
            raise TypeError(
                "BertEncoder takes the dict produced by `encoder.preprocessor` "
                "(token_ids, segment_ids, padding_mask), e.g. through "
                "`ktransfer.data.prepare`. For raw strings use "
                "`ktransfer.predict(model, texts)` or an exported SavedModel."
            )
        token_ids = inputs["token_ids"]
        padding_mask = inputs.get("padding_mask")
        if padding_mask is None:
            # BERT pads with 0; an XLM-R tokenizer pads with 1 (and 0 is <s>).
            tokenizer = getattr(self.preprocessor, "tokenizer", None)
            padding_mask = keras.ops.not_equal(token_ids, getattr(tokenizer, "pad_token_id", 0))
        segment_ids = inputs.get("segment_ids")
        if segment_ids is None:
            segment_ids = keras.ops.zeros_like(token_ids)
        if self.token_id_map is not None:
            # The tokenizer's ids -> rows of the trimmed embedding (unseen pieces -> <unk>).
            token_ids = keras.ops.take(self.token_id_map, keras.ops.cast(token_ids, "int32"))
        outputs = self.backbone(
            {
                "token_ids": token_ids,
                "segment_ids": segment_ids,
                "padding_mask": padding_mask,
            },
            training=training,
        )
        if self.pooling == "pooled":
            return outputs["pooled_output"]
        sequence = outputs["sequence_output"]
        if self.pooling == "cls":
            return sequence[:, 0, :]
        if self.pooling == "mean":
            # Sum in float32: under mixed_bfloat16 a long bf16 sum loses digits.
            values = keras.ops.cast(sequence, "float32")
            mask = keras.ops.cast(padding_mask, "float32")[:, :, None]
            total = keras.ops.sum(values * mask, axis=1)
            count = keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
            return keras.ops.cast(total / count, sequence.dtype)
        return sequence

    def compute_output_shape(self, input_shape):
        shape = input_shape["token_ids"] if isinstance(input_shape, dict) else input_shape
        if self.pooling is None:
            return tuple(shape) + (self.backbone.hidden_dim,)
        return (shape[0], self.backbone.hidden_dim)

    @property
    def output_dim(self):
        return self.backbone.hidden_dim

    # --- serialisation -------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "preprocessor": keras.saving.serialize_keras_object(self.preprocessor)
                if self.preprocessor is not None
                else None,
                "pooling": self.pooling,
                "hidden_activation": self.hidden_activation,
            }
        )
        if self.original_vocabulary_size is not None:
            config["original_vocabulary_size"] = self.original_vocabulary_size
        if self._trainable_blocks is not None:
            config["trainable"] = self._trainable_blocks
        if self.lora_rank is not None:
            config["lora_rank"] = self.lora_rank
            if self._lora_target_layer_names is not None:
                config["lora_target_layer_names"] = self._lora_target_layer_names
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("preprocessor") is not None:
            config["preprocessor"] = keras.saving.deserialize_keras_object(
                config["preprocessor"]
            )
        lora_rank = config.pop("lora_rank", None)
        lora_target_layer_names = config.pop("lora_target_layer_names", None)
        encoder = cls(**config)
        if lora_rank is not None:
            encoder.enable_lora(lora_rank, target_layer_names=lora_target_layer_names)
        return encoder


def _special_token_ids(tokenizer):
    """The ids of a KerasHub tokenizer's special tokens ([CLS], <s>, <pad>, [MASK], ...)."""
    ids = set()
    try:
        ids.update(int(i) for i in tokenizer.special_token_ids)
    except (AttributeError, ValueError):
        pass
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id",
                 "start_token_id", "end_token_id", "unk_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            ids.add(int(value))
    return sorted(ids)


def _flat_ids(ids):
    """The distinct ids of a tokenizer's answer (ragged / dense tensor, or nested lists)."""
    import numpy as np

    if isinstance(ids, tf.RaggedTensor):
        ids = ids.flat_values
    if isinstance(ids, (tf.Tensor, np.ndarray)):
        return np.unique(np.asarray(ids).reshape(-1)).astype("int64")
    rows = [np.asarray(row, dtype="int64").reshape(-1) for row in ids]
    return np.unique(np.concatenate(rows)) if rows else np.zeros(0, "int64")


def _unknown_token_id(tokenizer):
    """The id unseen pieces map to: `<unk>` (SentencePiece) or `[UNK]` (WordPiece)."""
    value = getattr(tokenizer, "unk_token_id", None)
    if value is None and getattr(tokenizer, "oov_token", None) is not None:
        value = tokenizer.token_to_id(tokenizer.oov_token)
    if value is None:
        raise ValueError(
            f"The tokenizer ({type(tokenizer).__name__}) names no unknown token "
            "(`unk_token_id` or `oov_token`): trim_vocabulary has nothing to map unseen "
            "pieces to."
        )
    return int(value)


def _check_trainable(trainable, num_layers):
    if isinstance(trainable, bool):
        return
    if isinstance(trainable, int) and 0 <= trainable <= num_layers:
        return
    raise ValueError(
        "`trainable` must be True, False, or an int k in [0, "
        f"{num_layers}] (train only the top k of the {num_layers} transformer "
        f"blocks and the pooler). Received: {trainable!r}"
    )
