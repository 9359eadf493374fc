"""`SentenceSimilarity`: a bi-encoder (siamese) task, two texts in, cosine similarity out.

Both texts of a pair go through one shared, pooled encoder separately; the
score is the cosine of the two embeddings (Sentence-BERT). Embeddings can be
computed once per text (`embed`), so it suits matching and retrieval over
many candidates. For a cross-encoder (one BERT reading `[CLS] a [SEP] b
[SEP]`) use `kt.tasks.TextClassifier` with `x=(texts_a, texts_b)`.

```python
import ktransfer as kt
sim = kt.tasks.SentenceSimilarity.from_preset("minilm", sequence_length=64)
sim.fit(x=(["a man eats", "a man eats"], ["someone is eating", "it rains"]), y=[1.0, 0.0], epochs=1)
sim.predict((["a man eats"], ["someone eats"]))   # float32 cosine similarities [1]
sim.embed(["a query", "a document"])              # L2-normalised [2, dim]
sim.export("saved_models/sts/1")   # serving_default(text_a, text_b) -> similarity; embed(text) -> embedding
```

`SentenceSimilarity.from_model(siamese)` wraps a `kt.models.SiameseEncoder`
(sharing its encoder), which is how `kt.export.save_pair` can serve one.
"""

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.pipeline import trim_to_longest
from ktransfer.encoders.base import Encoder
from ktransfer.tasks.serving import SERVING_BUCKET_STEP
from ktransfer.tasks.serving import preprocess_texts
from ktransfer.tasks.serving import text_signature
from ktransfer.tasks.siamese import PairPreprocessor
from ktransfer.tasks.siamese import SiameseEncoder
from ktransfer.tasks.siamese import normalized_embeddings
from ktransfer.tasks.siamese import pair_similarity
from ktransfer.tasks.task import Task
from ktransfer.tasks.task import text_columns


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


