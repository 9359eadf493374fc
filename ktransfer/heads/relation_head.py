"""Relation classification with entity markers and entity-start pooling.

The "entity markers, entity start" recipe of Baldini Soares et al. (2019,
"Matching the Blanks"): the two entities of a sentence are wrapped in marker
tokens, `[E1] ... [/E1]` and `[E2] ... [/E2]`, which are added to the
tokenizer as special tokens (never split, never lowercased) and to the
encoder's embedding table as new, trainable rows. The relation is classified
from the concatenated final hidden states of the two *start* markers.

Example:

```python
import ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling=None)
encoder = kt.heads.add_entity_markers(encoder)        # + [E1] [/E1] [E2] [/E2]
model = kt.heads.RelationHead.build_classifier(encoder, num_classes=19)
features = encoder.preprocessor(["The [E1] child [/E1] was put in the [E2] cradle [/E2] ."])
logits = model(features)  # shape (1, 19)
```
"""

import numpy as np

from ktransfer._keras import keras

ENTITY_MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")


def add_entity_markers(encoder, markers=ENTITY_MARKERS):
    """A copy of a `BertEncoder` whose vocabulary has the entity markers.

    The markers are appended to the WordPiece vocabulary as special tokens
    (matched whole in the input strings, before splitting and lowercasing)
    and to the token-embedding table as new rows, initialised to the mean of
    the existing embeddings; they train with the rest of the encoder. The
    returned encoder shares no variables with `encoder`.

    Args:
        encoder: a `kt.encoders.BertEncoder` with a preprocessor.
        markers: the marker strings, `(e1_start, e1_end, e2_start, e2_end)`.

    Returns:
        A new `BertEncoder` (same pooling, trainable setting and sequence
        length) whose `preprocessor` understands the markers.
    """
    import keras_hub

    from ktransfer.encoders.bert_encoder import BertEncoder

    if not isinstance(encoder, BertEncoder) or encoder.preprocessor is None:
        raise TypeError(
            "`encoder` must be a kt.encoders.BertEncoder with a preprocessor "
            "(BertEncoder.from_preset(...)). Received: "
            f"{type(encoder).__name__}"
        )
    markers = tuple(markers)
    if len(markers) != 4 or not all(isinstance(m, str) and m for m in markers):
        raise ValueError(
            "`markers` must be 4 non-empty strings (e1_start, e1_end, e2_start, "
            f"e2_end), e.g. {ENTITY_MARKERS}. Received: {markers!r}"
        )
    tokenizer = encoder.preprocessor.tokenizer
    vocabulary = list(tokenizer.get_vocabulary())
    known = [m for m in markers if m in vocabulary]
    if known:
        raise ValueError(
            f"The vocabulary already holds {known}: this encoder has its markers "
            "(call add_entity_markers once), or pick other marker strings."
        )
    new_tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=vocabulary + list(markers),
        lowercase=tokenizer.lowercase,
        special_tokens=list(markers),
        special_tokens_in_strings=True,
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        new_tokenizer, sequence_length=encoder.preprocessor.sequence_length
    )
    old = encoder.backbone
    config = old.get_config()
    config["vocabulary_size"] = old.vocabulary_size + len(markers)
    backbone = keras_hub.models.BertBackbone.from_config(config)
    for old_variable, new_variable in zip(old.weights, backbone.weights):
        value = keras.ops.convert_to_numpy(old_variable)
        if tuple(new_variable.shape) != value.shape:  # the token embedding table
            mean = value.mean(axis=0, keepdims=True)
            value = np.concatenate([value, np.repeat(mean, len(markers), axis=0)])
        new_variable.assign(value)
    trainable = encoder.trainable_blocks
    if trainable is None:
        trainable = bool(encoder.trainable)
    return BertEncoder(
        backbone,
        preprocessor,
        pooling=encoder.pooling,
        trainable=trainable,
        hidden_activation=encoder.hidden_activation,
    )


