"""`ZeroShotClassifier`: classify texts with no labelled examples at all.

The "unsupervised transfer" of the articles: a sentence-embedding encoder
(MiniLM, multilingual e5) embeds each label's description once (a template
filled with the label, e.g. `"This review is positive."`), and a text's
class is the label whose description its embedding is most similar to
(cosine). Probabilities are the softmax of the similarities over a
temperature. Nothing is trained, so it works in any language the encoder
covers, and the result is a task like the others: `predict` /
`predict_labels` on raw strings, `export(path)` a raw-string TF Serving
SavedModel answering `{"probabilities", "label"}` as `TextClassifier`'s
does. `fit` on labelled texts (if some turn up) fine-tunes the encoder
towards the fixed label embeddings.

```python
import ktransfer as kt
clf = kt.tasks.ZeroShotClassifier.from_preset(
    "minilm", labels=["negative", "positive"], template="This review is {}.",
    sequence_length=64,
)
clf.predict_labels(["a great film", "a dull, boring film"])   # ['positive', 'negative'] with the real MiniLM
clf.export("saved_models/zero_shot/1")   # serving_default(text) -> probabilities, label
```

For e5 (which expects `"query: "` before every input), load the encoder
with `text_prefix="query: "` (its preprocessor then prefixes texts and label
descriptions alike), or pass `text_prefix="query: "` to the task.
"""

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.pipeline import class_ids
from ktransfer.data.pipeline import trim_to_longest
from ktransfer.encoders.base import Encoder
from ktransfer.tasks.serving import SERVING_BUCKET_STEP
from ktransfer.tasks.serving import check_labels
from ktransfer.tasks.serving import check_text_batch
from ktransfer.tasks.serving import classifier_outputs
from ktransfer.tasks.serving import predict_in_length_groups
from ktransfer.tasks.serving import preprocess_texts
from ktransfer.tasks.serving import text_signature
from ktransfer.tasks.siamese import normalized_embeddings
from ktransfer.tasks.task import Task

DEFAULT_TEMPLATE = "This review is {}."
DEFAULT_TEMPERATURE = 0.05
# Label descriptions embedded per encoder call when the label embeddings are computed.
DESCRIPTION_BATCH = 64


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def check_templates(template):
    """`template` (a str or a list of str, each with one `{}`) as a list of str."""
    templates = [template] if isinstance(template, str) else template
    try:
        templates = list(templates)
    except TypeError:
        raise TypeError(
            "`template` must be a str with one '{}' (where the label goes), e.g. "
            f"'This review is {{}}.', or a list of them. Received: {type(template).__name__}"
        ) from None
    if not templates:
        raise ValueError("`template` is an empty list: give at least one template, e.g. '{}'.")
    for item in templates:
        if not isinstance(item, str):
            raise TypeError(
                f"Every template must be a str; received {item!r} ({type(item).__name__})."
            )
        if item.count("{}") != 1:
            raise ValueError(
                f"The template {item!r} must contain '{{}}' exactly once, where the label "
                "(or its description) goes, e.g. 'This review is {}.' ('{}' alone embeds "
                "the label as it is)."
            )
    return templates


def check_descriptions(descriptions, labels):
    """`{label: [description, ...]}` for every label (default: the label itself)."""
    if descriptions is None:
        return {label: [label] for label in labels}
    if not isinstance(descriptions, dict):
        raise TypeError(
            "`descriptions` must be a dict {label: description or [descriptions]}, e.g. "
            "{'positive': ['good', 'great']}. Received: " + type(descriptions).__name__
        )
    unknown = sorted(str(key) for key in descriptions if key not in labels)
    if unknown:
        raise ValueError(
            f"`descriptions` names {unknown}, which are not among the labels {labels}: "
            "key it by the label names."
        )
    out = {}
    for label in labels:
        value = descriptions.get(label, [label])
        values = [value] if isinstance(value, str) else list(value)
        if not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise ValueError(
                f"The descriptions of label {label!r} must be non-empty strings; received "
                f"{value!r}."
            )
        out[label] = values
    return out


