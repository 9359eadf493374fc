"""`RelationClassifier`: the relation between two marked entities of a sentence.

The "entity markers, entity start" recipe (Baldini Soares et al. 2019): the
two entities are wrapped in marker tokens, `[E1] ... [/E1]` and
`[E2] ... [/E2]`, which `kt.heads.add_entity_markers` adds to the
encoder's vocabulary (special tokens, new embedding rows), and a
`kt.heads.RelationHead` classifies the concatenated hidden states of the two
start markers. Texts go in raw, markers included (`mark_entities` inserts
them at character offsets).

```python
import ktransfer as kt
clf = kt.tasks.RelationClassifier.from_preset("minilm", labels=["none", "born_in"],
                                              sequence_length=64)
text = kt.tasks.mark_entities("Ada was born in London", (0, 3), (16, 22))
# "[E1] Ada [/E1] was born in [E2] London [/E2]"
clf.fit(x=[text], y=["born_in"], epochs=1)
clf.predict_labels([text])
clf.export("saved_models/relations/1")   # serving_default(text) -> probabilities, label
```

It is a `kt.tasks.TextClassifier` (single-label) in everything but its head:
labels, `predict`, `predict_labels`, `evaluate`, the export and
`from_model` (a `RelationHead.build_classifier` model) work the same way.
"""

from ktransfer._keras import keras

from ktransfer.encoders.bert_encoder import BertEncoder
from ktransfer.heads.relation_head import ENTITY_MARKERS
from ktransfer.heads.relation_head import RelationHead
from ktransfer.heads.relation_head import add_entity_markers
from ktransfer.tasks.serving import check_labels
from ktransfer.tasks.text_classifier import TextClassifier


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _check_markers(markers):
    markers = tuple(markers)
    if len(markers) != 4 or not all(isinstance(m, str) and m for m in markers):
        raise ValueError(
            "`markers` must be 4 non-empty strings (e1_start, e1_end, e2_start, e2_end), "
            f"e.g. {ENTITY_MARKERS}. Received: {markers!r}"
        )
    return markers


def mark_entities(text, first, second, markers=ENTITY_MARKERS):
    """Wrap two entities of `text` in entity markers: `"[E1] ... [/E1]"`, `"[E2] ... [/E2]"`.

    Args:
        text: the sentence.
        first, second: `(start, end)` character offsets of the two entities
            (`end` exclusive), in the relation's direction (`first` is E1).
            They may come in either order in the text but must not overlap.
        markers: `(e1_start, e1_end, e2_start, e2_end)`.

    Returns:
        The text with the markers inserted, a space between each marker and
        its entity.

    Example:

    ```python
    from ktransfer.tasks import mark_entities
    mark_entities("Ada was born in London", (0, 3), (16, 22))
    # '[E1] Ada [/E1] was born in [E2] London [/E2]'
    ```
    """
    markers = _check_markers(markers)
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str. Received: {type(text).__name__}")
    spans = []
    for name, span in (("first", first), ("second", second)):
        try:
            start, end = (int(v) for v in span)
        except (TypeError, ValueError):
            raise ValueError(
                f"`{name}` must be a (start, end) pair of character offsets. Received: {span!r}"
            ) from None
        if not 0 <= start < end <= len(text):
            raise ValueError(
                f"`{name}`={span!r} is not a non-empty span of the text (length {len(text)})."
            )
        spans.append((start, end))
    (s1, e1), (s2, e2) = spans
    if s1 < e2 and s2 < e1:
        raise ValueError(f"The entities {spans[0]} and {spans[1]} overlap: they must be disjoint.")
    inserts = [(s1, f"{markers[0]} "), (e1, f" {markers[1]}"), (s2, f"{markers[2]} "),
               (e2, f" {markers[3]}")]
    # From the end backwards, so earlier offsets stay valid; at one offset an
    # end marker goes before a start marker.
    for position, marker in sorted(inserts, key=lambda item: (item[0], item[1][0] != " "),
                                   reverse=True):
        text = text[:position] + marker + text[position:]
    return text


def marker_ids(encoder, markers=ENTITY_MARKERS):
    """`(e1_start_id, e2_start_id)` in the encoder's vocabulary, or None if the markers are missing.

    Raises a `ValueError` when only some of the four markers are there.
    """
    markers = _check_markers(markers)
    tokenizer = encoder.preprocessor.tokenizer
    vocabulary = set(tokenizer.get_vocabulary())
    present = [m for m in markers if m in vocabulary]
    if not present:
        return None
    if len(present) != len(markers):
        raise ValueError(
            f"The encoder's vocabulary holds {present} but not all of {list(markers)}: use an "
            "encoder with all four markers or none (kt.heads.add_entity_markers adds them)."
        )
    return (tokenizer.token_to_id(markers[0]), tokenizer.token_to_id(markers[2]))


