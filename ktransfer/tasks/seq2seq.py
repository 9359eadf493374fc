"""`Seq2Seq`: an encoder-decoder warm-started from a pretrained BERT encoder.

The encoder is a ktransfer `BertEncoder` (per-token outputs); the decoder
is a stack of KerasHub `TransformerDecoder` blocks with the encoder's sizes,
initialised from the same checkpoint as in Rothe, Narayan & Severyn (2020,
"Leveraging Pre-trained Checkpoints for Sequence Generation Tasks",
BERT2BERT):

- `decoder_init="warm_start"`: each decoder block's self-attention,
  feed-forward layers and layer norms start as copies of the encoder block
  of the same depth; the cross-attention is new (random);
- `"shared"`: the decoder blocks use the encoder blocks' weights themselves
  (one set of weights for both; only cross-attention is the decoder's own);
- `"random"`: the decoder blocks are random (the baseline).

In every mode the decoder reads the checkpoint's word embeddings (shared
with the encoder, and tied to the output projection: logits are hidden
states times the embedding matrix) and its segment-0 embedding; its position
embeddings and embedding layer norm are copies of the checkpoint's
(`"shared"`: the encoder's own layers). The feed-forward activation is the
encoder's (KerasHub's BERT uses the tanh-approximate GELU; a checkpoint
converted from Hugging Face may use the exact one), so a warm-started block
computes what the encoder block computes.

```python
import ktransfer as kt
s2s = kt.tasks.Seq2Seq.from_preset("minilm", decoder_init="warm_start",
                                   sequence_length=32, target_length=16)
s2s.compile()
s2s.fit(x=["a great film", "a dull film"], y=["great", "dull"], batch_size=2, epochs=1)
s2s.generate(["a great film"])         # a list of strings (greedy decoding)
s2s.export("saved_models/s2s/1")       # serving_default(text) -> generated
```

With a large vocabulary (e5's 250k XLM-R pieces) trim it to the corpus first
(`trim_texts=` sources and targets, or `Seq2Seq(encoder=encoder.trim_vocabulary(texts))`),
so that the tied output projection has a row per piece the corpus uses.
"""

import numpy as np

from ktransfer._keras import keras

import keras_hub
import tensorflow as tf

from ktransfer.encoders import keras_hub_adapter as adapter
from ktransfer.encoders.bert_encoder import BertEncoder
from ktransfer.tasks.serving import check_text_batch
from ktransfer.tasks.serving import text_signature
from ktransfer.tasks.task import Task
from ktransfer.tasks.task import text_columns

DECODER_INITS = ("warm_start", "shared", "random")
SAMPLERS = ("greedy", "beam")
DEFAULT_TARGET_LENGTH = 64
DEFAULT_GENERATE_BATCH_SIZE = 32
# The decoder's new weights (cross-attention, random blocks) start as BERT's.
INITIALIZER_STDDEV = 0.02


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def special_token_ids(tokenizer):
    """`(start, end, pad)` ids of a BERT (WordPiece) or XLM-R (SentencePiece) tokenizer.

    WordPiece BERT: `[CLS]`, `[SEP]`, `[PAD]`; an XLM-R tokenizer: `<s>`,
    `</s>`, `<pad>`. The decoder starts from `start` and stops at `end`.

    Example:

    ```python
    import keras_hub
    from ktransfer.tasks.seq2seq import special_token_ids
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]
    special_token_ids(keras_hub.models.BertTokenizer(vocabulary=vocab))   # (2, 3, 0)
    ```
    """
    def first(*names):
        for name in names:
            value = getattr(tokenizer, name, None)
            if value is not None:
                return int(value)
        raise ValueError(
            f"{type(tokenizer).__name__} has none of {names}: Seq2Seq needs a tokenizer "
            "with start, end and padding tokens (a BERT WordPiece or XLM-R tokenizer)."
        )

    return (
        first("cls_token_id", "start_token_id"),
        first("sep_token_id", "end_token_id"),
        first("pad_token_id"),
    )