@keras.saving.register_keras_serializable(package="ktransfer")
class ZeroShotClassifier(Task):
    """Texts scored by cosine similarity to embedded label descriptions; no training.

    Args:
        encoder: a pooled sentence-embedding `kt.encoders.Encoder`, e.g.
            `BertEncoder.from_preset("minilm", pooling="mean")` or
            `BertEncoder.from_preset("multilingual-e5-small", pooling="mean",
            text_prefix="query: ")`; see `from_preset`.
        labels: the class names, in class-index order.
        template: a str with one `{}` that each label (or description) fills,
            or a list of them; a label's embedding is the mean of the
            normalised embeddings of every template filled with every one of
            its descriptions (then normalised).
        descriptions: optional `{label: str or [str, ...]}`: what fills the
            templates for a label (default the label name itself), e.g.
            `{"positive": ["good", "great"], "negative": ["bad", "terrible"]}`.
        temperature: probabilities are `softmax(cosine / temperature)`
            (positive; the ranking, and so the label, does not depend on it).
        text_prefix: None (texts and descriptions go to the encoder's
            preprocessor as they are: an encoder loaded with a
            `text_prefix`, such as e5's `"query: "`, prefixes both), or a
            str this task puts before every text and every description (for
            an encoder loaded without one).
        preprocessor: `"auto"` (the encoder's) or another text preprocessor.
        embed_labels: compute the label embeddings now (default). `from_config`
            passes False: a KerasHub tokenizer gets its vocabulary only when
            a `.keras` file's assets load, and the saved label embeddings
            load with the weights; call `refresh_label_embeddings()` on a
            task rebuilt from its config alone.

    `call(features)` returns float32 logits `[batch, num_labels]`
    (similarities over the temperature); `predict` the probabilities.
    The label embeddings are computed once, when the task is built, and
    stored as a non-trainable weight (so a `.keras` file and an export
    carry them); `refresh_label_embeddings()` recomputes them (after
    fine-tuning the encoder). `fit(texts, labels)` (label names or ids)
    fine-tunes the encoder with cross-entropy against the fixed label
    embeddings; `compile()` defaults: `FusedAdamW(5e-5)`, accuracy.

    Example:

    ```python
    import ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=64, pooling="mean")
    clf = kt.tasks.ZeroShotClassifier(
        encoder, labels=["negative", "positive"],
        template=["This review is {}.", "A {} review."],
        descriptions={"negative": ["bad", "negative"], "positive": ["good", "positive"]},
    )
    clf.predict(["what a wonderful film"])          # float32 [1, 2] probabilities
    clf.predict_labels(["what a wonderful film"])   # ['positive'] with the real MiniLM
    ```
    """

    preset_pooling = "mean"

    def __init__(self, encoder=None, labels=None, template=DEFAULT_TEMPLATE, descriptions=None,
                 temperature=DEFAULT_TEMPERATURE, text_prefix=None, preprocessor="auto",
                 embed_labels=True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, Encoder):
            raise TypeError(
                "`encoder` must be a pooled kt.encoders.Encoder, e.g. kt.encoders.BertEncoder."
                "from_preset('minilm', pooling='mean') (or use ZeroShotClassifier.from_preset). "
                f"Received: {type(encoder).__name__}"
            )
        if getattr(encoder, "pooling", "mean") is None:
            raise ValueError(
                "ZeroShotClassifier compares one vector per text: build the encoder with "
                "pooling='mean' (right for MiniLM and e5), 'cls' or 'pooled', not pooling=None."
            )
        if labels is None:
            raise ValueError(
                "`labels` is missing: give the class names, e.g. labels=['negative', "
                "'positive'] (each fills the template)."
            )
        self.labels = check_labels(labels)
        self.templates = check_templates(template)
        self._template_is_list = not isinstance(template, str)
        self.descriptions = check_descriptions(descriptions, self.labels)
        self._descriptions_given = descriptions is not None
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            np.isfinite(temperature) and temperature > 0
        ):
            raise ValueError(
                "`temperature` must be a positive number (probabilities are "
                f"softmax(cosine / temperature)). Received: {temperature!r}"
            )
        self.temperature = float(temperature)
        self.encoder = encoder
        self._preprocessor_choice = "auto" if _is_auto(preprocessor) else "given"
        if _is_auto(preprocessor):
            preprocessor = encoder.preprocessor
        if preprocessor is None:
            raise ValueError(
                "The encoder has no preprocessor: pass preprocessor= (raw strings -> the "
                "encoder's inputs), or load the encoder with BertEncoder.from_preset."
            )
        self.preprocessor = preprocessor
        if text_prefix is not None:
            if not isinstance(text_prefix, str):
                raise TypeError(f"`text_prefix` must be None or a str. Received: {text_prefix!r}")
            own = getattr(preprocessor, "text_prefix", "")
            if own:
                raise ValueError(
                    f"The encoder's preprocessor already puts {own!r} before every text (and "
                    "every label description): leave text_prefix=None, or load the encoder "
                    "without text_prefix."
                )
        self.text_prefix = text_prefix or None
        self.label_embeddings = self.add_weight(
            shape=(len(self.labels), encoder.output_dim),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            name="label_embeddings",
        )
        if embed_labels:
            self.refresh_label_embeddings()

    # --- label embeddings -------------------------------------------------------------
    @property
    def num_classes(self):
        return len(self.labels)

    def label_texts(self):
        """`[(label index, text), ...]`: every template filled with every description."""
        return [
            (i, template.replace("{}", description))
            for i, label in enumerate(self.labels)
            for description in self.descriptions[label]
            for template in self.templates
        ]

    def _prefixed(self, texts):
        if self.text_prefix:
            return tf.strings.join([self.text_prefix, texts])
        return texts

    def embed(self, texts):
        """float32 L2-normalised embeddings `[n, dim]` of `texts`, as the task embeds them."""
        texts = [str(t) for t in texts]
        sequence_length = getattr(self.preprocessor, "sequence_length", None)
        out = []
        for start in range(0, len(texts), DESCRIPTION_BATCH):
            batch = self._prefixed(tf.constant(texts[start : start + DESCRIPTION_BATCH]))
            features = preprocess_texts(self.preprocessor, batch)
            if isinstance(features, dict) and sequence_length:
                features = trim_to_longest(features, sequence_length, SERVING_BUCKET_STEP)
            out.append(keras.ops.convert_to_numpy(
                normalized_embeddings(self.encoder, features, training=False)))
        return np.concatenate(out, axis=0).astype("float32")

    def refresh_label_embeddings(self):
        """Embed the label descriptions again (e.g. after fine-tuning the encoder).

        Each label's embedding is the normalised mean of the normalised
        embeddings of its filled templates (`label_texts()`).
        """
        pairs = self.label_texts()
        embeddings = self.embed([text for _, text in pairs])
        index = np.array([i for i, _ in pairs])
        sums = np.zeros((len(self.labels), embeddings.shape[1]), dtype="float64")
        np.add.at(sums, index, embeddings)
        sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        self.label_embeddings.assign(sums.astype("float32"))

    # --- forward ----------------------------------------------------------------------
    def call(self, inputs, training=None):
        embeddings = normalized_embeddings(self.encoder, inputs, training=training)
        similarities = keras.ops.matmul(embeddings, keras.ops.transpose(self.label_embeddings))
        return similarities / self.temperature

    def compute_output_shape(self, input_shape):
        shape = input_shape["token_ids"] if isinstance(input_shape, dict) else input_shape
        return (shape[0], len(self.labels))

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return keras.ops.softmax(keras.ops.cast(self(x, training=False), "float32"), axis=-1)

    # --- data -------------------------------------------------------------------------
    def preprocess_samples(self, x, y=None, sample_weight=None):
        if isinstance(x, (tuple, list)):
            raise ValueError(
                "ZeroShotClassifier classifies single texts; it received text pairs."
            )
        features = preprocess_texts(self.preprocessor, self._prefixed(x))
        return keras.utils.pack_x_y_sample_weight(features, y, sample_weight)

    def encode_labels(self, y, num_examples):
        """Label names or class ids -> int32 `[n]`."""
        if isinstance(y, (str, bytes)):
            raise ValueError(f"`y` must hold one label per text; received the string {y[:40]!r}.")
        values = list(y.numpy() if isinstance(y, tf.Tensor) else y)
        if len(values) != num_examples:
            raise ValueError(
                f"`y` has {len(values)} labels for {num_examples} texts: give one label per text."
            )
        index = {name: i for i, name in enumerate(self.labels)}
        ids = np.empty(num_examples, dtype=np.int32)
        for i, value in enumerate(values):
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            if isinstance(value, str) and value in index:
                ids[i] = index[value]
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and (
                0 <= int(value) < len(self.labels)
            ):
                ids[i] = int(value)
            else:
                raise ValueError(
                    f"Unknown label {value!r} at y[{i}]: use the label names {self.labels} "
                    f"or class ids 0 .. {len(self.labels) - 1}."
                )
        return ids

    def map_dataset_labels(self, dataset):
        message = f"labels must be among {self.labels} (or ids 0 .. {len(self.labels) - 1})"
        return class_ids(dataset, self.labels, message)

    def default_loss(self):
        """Cross-entropy of the softmax over label similarities (from logits)."""
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    # --- inference --------------------------------------------------------------------
    def predict(self, x, batch_size=None, **kwargs):
        """float32 probabilities `[n, num_labels]`: softmax(cosine / temperature)."""
        return np.asarray(super().predict(x, batch_size=batch_size, **kwargs), dtype=np.float32)

    def predict_labels(self, x, batch_size=None, **kwargs):
        """The most similar label of each text, a list of str."""
        return self.labels_of(self.predict(x, batch_size=batch_size, **kwargs))

    def labels_of(self, probabilities):
        """Label names of rows of probabilities (or similarities)."""
        return [self.labels[i] for i in np.argmax(np.asarray(probabilities), axis=-1)]

    # --- export -----------------------------------------------------------------------
    def serving_signatures(self):
        """`serving_default`: `text` -> `probabilities` (float32 `[batch, labels]`), `label`.

        The prefix (if any) and the tokenizer run inside the graph; batches
        of 16 texts or more run in length-sorted groups, as TextClassifier's.
        """
        preprocessor = self.preprocessor
        sequence_length = getattr(preprocessor, "sequence_length", None)
        labels = list(self.labels)

        def scores(features):
            return self(features, training=False)

        def serve(text):
            texts = self._prefixed(check_text_batch(text, "text"))
            features = preprocess_texts(preprocessor, texts)
            if isinstance(features, dict) and sequence_length and "padding_mask" in features:
                raw = predict_in_length_groups(scores, features, sequence_length)
            else:
                raw = scores(features)
            return classifier_outputs(tf.nn.softmax(tf.cast(raw, tf.float32), axis=-1), labels)

        return {"serving_default": (serve, text_signature(("text",)))}

    def label_files(self):
        return {"labels.txt": list(self.labels)}

    # --- serialisation ----------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "labels": list(self.labels),
                "template": list(self.templates) if self._template_is_list else self.templates[0],
                "descriptions": (
                    {label: list(values) for label, values in self.descriptions.items()}
                    if self._descriptions_given else None
                ),
                "temperature": self.temperature,
                "text_prefix": self.text_prefix,
                "preprocessor": (
                    "auto" if self._preprocessor_choice == "auto"
                    else keras.saving.serialize_keras_object(self.preprocessor)
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("encoder"), dict):
            config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        if isinstance(config.get("preprocessor"), dict):
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(embed_labels=False, **config)


__all__ = ["ZeroShotClassifier", "check_descriptions", "check_templates"]