@keras.saving.register_keras_serializable(package="ktransfer")
class RelationHead(keras.layers.Layer):
    """Classify a relation from the two entity-start markers' hidden states.

    Call it on `[sequence, token_ids]`: the encoder's per-token output
    `[batch, length, dim]` and the input token ids `[batch, length]`. For
    each example it takes the hidden state at the first `[E1]` and the first
    `[E2]` token, concatenates them (`[batch, 2 * dim]`), applies dropout and
    a dense layer to `num_classes` logits (float32). A marker cut off by
    truncation falls back to position 0 (`[CLS]`).

    Args:
        num_classes: the number of relation classes (>= 2).
        marker_ids: `(e1_start_id, e2_start_id)`, the token ids of the start
            markers (`build_classifier` reads them from the tokenizer).
        dropout: dropout rate on the pooled features.

    Example:

    ```python
    import numpy as np, ktransfer as kt
    head = kt.heads.RelationHead(3, marker_ids=(7, 9))
    sequence = np.random.rand(1, 5, 4).astype("float32")
    token_ids = np.array([[1, 7, 2, 9, 3]])
    head([sequence, token_ids])  # from concat(sequence[0, 1], sequence[0, 3])
    ```
    """

    def __init__(self, num_classes, marker_ids, dropout=0.0, **kwargs):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2. Received: {num_classes!r}")
        if (
            not isinstance(marker_ids, (tuple, list))
            or len(marker_ids) != 2
            or not all(isinstance(i, (int, np.integer)) and i >= 0 for i in marker_ids)
        ):
            raise ValueError(
                "`marker_ids` must be (e1_start_id, e2_start_id), two token ids. "
                f"Received: {marker_ids!r}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: {dropout!r}")
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.marker_ids = tuple(int(i) for i in marker_ids)
        self.dropout = float(dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout, name="dropout")
        self.output_dense = keras.layers.Dense(num_classes, dtype="float32", name="logits")

    # Read by kt.export.save: logits -> softmax probabilities, one label.
    output_activation = "softmax"
    multi_label = False

    def build(self, input_shape):
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) != 2
            or len(input_shape[0]) != 3
        ):
            raise ValueError(
                "RelationHead is called on [sequence, token_ids]: the per-token "
                "encoder output (pooling=None) and the token ids. Received "
                f"shapes: {input_shape}"
            )
        dim = input_shape[0][-1]
        self.output_dense.build((None, 2 * dim))
        self.built = True

    def call(self, inputs, training=None):
        sequence, token_ids = inputs
        pooled = []
        for marker_id in self.marker_ids:
            position = keras.ops.argmax(
                keras.ops.cast(keras.ops.equal(token_ids, marker_id), "int32"), axis=-1
            )
            pooled.append(
                keras.ops.take_along_axis(sequence, position[:, None, None], axis=1)[:, 0, :]
            )
        features = keras.ops.concatenate(pooled, axis=-1)
        return self.output_dense(self.dropout_layer(features, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.num_classes)

    def default_loss(self):
        """Sparse categorical cross-entropy on the logits."""
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "marker_ids": list(self.marker_ids),
                "dropout": self.dropout,
            }
        )
        return config

    @staticmethod
    def build_classifier(encoder, num_classes, dropout=0.1, markers=ENTITY_MARKERS):
        """A `keras.Model`: encoder features dict -> relation logits.

        Args:
            encoder: a `BertEncoder` with `pooling=None` whose vocabulary has
                the markers (`add_entity_markers`).
            num_classes: the number of relation classes.
            dropout: dropout rate of the head.
            markers: the marker strings; the head pools at the first and
                third (the start markers).
        """
        if getattr(encoder, "pooling", "?") is not None:
            raise ValueError(
                "build_classifier needs per-token output: an encoder built with "
                "pooling=None."
            )
        tokenizer = encoder.preprocessor.tokenizer
        ids = [tokenizer.token_to_id(m) if m in tokenizer.get_vocabulary() else None
               for m in (markers[0], markers[2])]
        if None in ids:
            raise ValueError(
                f"The encoder's vocabulary lacks the markers {markers[0]!r}/"
                f"{markers[2]!r}: call kt.heads.add_entity_markers(encoder) first."
            )
        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name)
            for name in ("token_ids", "segment_ids", "padding_mask")
        }
        sequence = encoder(inputs)
        head = RelationHead(num_classes, marker_ids=ids, dropout=dropout)
        logits = head([sequence, inputs["token_ids"]])
        return keras.Model(inputs, logits, name="relation_classifier")