@keras.saving.register_keras_serializable(package="ktransfer")
class SentenceSimilarity(Task):
    """Cosine similarity of two texts embedded by one shared, pooled encoder.

    Args:
        encoder: a pooled `kt.encoders.Encoder`, e.g.
            `BertEncoder.from_preset("minilm", pooling="mean")` (right for
            sentence-transformers checkpoints); see `from_preset`.
        preprocessor: `"auto"` (a `PairPreprocessor` over the encoder's
            preprocessor: each text tokenised on its own), or another
            `PairPreprocessor`.

    Data: `x=(texts_a, texts_b)` (or a list of `(a, b)` tuples, or a
    `tf.data.Dataset` of `((a, b), score)`), `y` the target similarity per
    pair (float, e.g. 1 for paraphrases and 0 for the others, or STS scores
    scaled to [0, 1]). `compile()` defaults: `FusedAdamW(5e-5)`, mean squared
    error between cosine and target (Sentence-BERT's CosineSimilarityLoss),
    no metrics. Batches are bucketed by the longer text of each pair.

    Example:

    ```python
    import ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=64, pooling="mean")
    sim = kt.tasks.SentenceSimilarity(encoder)
    sim.compile()
    sim.fit(x=(["a man eats"], ["someone is eating"]), y=[1.0], epochs=1)
    sim.predict((["a man eats"], ["it rains"]))
    ```
    """

    preset_pooling = "mean"

    def __init__(self, encoder=None, preprocessor="auto", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, Encoder):
            raise TypeError(
                "`encoder` must be a pooled kt.encoders.Encoder, e.g. kt.encoders.BertEncoder."
                "from_preset('minilm', pooling='mean'); to wrap a kt.models.SiameseEncoder use "
                f"SentenceSimilarity.from_model(model). Received: {type(encoder).__name__}"
            )
        if getattr(encoder, "pooling", "mean") is None:
            raise ValueError(
                "SentenceSimilarity needs one vector per text: build the encoder with "
                "pooling='mean' (or 'cls' / 'pooled'), not pooling=None."
            )
        self.encoder = encoder
        self._preprocessor_choice = "auto" if _is_auto(preprocessor) else "given"
        if _is_auto(preprocessor):
            base = encoder.preprocessor
            if base is None:
                raise ValueError(
                    "The encoder has no preprocessor: pass preprocessor=kt.models.siamese."
                    "PairPreprocessor(<text preprocessor>)."
                )
            preprocessor = PairPreprocessor(base)
        if not isinstance(preprocessor, PairPreprocessor):
            raise TypeError(
                "`preprocessor` must be 'auto' or a kt.tasks.siamese.PairPreprocessor. "
                f"Received: {type(preprocessor).__name__}"
            )
        self.preprocessor = preprocessor

    @classmethod
    def from_model(cls, model):
        """Wrap a `kt.models.SiameseEncoder` (its encoder is shared, not copied).

        Example:

        ```python
        import ktransfer as kt
        encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=32, pooling="mean")
        siamese = kt.models.SiameseEncoder(encoder)
        kt.tasks.SentenceSimilarity.from_model(siamese).export("saved_models/sts/1")
        ```
        """
        if isinstance(model, SentenceSimilarity):
            return model
        if not isinstance(model, SiameseEncoder):
            raise TypeError(
                "SentenceSimilarity.from_model wraps a kt.models.SiameseEncoder (a bi-encoder). "
                "A cross-encoder classifier over text pairs is a kt.tasks.TextClassifier."
                f"from_model(model, pairs=True). Received: {type(model).__name__}"
            )
        preprocessor = model.preprocessor if model.preprocessor is not None else "auto"
        return cls(encoder=model.encoder, preprocessor=preprocessor)

    # --- forward ----------------------------------------------------------------
    def call(self, inputs, training=None):
        return pair_similarity(self.encoder, inputs, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape["token_ids_a"][0],)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict) and "token_ids_a" not in x:  # single texts: embeddings
            return self.embed_features(x)
        return tf.cast(self(x, training=False), tf.float32)

    def embed_features(self, features, training=False):
        """float32 L2-normalised embeddings of single-text `features`."""
        return normalized_embeddings(self.encoder, features, training=training)

    # --- data ---------------------------------------------------------------------
    def make_dataset(self, x, y=None, batch_size=32, shuffle=False, seed=None,
                     sample_weight=None, labelled=None):
        if not isinstance(x, tf.data.Dataset) and not _is_pair_input(x):
            raise ValueError(
                "SentenceSimilarity takes text pairs: x=(texts_a, texts_b) or a list of "
                "(text_a, text_b) tuples (embed single texts with `embed(texts)`)."
            )
        return super().make_dataset(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                    sample_weight=sample_weight, labelled=labelled)

    def encode_labels(self, y, num_examples):
        """Target similarities -> float32 `[n]`."""
        try:
            values = np.asarray(y, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(
                "`y` must hold one number per pair, the target similarity (e.g. 1.0 for "
                "paraphrases, 0.0 for unrelated pairs)."
            ) from None
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape != (num_examples,):
            raise ValueError(
                f"`y` must hold one target per pair: {num_examples} pairs but `y` has shape "
                f"{values.shape}."
            )
        if not np.all(np.isfinite(values)):
            raise ValueError("`y` holds NaN or infinite targets.")
        return values

    def map_dataset_labels(self, dataset):
        spec = dataset.element_spec
        if not (isinstance(spec[1], tf.TensorSpec) and (spec[1].dtype.is_floating or spec[1].dtype.is_integer)):
            raise ValueError(
                "A SentenceSimilarity dataset yields ((text_a, text_b), similarity) with a "
                f"numeric similarity; its label spec is {spec[1]}."
            )
        return dataset.map(lambda x, y, *w: (x, tf.cast(y, tf.float32)) + tuple(w))

    # --- training defaults ------------------------------------------------------------
    def default_loss(self):
        """Mean squared error between the cosine and the target similarity."""
        return keras.losses.MeanSquaredError()

    def default_metrics(self):
        return []

    # --- inference ------------------------------------------------------------------------
    def predict(self, x, batch_size=None, **kwargs):
        """Cosine similarities, float32 `[n]`, of pairs `x=(texts_a, texts_b)`."""
        return np.asarray(super().predict(x, batch_size=batch_size, **kwargs), dtype=np.float32)

    def embed(self, texts, batch_size=None, **kwargs):
        """L2-normalised embeddings of single texts, float32 `[n, dim]` (for retrieval).

        The dot product of two rows is the similarity `predict` returns for
        the pair.
        """
        from ktransfer.data.pipeline import batch_examples

        columns = text_columns(texts)
        if len(columns) != 1:
            raise ValueError("`embed` takes single texts (a list of str), not pairs.")
        single = self.preprocessor.preprocessor
        sequence_length = getattr(single, "sequence_length", None)
        dataset = tf.data.Dataset.from_tensor_slices(columns[0]).batch(256)
        dataset = dataset.map(lambda t: preprocess_texts(single, t), num_parallel_calls=tf.data.AUTOTUNE)
        dataset = batch_examples(
            dataset.unbatch(), len(columns[0]), batch_size or 32,
            boundaries=self.bucket_boundaries() if sequence_length else None,
        )
        outputs = keras.Model.predict(self, dataset.prefetch(tf.data.AUTOTUNE), **kwargs)
        return np.asarray(outputs, dtype=np.float32)

    # --- export ---------------------------------------------------------------------------
    def serving_signatures(self):
        """`serving_default`: `text_a`, `text_b` -> `similarity` (float32 `[batch]`);
        `embed`: `text` -> `embedding` (float32 `[batch, dim]`, L2-normalised)."""
        preprocessor = self.preprocessor
        single = preprocessor.preprocessor
        sequence_length = preprocessor.sequence_length

        def serve(text_a, text_b):
            features = trim_to_longest(preprocessor((text_a, text_b)), sequence_length,
                                       SERVING_BUCKET_STEP)
            return {"similarity": tf.cast(self(features, training=False), tf.float32)}

        def embed(text):
            features = trim_to_longest(preprocess_texts(single, text), sequence_length,
                                       SERVING_BUCKET_STEP)
            return {"embedding": self.embed_features(features)}

        return {
            "serving_default": (serve, text_signature(("text_a", "text_b"))),
            "embed": (embed, text_signature(("text",))),
        }

    def export_trackables(self):
        return [self.preprocessor.preprocessor]

    # --- serialisation -------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config["encoder"] = keras.saving.serialize_keras_object(self.encoder)
        config["preprocessor"] = (
            "auto" if self._preprocessor_choice == "auto"
            else keras.saving.serialize_keras_object(self.preprocessor)
        )
        return config


def _is_pair_input(x):
    try:
        return len(text_columns(x)) == 2
    except (TypeError, ValueError):
        return False


__all__ = ["SentenceSimilarity"]