@keras.saving.register_keras_serializable(package="ktransfer")
class RelationClassifier(TextClassifier):
    """Classify the relation between the two marked entities of each text.

    Args:
        encoder: a `kt.encoders.BertEncoder` with `pooling=None` and a
            preprocessor. If its vocabulary lacks the markers they are added
            (`kt.heads.add_entity_markers`: a new encoder, sharing no
            variables with the one given).
        num_classes: the number of relation classes (default `len(labels)`).
        labels: the relation names in class-index order.
        dropout: dropout of the head.
        markers: `(e1_start, e1_end, e2_start, e2_end)` marker strings.
        preprocessor: `"auto"` (the encoder's) or another callable.
        model: instead of `encoder`, a whole relation model to wrap (see
            `from_model`).
        marker_ids: the token ids of the start markers, as a saved config
            holds them; None looks them up in the encoder's vocabulary.

    `x` is raw texts with the markers in them (`mark_entities`); `y`
    relation ids or names. A marker cut off by truncation falls back to
    `[CLS]`.

    Example:

    ```python
    import ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=64, pooling=None)
    clf = kt.tasks.RelationClassifier(encoder, labels=["none", "part_of"])
    clf.compile()
    clf.fit(x=["the [E1] wheel [/E1] of the [E2] car [/E2]"], y=["part_of"], epochs=1)
    clf.predict_labels(["the [E1] wheel [/E1] of the [E2] car [/E2]"])
    ```
    """

    preset_pooling = None

    def __init__(self, encoder=None, num_classes=None, labels=None, dropout=0.1,
                 markers=ENTITY_MARKERS, preprocessor="auto", model=None,
                 output_activation="auto", threshold=0.5, marker_ids=None, **kwargs):
        markers = _check_markers(markers)
        # Read by `_init_own`, which TextClassifier.__init__ calls (set before
        # Keras' attribute tracking exists, hence object.__setattr__).
        # `marker_ids` comes from a saved config: a `.keras` file restores the
        # vocabulary only after construction, so it cannot be looked up then.
        object.__setattr__(self, "_markers_argument", markers)
        object.__setattr__(self, "_marker_ids_argument", marker_ids)
        super().__init__(
            encoder=encoder, num_classes=num_classes, labels=labels, multi_label=False,
            dropout=dropout, preprocessor=preprocessor, threshold=threshold, pairs=False,
            model=model, output_activation=output_activation, **kwargs,
        )
        self.markers = markers

    def _init_own(self, encoder, num_classes, labels, multi_label, dropout, hidden_dims,
                  preprocessor, output_activation):
        if not isinstance(encoder, BertEncoder) or encoder.preprocessor is None:
            raise TypeError(
                "`encoder` must be a kt.encoders.BertEncoder with a preprocessor, e.g. "
                "BertEncoder.from_preset('minilm', pooling=None); to wrap a whole relation "
                "model use RelationClassifier.from_model(model). Received: "
                f"{type(encoder).__name__}"
            )
        if encoder.pooling is not None:
            raise ValueError(
                "RelationClassifier pools the entity-start markers itself: build the "
                f"encoder with pooling=None (it has pooling={encoder.pooling!r})."
            )
        if not _is_auto(output_activation):
            raise ValueError(
                "`output_activation` is the RelationHead's (softmax); pass it only with "
                "`model=` (RelationClassifier.from_model)."
            )
        markers = self._markers_argument
        ids = self._marker_ids_argument
        if ids is None:
            ids = marker_ids(encoder, markers)
        if ids is None:
            encoder = add_entity_markers(encoder, markers)
            ids = marker_ids(encoder, markers)
        if num_classes is None:
            if labels is None:
                raise ValueError(
                    "Give `num_classes` or `labels` (the relation names), e.g. "
                    "labels=['Other', 'Cause-Effect(e1,e2)', ...]."
                )
            if isinstance(labels, (str, bytes)):
                check_labels(labels)  # the clear error for a string
            num_classes = len(list(labels))
        self.encoder = encoder
        self.head = RelationHead(num_classes, marker_ids=ids, dropout=dropout, name="relation_head")
        self.head.build([(None, None, encoder.output_dim), (None, None)])
        self._network = None
        self.dropout = float(dropout)
        self.hidden_dims = ()
        self.num_classes = num_classes
        self.multi_label = False
        self.output_activation = self.head.output_activation
        self.preprocessor = encoder.preprocessor if _is_auto(preprocessor) else preprocessor
        self.labels = self._check_labels(labels)

    @classmethod
    def from_model(cls, model, labels=None, preprocessor="auto", output_activation="auto",
                   **unused):
        """Wrap a trained relation model (e.g. `kt.heads.RelationHead.build_classifier`).

        Args:
            model: a `keras.Model` mapping the encoder's features to relation
                logits (its `RelationHead` says how to read them).
            labels: the relation names (default "0", "1", ...).
            preprocessor: `"auto"` (the encoder's, with the markers) or a callable.
            output_activation: `"auto"` (softmax, from the head) or as in
                `TextClassifier.from_model`.

        Example:

        ```python
        import ktransfer as kt
        encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=32, pooling=None)
        encoder = kt.heads.add_entity_markers(encoder)
        model = kt.heads.RelationHead.build_classifier(encoder, num_classes=2)
        clf = kt.tasks.RelationClassifier.from_model(model, labels=["none", "part_of"])
        clf.export("saved_models/relations/1")
        ```
        """
        if isinstance(model, RelationClassifier) and labels is None and _is_auto(preprocessor) \
                and _is_auto(output_activation):
            return model
        return cls(model=model, labels=labels, preprocessor=preprocessor,
                   output_activation=output_activation)

    def call(self, inputs, training=None):
        if self._network is not None:
            return self._network(inputs, training=training)
        sequence = self.encoder(inputs, training=training)
        return self.head([sequence, inputs["token_ids"]], training=training)

    def get_config(self):
        config = super().get_config()
        for key in ("multi_label", "hidden_dims", "pairs"):
            config.pop(key, None)
        config["markers"] = list(self.markers)
        if self._network is None:
            config["marker_ids"] = list(self.head.marker_ids)
        return config


__all__ = ["RelationClassifier", "mark_entities", "marker_ids"]