def _unknown_token_id(tokenizer):
    """The tokenizer's unknown token (`<unk>`, `[UNK]`), or None if it names none."""
    value = getattr(tokenizer, "unk_token_id", None)
    if value is None and getattr(tokenizer, "oov_token", None) is not None:
        value = tokenizer.token_to_id(tokenizer.oov_token)
    return None if value is None else int(value)


def _check_length(value, name, minimum=2):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received: {value!r}")
    return int(value)


@keras.saving.register_keras_serializable(package="ktransfer")
class Seq2SeqPreprocessor(keras_hub.models.Preprocessor):
    """Source and target texts -> the inputs and labels of a `Seq2Seq` (runs in tf.data).

    Source: `[CLS] source [SEP]` padded to `sequence_length` (`token_ids`,
    `segment_ids`, `padding_mask`: what a `BertEncoder` reads). Target:
    `[CLS] target [SEP]` packed to `target_length + 1` and shifted for
    teacher forcing: `decoder_token_ids` are all but its last token, the
    labels all but its first, and the sample weights are 1 on real tokens, 0
    on padding (so padding is masked in the loss). Without targets, the
    decoder input is the start token then padding (the first step of
    generation).

    Args:
        tokenizer: a KerasHub BERT (or XLM-R) tokenizer.
        sequence_length: source tokens, `[CLS]` and `[SEP]` included.
        target_length: decoder positions (tokens generated at most).

    Example:

    ```python
    import keras_hub
    from ktransfer.tasks.seq2seq import Seq2SeqPreprocessor
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "film"]
    preprocessor = Seq2SeqPreprocessor(keras_hub.models.BertTokenizer(vocabulary=vocab),
                                       sequence_length=8, target_length=4)
    x, y, weights = preprocessor(["a film"], ["film"])
    y.numpy().tolist()         # [[6, 3, 0, 0]]
    weights.numpy().tolist()   # [[1.0, 1.0, 0.0, 0.0]]
    ```
    """

    def __init__(self, tokenizer, sequence_length=128, target_length=DEFAULT_TARGET_LENGTH,
                 **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.sequence_length = _check_length(sequence_length, "sequence_length")
        self.target_length = _check_length(target_length, "target_length", minimum=1)
        # The packers need the special tokens' ids, known once the vocabulary
        # is (a tokenizer revived from a config gets it from the `.keras` assets).
        self.source_packer = None
        self.target_packer = None
        self.built = True

    @property
    def start_token_id(self):
        return special_token_ids(self.tokenizer)[0]

    @property
    def end_token_id(self):
        return special_token_ids(self.tokenizer)[1]

    @property
    def pad_token_id(self):
        return special_token_ids(self.tokenizer)[2]

    def _make_packers(self):
        if self.source_packer is not None:
            return
        start, end, pad = special_token_ids(self.tokenizer)
        self.source_packer = keras_hub.layers.StartEndPacker(
            start_value=start, end_value=end, pad_value=pad,
            sequence_length=self.sequence_length, return_padding_mask=True,
        )
        self.target_packer = keras_hub.layers.StartEndPacker(
            start_value=start, end_value=end, pad_value=pad,
            sequence_length=self.target_length + 1, return_padding_mask=True,
        )

    def call(self, x, y=None, sample_weight=None):
        x = tf.convert_to_tensor(x, tf.string)
        if y is not None:
            y = tf.convert_to_tensor(y, tf.string)
        if tf.executing_eagerly():
            # The tokenizer's TensorFlow path, as in tf.data and the export
            # (eagerly KerasHub would take its pure-Python path).
            return tf.function(self._pack, autograph=False)(x, y, sample_weight)
        return self._pack(x, y, sample_weight)

    def _pack(self, x, y, sample_weight):
        self._make_packers()
        token_ids, padding_mask = self.source_packer(self.tokenizer(x))
        features = {
            "token_ids": token_ids,
            "segment_ids": tf.zeros_like(token_ids),
            "padding_mask": tf.cast(padding_mask, tf.int32),
        }
        if y is None:
            shape = tf.shape(token_ids)[:-1]
            start = tf.fill(tf.concat([shape, [1]], 0), self.start_token_id)
            rest = tf.fill(tf.concat([shape, [self.target_length - 1]], 0), self.pad_token_id)
            features["decoder_token_ids"] = tf.concat([start, rest], axis=-1)
            features["decoder_padding_mask"] = tf.cast(
                tf.equal(tf.range(self.target_length), 0), tf.int32
            ) * tf.ones_like(features["decoder_token_ids"])
            return features
        target_ids, target_mask = self.target_packer(self.tokenizer(y))
        target_mask = tf.cast(target_mask, tf.int32)
        features["decoder_token_ids"] = target_ids[..., :-1]
        features["decoder_padding_mask"] = target_mask[..., :-1]
        labels = target_ids[..., 1:]
        weights = tf.cast(target_mask[..., 1:], tf.float32)
        if sample_weight is not None:
            weights = weights * tf.cast(sample_weight, tf.float32)[..., None]
        return features, labels, weights

    def get_config(self):
        config = super().get_config()
        config.update({"sequence_length": self.sequence_length, "target_length": self.target_length})
        return config


@keras.saving.register_keras_serializable(package="ktransfer")
class Seq2Seq(Task):
    """An encoder-decoder over a pretrained BERT, for summarisation, translation, replies.

    Trained with teacher forcing on `(source, target)` text pairs (labels
    shifted by one, padding masked in the loss); `generate` decodes with
    KerasHub's samplers (greedy or beam search); the export decodes greedily
    inside the graph. See the module docstring for how the decoder starts.

    A trimmed encoder (`encoder.trim_vocabulary(texts)`, or
    `from_preset(..., trim_texts=texts)`) works too: the decoder's inputs,
    the labels and the tied output projection are then over the kept rows
    (`token_rows`), and generated rows go back to the tokenizer's ids
    (`token_ids_from_rows`) before detokenising, in `generate` and in the
    export alike.

    Args:
        encoder: a `kt.encoders.BertEncoder` with `pooling=None` (trimmed
            or not).
        decoder_init: `"warm_start"`, `"shared"` or `"random"`.
        target_length: decoder positions: targets are truncated to
            `target_length - 1` tokens plus the end token; at most the
            checkpoint's number of positions.
        preprocessor: `"auto"` (a `Seq2SeqPreprocessor` with the encoder's
            tokenizer and sequence length) or a `Seq2SeqPreprocessor`.

    Example:

    ```python
    import ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=32, pooling=None)
    s2s = kt.tasks.Seq2Seq(encoder=encoder, decoder_init="shared", target_length=16)
    s2s.compile()
    s2s.fit(x=["a great film"], y=["great"], epochs=1)
    s2s.generate(["a great film"], sampler="beam")   # ['...'], one string per text
    ```
    """

    preset_pooling = None

    def __init__(self, encoder=None, decoder_init="warm_start", target_length=DEFAULT_TARGET_LENGTH,
                 preprocessor="auto", **kwargs):
        kwargs.setdefault("name", "seq2seq")
        super().__init__(**kwargs)
        if not isinstance(encoder, BertEncoder):
            raise TypeError(
                "`encoder` must be a kt.encoders.BertEncoder, e.g. "
                "kt.encoders.BertEncoder.from_preset('minilm', pooling=None), or use "
                f"Seq2Seq.from_preset(...). Received: {type(encoder).__name__}"
            )
        if encoder.pooling is not None:
            raise ValueError(
                f"Seq2Seq's decoder attends to every source token, but the encoder has "
                f"pooling={encoder.pooling!r}. Load it with pooling=None."
            )
        if decoder_init not in DECODER_INITS:
            raise ValueError(
                f"`decoder_init` must be one of {DECODER_INITS}. Received: {decoder_init!r}"
            )
        backbone = encoder.backbone
        target_length = _check_length(target_length, "target_length", minimum=1)
        if target_length > backbone.max_sequence_length:
            raise ValueError(
                f"`target_length`={target_length} exceeds the checkpoint's position table "
                f"({backbone.max_sequence_length} positions), which the decoder's position "
                f"embeddings come from. Use target_length <= {backbone.max_sequence_length}."
            )
        self.encoder = encoder
        self.decoder_init = decoder_init
        self.target_length = target_length
        self._preprocessor_choice = "auto" if _is_auto(preprocessor) else "given"
        if _is_auto(preprocessor):
            source = encoder.preprocessor
            if source is None or getattr(source, "tokenizer", None) is None:
                raise ValueError(
                    "The encoder has no preprocessor (tokenizer): pass "
                    "`preprocessor=kt.tasks.Seq2SeqPreprocessor(tokenizer, ...)`."
                )
            preprocessor = Seq2SeqPreprocessor(
                source.tokenizer, sequence_length=source.sequence_length,
                target_length=target_length, name="seq2seq_preprocessor",
            )
        elif not isinstance(preprocessor, Seq2SeqPreprocessor):
            raise TypeError(
                "`preprocessor` must be 'auto' or a kt.tasks.Seq2SeqPreprocessor. "
                f"Received: {type(preprocessor).__name__}"
            )
        elif preprocessor.target_length != target_length:
            raise ValueError(
                f"The preprocessor packs targets to {preprocessor.target_length} positions "
                f"but target_length={target_length}: make them equal."
            )
        self.preprocessor = preprocessor
        self._build_decoder()
        object.__setattr__(self, "_generate_functions", {})
        self.built = True

    # --- the decoder -------------------------------------------------------------
    def _build_decoder(self):
        backbone = self.encoder.backbone
        hidden = backbone.hidden_dim
        source_length = self.preprocessor.sequence_length
        initializer = keras.initializers.TruncatedNormal(stddev=INITIALIZER_STDDEV)
        self.token_embedding = backbone.token_embedding  # shared, tied to the output
        self.segment_embedding = backbone.segment_embedding
        if self.decoder_init == "shared":
            self.decoder_position_embedding = backbone.position_embedding
            self.decoder_embeddings_layer_norm = backbone.embeddings_layer_norm
        else:
            self.decoder_position_embedding = keras_hub.layers.PositionEmbedding(
                sequence_length=self.target_length, initializer=initializer,
                name="decoder_position_embedding",
            )
            self.decoder_position_embedding.build((None, self.target_length, hidden))
            table = keras.ops.convert_to_numpy(backbone.position_embedding.position_embeddings)
            self.decoder_position_embedding.position_embeddings.assign(table[: self.target_length])
            self.decoder_embeddings_layer_norm = keras.layers.LayerNormalization(
                epsilon=backbone.embeddings_layer_norm.epsilon, name="decoder_embeddings_layer_norm",
            )
            self.decoder_embeddings_layer_norm.build((None, None, hidden))
            self.decoder_embeddings_layer_norm.set_weights(
                backbone.embeddings_layer_norm.get_weights()
            )
        self.decoder_embeddings_dropout = keras.layers.Dropout(
            backbone.dropout, name="decoder_embeddings_dropout"
        )
        self.decoder_layers = []
        for i, encoder_block in enumerate(backbone.transformer_layers):
            block = keras_hub.layers.TransformerDecoder(
                intermediate_dim=backbone.intermediate_dim,
                num_heads=backbone.num_heads,
                dropout=backbone.dropout,
                layer_norm_epsilon=encoder_block.layer_norm_epsilon,
                kernel_initializer=initializer,
                name=f"decoder_layer_{i}",
            )
            block.build((None, self.target_length, hidden), (None, source_length, hidden))
            # The encoder's feed-forward activation (tanh GELU in KerasHub's BERT).
            activation = adapter.feedforward_intermediate_dense(encoder_block).activation
            adapter.set_feedforward_activation(block, activation)
            if self.decoder_init == "warm_start":
                adapter.copy_block_weights(encoder_block, block)
            elif self.decoder_init == "shared":
                adapter.share_block_weights(encoder_block, block)
            self.decoder_layers.append(block)

    def _decoder_hidden(self, decoder_token_ids, decoder_padding_mask, encoder_output,
                        encoder_padding_mask, training=None, start_index=0, caches=None,
                        self_cache_index=None, cross_cache_index=None):
        tokens = self.token_embedding(decoder_token_ids)
        x = tokens + self.decoder_position_embedding(tokens, start_index=start_index)
        x = x + self.segment_embedding(keras.ops.zeros_like(decoder_token_ids))
        x = self.decoder_embeddings_layer_norm(x)
        x = self.decoder_embeddings_dropout(x, training=training)
        new_caches = []
        for i, block in enumerate(self.decoder_layers):
            if caches is None:
                x = block(
                    x, encoder_sequence=encoder_output,
                    decoder_padding_mask=decoder_padding_mask,
                    encoder_padding_mask=encoder_padding_mask, training=training,
                )
                continue
            x, self_cache, cross_cache = block(
                x, encoder_sequence=encoder_output, encoder_padding_mask=encoder_padding_mask,
                self_attention_cache=caches[0][:, i],
                self_attention_cache_update_index=self_cache_index,
                cross_attention_cache=caches[1][:, i],
                cross_attention_cache_update_index=cross_cache_index,
                training=False,
            )
            new_caches.append((self_cache, cross_cache))
        if caches is None:
            return x, None
        return x, (tf.stack([c[0] for c in new_caches], axis=1),
                   tf.stack([c[1] for c in new_caches], axis=1))

    def _logits(self, hidden):
        # The output projection is the word embedding matrix (tied): one logit
        # per embedding row (after `trim_vocabulary`, per kept piece).
        return keras.ops.cast(self.token_embedding(hidden, reverse=True), "float32")

    # --- a trimmed vocabulary: tokenizer ids <-> embedding rows --------------------
    @property
    def is_trimmed(self):
        """Whether the encoder's vocabulary was trimmed (`BertEncoder.trim_vocabulary`)."""
        return self.encoder.token_id_map is not None

    def token_rows(self, token_ids):
        """Tokenizer ids -> rows of the token embedding (the same ids when not trimmed).

        After `BertEncoder.trim_vocabulary` the decoder's inputs, the labels
        and the logits are over the kept rows; the encoder's `token_id_map`
        maps a tokenizer id to its row (a piece the corpus never produced to
        the `<unk>` row).
        """
        if not self.is_trimmed:
            return token_ids
        return keras.ops.take(self.encoder.token_id_map, keras.ops.cast(token_ids, "int32"))

    def token_ids_from_rows(self, rows):
        """Embedding rows -> tokenizer ids (inverse of `token_rows`; identity when not trimmed).

        Each kept row is one tokenizer id; the `<unk>` row, which every
        unseen piece maps to, goes back to the tokenizer's unknown token.
        """
        if not self.is_trimmed:
            return rows
        table = tf.convert_to_tensor(self.encoder.token_id_map)
        inverse = tf.math.unsorted_segment_max(
            tf.range(tf.size(table), dtype=table.dtype), table,
            num_segments=self.encoder.vocabulary_size,
        )
        unknown = _unknown_token_id(self.preprocessor.tokenizer)
        if unknown is not None:
            inverse = tf.tensor_scatter_nd_update(
                inverse, tf.reshape(tf.gather(table, unknown), [1, 1]), [unknown]
            )
        return tf.cast(tf.gather(inverse, tf.cast(rows, table.dtype)), rows.dtype)

    def _label_rows(self, labels):
        # In the tf.data pipeline: the map as a constant (read once, eagerly),
        # so the dataset does not capture the model's variable.
        with tf.init_scope():
            table = keras.ops.convert_to_numpy(self.encoder.token_id_map)
        return tf.gather(tf.constant(table), tf.cast(labels, tf.int32))

    def _decoder_logits(self, decoder_token_ids, decoder_padding_mask, encoder_output,
                        encoder_padding_mask, training=None):
        hidden, _ = self._decoder_hidden(decoder_token_ids, decoder_padding_mask, encoder_output,
                                         encoder_padding_mask, training=training)
        return self._logits(hidden)

    def _encode(self, inputs, training=None):
        return self.encoder(
            {key: inputs[key] for key in ("token_ids", "segment_ids", "padding_mask")},
            training=training,
        )

    def call(self, inputs, training=None):
        if not isinstance(inputs, dict) or "decoder_token_ids" not in inputs:
            raise TypeError(
                "Seq2Seq takes the dict its preprocessor makes (token_ids, segment_ids, "
                "padding_mask, decoder_token_ids, decoder_padding_mask). For texts use "
                "fit(x=sources, y=targets) and generate(texts)."
            )
        encoder_output = self._encode(inputs, training=training)
        return self._decoder_logits(
            self.token_rows(inputs["decoder_token_ids"]), inputs.get("decoder_padding_mask"),
            encoder_output, inputs["padding_mask"], training=training,
        )

    # --- training ------------------------------------------------------------------
    def preprocess_samples(self, x, y=None, sample_weight=None):
        if isinstance(x, (tuple, list)):
            raise ValueError("Seq2Seq takes one source text per example, not text pairs.")
        outputs = self.preprocessor(x, y, sample_weight)
        if y is None or not self.is_trimmed:
            return outputs
        features, labels, weights = outputs
        return features, self._label_rows(labels), weights  # labels index the logits' rows

    def encode_labels(self, y, num_examples):
        columns = text_columns(y)
        if len(columns) != 1:
            raise ValueError("`y` must be a list of target texts, one per source text.")
        targets = columns[0]
        if len(targets) != num_examples:
            raise ValueError(
                f"`x` has {num_examples} source texts but `y` has {len(targets)} target "
                "texts: give one target text per source text."
            )
        return targets

    def map_dataset_labels(self, dataset):
        spec = dataset.element_spec[1]
        if not (isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string):
            raise ValueError(
                "A Seq2Seq dataset yields (source text, target text) string pairs. "
                f"Received targets of {spec}."
            )
        return dataset

    def bucket_boundaries(self):
        # Source and decoder inputs have their own lengths: pad every batch alike.
        return None

    def fit(self, x=None, y=None, *args, **kwargs):
        """Train with teacher forcing on source texts `x` and target texts `y`.

        As `Task.fit`; `y` holds one target text per source text (or `x` is a
        `tf.data.Dataset` of `(source, target)` strings).
        """
        self._check_texts(x, "x")
        if y is not None:
            self._check_texts(y, "y")
        return super().fit(x, y, *args, **kwargs)

    @staticmethod
    def _check_texts(values, what):
        if isinstance(values, (list, tuple, np.ndarray)) and len(values) == 0:
            raise ValueError(f"`{what}` is empty: give at least one text.")

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def default_metrics(self):
        return None

    def compile(self, optimizer="auto", loss="auto", metrics="auto", weighted_metrics="auto",
                **kwargs):
        """As `Task.compile`; the default metric is token accuracy, padding excluded.

        `weighted_metrics="auto"` is `SparseCategoricalAccuracy` weighted by
        the preprocessor's padding weights.
        """
        if _is_auto(weighted_metrics):
            weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        weighted_metrics=weighted_metrics, **kwargs)

    # --- generation ------------------------------------------------------------------
    def _make_sampler(self, sampler):
        if isinstance(sampler, keras_hub.samplers.Sampler):
            return sampler
        if sampler not in SAMPLERS:
            raise ValueError(
                f"`sampler` must be one of {SAMPLERS} or a keras_hub.samplers.Sampler. "
                f"Received: {sampler!r}"
            )
        return keras_hub.samplers.get(sampler)

    def generate_token_ids(self, features, max_length=None, sampler="greedy"):
        """Token ids `[batch, max_length]` decoded from preprocessed `features` (start token first).

        Tokenizer ids (with a trimmed vocabulary the sampler picks embedding
        rows, mapped back by `token_ids_from_rows`), ready for `detokenize`.

        Key/value caches as in KerasHub's `BartSeq2SeqLM`: the decoder's
        self-attention keys and values of the tokens so far, and the
        cross-attention keys and values of the encoder's outputs (computed
        once), travel in the sampler's cache with the encoder's outputs, so
        each step runs the decoder on one token (and beam search repeats them
        per beam).
        """
        max_length = self.target_length if max_length is None else max_length
        sampler = self._make_sampler(sampler)
        # The decoder reads and the sampler writes embedding rows (the same
        # as the tokenizer ids unless the vocabulary was trimmed).
        start, end, pad = (
            self.token_rows(tf.constant(token_id, tf.int32)) for token_id in
            (self.preprocessor.start_token_id, self.preprocessor.end_token_id,
             self.preprocessor.pad_token_id)
        )
        encoder_output = self._encode(features, training=False)
        encoder_padding_mask = tf.cast(features["padding_mask"], tf.int32)
        batch = tf.shape(features["token_ids"])[0]
        prompt = tf.concat(
            [tf.fill([batch, 1], start), tf.fill([batch, max_length - 1], pad)], axis=1
        )
        prompt = tf.cast(prompt, features["token_ids"].dtype)
        mask = tf.concat(
            [tf.ones([batch, 1], tf.bool), tf.zeros([batch, max_length - 1], tf.bool)], axis=1
        )
        backbone = self.encoder.backbone
        heads = backbone.num_heads
        head_dim = backbone.hidden_dim // heads
        layers = len(self.decoder_layers)
        dtype = encoder_output.dtype
        self_cache = tf.zeros([batch, layers, 2, max_length, heads, head_dim], dtype)
        cross_cache = tf.zeros([batch, layers, 2, tf.shape(encoder_output)[1], heads, head_dim],
                               dtype)
        # Seed the caches: every position of the prompt, and the encoder's keys/values.
        _, (self_cache, cross_cache) = self._decoder_hidden(
            prompt, None, encoder_output, encoder_padding_mask, caches=(self_cache, cross_cache),
            self_cache_index=0, cross_cache_index=0,
        )
        cache = {
            "encoder_output": encoder_output,
            "encoder_padding_mask": encoder_padding_mask,
            "self_attention": self_cache,
            "cross_attention": cross_cache,
        }

        def next_token(prompt, cache, index):
            position = index - 1  # the previous token's position
            token = tf.gather(prompt, [position], axis=1)
            hidden, (self_cache, cross_cache) = self._decoder_hidden(
                token, None, cache["encoder_output"], cache["encoder_padding_mask"],
                start_index=position, caches=(cache["self_attention"], cache["cross_attention"]),
                self_cache_index=position, cross_cache_index=None,
            )
            cache = dict(cache, self_attention=self_cache, cross_attention=cross_cache)
            return self._logits(hidden)[:, 0, :], None, cache

        rows = sampler(next_token, prompt, cache=cache, index=1, mask=mask,
                       stop_token_ids=[tf.cast(end, prompt.dtype)])
        return self.token_ids_from_rows(rows)

    def detokenize(self, token_ids):
        """Generated ids -> strings: cut at the end token, special tokens dropped.

        The tokenizer's own detokenisation joins the pieces (WordPiece `##`
        pieces to their word, SentencePiece `▁` marks to spaces).
        """
        token_ids = tf.convert_to_tensor(token_ids)[:, 1:]  # the start token
        ended = tf.cumsum(tf.cast(tf.equal(token_ids, self.preprocessor.end_token_id), tf.int32),
                          axis=1) > 0
        keep = tf.logical_not(ended)
        tokenizer = self.preprocessor.tokenizer
        for special in list(getattr(tokenizer, "special_token_ids", [])) + [
            self.preprocessor.pad_token_id, self.preprocessor.start_token_id,
        ]:
            keep = keep & tf.not_equal(token_ids, special)
        return tokenizer.detokenize(tf.ragged.boolean_mask(token_ids, keep))

    def _generate_function(self, max_length, sampler):
        key = (max_length, sampler if isinstance(sampler, str) else id(sampler))
        if key not in self._generate_functions:
            made = self._make_sampler(sampler)

            def generate(features):
                ids = self.generate_token_ids(features, max_length=max_length, sampler=made)
                return self.detokenize(ids)

            self._generate_functions[key] = tf.function(generate, reduce_retracing=True)
        return self._generate_functions[key]

    def generate(self, texts, max_length=None, sampler="greedy", batch_size=DEFAULT_GENERATE_BATCH_SIZE):
        """Generate one text per source text.

        Args:
            texts: a list / numpy array / pandas Series of source texts.
            max_length: decoder positions to fill, at most `target_length`
                (default `target_length`; the start token is one of them).
            sampler: `"greedy"`, `"beam"` (KerasHub's `BeamSampler`, 5
                beams) or a `keras_hub.samplers.Sampler`.
            batch_size: texts decoded together.

        Returns:
            A list of str, in the order of `texts`.
        """
        sources = text_columns(texts)
        if len(sources) != 1:
            raise ValueError("Seq2Seq.generate takes one source text per example, not pairs.")
        sources = sources[0]
        if len(sources) == 0:
            raise ValueError("`texts` is empty: give at least one text.")
        if max_length is None:
            max_length = self.target_length
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not (
            2 <= max_length <= self.target_length
        ):
            raise ValueError(
                f"`max_length` must be an int in [2, target_length={self.target_length}]. "
                f"Received: {max_length!r}"
            )
        generate = self._generate_function(max_length, sampler)
        preprocessor = self.preprocessor
        dataset = (
            tf.data.Dataset.from_tensor_slices(sources.astype(str))
            .batch(batch_size)
            .map(lambda text: preprocessor(text), num_parallel_calls=tf.data.AUTOTUNE)
        )
        outputs = []
        for features in dataset:
            outputs.extend(value.decode("utf-8") for value in generate(features).numpy())
        return outputs

    # --- export ------------------------------------------------------------------------
    def serving_signatures(self):
        """`serving_default`: `text` (1-D strings) -> `generated` (1-D strings), greedy.

        Tokenising, greedy decoding (a `tf.while_loop` of at most
        `target_length` steps that stops when every text has produced the
        end token) and detokenising all run inside the graph.
        """
        preprocessor = self.preprocessor
        generate = self._generate_function(self.target_length, "greedy")

        def serve(text):
            features = preprocessor(check_text_batch(text, "text"))
            return {"generated": generate(features)}

        return {"serving_default": (serve, text_signature(("text",)))}

    # --- construction ------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset, sequence_length=None, trainable=True, pooling="auto",
                    load_weights=True, decoder_init="warm_start", target_length=DEFAULT_TARGET_LENGTH,
                    trim_texts=None, **task_kwargs):
        """An encoder-decoder over a pretrained BERT (`BertEncoder.from_preset`).

        Args:
            preset: what `kt.encoders.BertEncoder.from_preset` loads
                (`"minilm"`, `"multilingual-e5-small"`, a KerasHub preset, a
                local folder).
            sequence_length: source texts are truncated and padded to this.
            trainable, load_weights: as in `Task.from_preset`.
            decoder_init: `"warm_start"`, `"shared"` or `"random"`.
            target_length: decoder positions.
            trim_texts: None (the whole vocabulary), or the corpus to trim
                the vocabulary to (`BertEncoder.trim_vocabulary`) before the
                decoder is built: give the source AND the target texts (the
                decoder can only write pieces the corpus uses). The tied
                output projection is then over the kept rows, e.g. a few
                thousand instead of e5's 250k.

        Example:

        ```python
        import ktransfer as kt
        pairs = [("a great film", "great"), ("a dull film", "dull")]
        s2s = kt.tasks.Seq2Seq.from_preset(
            "minilm", sequence_length=16, target_length=8,
            trim_texts=[s for s, _ in pairs] + [t for _, t in pairs],
        )
        s2s.encoder.vocabulary_size   # the pieces of the four texts + the special tokens
        s2s.generate(["a great film"])   # strings, as without trimming
        ```
        """
        if decoder_init not in DECODER_INITS:  # before loading the checkpoint
            raise ValueError(
                f"`decoder_init` must be one of {DECODER_INITS}. Received: {decoder_init!r}"
            )
        if trim_texts is not None:
            encoder = BertEncoder.from_preset(
                preset, sequence_length=sequence_length,
                pooling=cls.preset_pooling if _is_auto(pooling) else pooling, trainable=trainable,
                load_weights=load_weights,
            ).trim_vocabulary(trim_texts)
            return cls(encoder=encoder, decoder_init=decoder_init, target_length=target_length,
                       **task_kwargs)
        return super().from_preset(
            preset, sequence_length=sequence_length, trainable=trainable, pooling=pooling,
            load_weights=load_weights, decoder_init=decoder_init, target_length=target_length,
            **task_kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config.update({
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder_init": self.decoder_init,
            "target_length": self.target_length,
        })
        if self._preprocessor_choice != "auto":
            config["preprocessor"] = keras.saving.serialize_keras_object(self.preprocessor)
        return config


__all__ = ["DECODER_INITS", "Seq2Seq", "Seq2SeqPreprocessor", "special_token_ids"]
