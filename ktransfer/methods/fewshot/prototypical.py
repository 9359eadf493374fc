"""`PrototypicalNetwork`: few-shot classification by distance to class means.

Prototypical networks (Snell et al. 2017, "Prototypical Networks for Few-shot
Learning") embed the support examples of an episode, average each class's
embeddings into a *prototype*, and score a query by the negative squared
Euclidean distance to every prototype:

    logits[q, c] = -|| f(query_q) - mean_{i: y_i = c} f(support_i) ||^2

Trained episodically (softmax cross-entropy of those logits against the
query labels, on the episodes of `kt.fewshot.EpisodeSampler`), the encoder
`f` learns an embedding in which class means separate classes it has never
seen; at test time new classes need only a few labelled examples and no
retraining. With an untrained encoder the same model is the plain
nearest-class-mean baseline.

The model takes raw examples: with a `BertEncoder` the texts are tokenised
by `encoder.preprocessor` inside the graph (and trimmed to the length bucket
of the episode's longest text), so episodes of strings feed `fit` directly.

Example:

```python
import keras, ktransfer as kt
train = kt.data.from_tsv("clinc150/train.tsv", text="sentence", label="label")
encoder = kt.encoders.BertEncoder.from_preset(
    "minilm", sequence_length=32, pooling="mean", trainable=2
)
protonet = kt.fewshot.PrototypicalNetwork(encoder)
protonet.compile(optimizer=keras.optimizers.Adam(2e-5))   # episodic loss + accuracy
episodes = kt.fewshot.EpisodeSampler(train, n_way=5, k_shot=5, n_query=5, seed=0)
protonet.fit(episodes.dataset(), steps_per_epoch=100, epochs=1)
protonet.predict(
    ["book a table for two", "what is my balance", "wake me at 7"],
    ["restaurant", "bank", "alarm"],
    ["set an alarm for six", "how much money do I have"],
)  # one label per query, taken from the support labels
```
"""

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.methods.fewshot._embedding import Embedder
from ktransfer.methods.fewshot._embedding import as_examples
from ktransfer.methods.fewshot._embedding import check_encoder
from ktransfer.methods.fewshot._embedding import encode


def prototype_logits(support_embeddings, support_labels, query_embeddings, num_classes=None):
    """Negative squared Euclidean distances of queries to class prototypes.

    Args:
        support_embeddings: float `[num_support, dim]`.
        support_labels: int `[num_support]`, classes `0..num_classes-1`.
        query_embeddings: float `[num_query, dim]`.
        num_classes: the number of classes; default `max(support_labels) + 1`.

    Returns:
        float32 `[num_query, num_classes]` logits.
    """
    support = tf.cast(support_embeddings, tf.float32)
    query = tf.cast(query_embeddings, tf.float32)
    labels = tf.cast(support_labels, tf.int32)
    if num_classes is None:
        num_classes = tf.reduce_max(labels) + 1
    prototypes = tf.math.unsorted_segment_mean(support, labels, num_classes)
    # |q - p|^2 = |q|^2 - 2 q.p + |p|^2, as one matmul.
    distances = (
        tf.reduce_sum(tf.square(query), axis=-1, keepdims=True)
        - 2.0 * tf.matmul(query, prototypes, transpose_b=True)
        + tf.reduce_sum(tf.square(prototypes), axis=-1)[None, :]
    )
    return -tf.maximum(distances, 0.0)


@keras.saving.register_keras_serializable(package="ktransfer")
class PrototypicalNetwork(keras.Model):
    """A prototypical network (Snell et al. 2017) around any pooled encoder.

    Args:
        encoder: a layer mapping a batch of examples to vectors: a
            `BertEncoder` with `pooling="mean"` (or `"cls"`/`"pooled"`; its
            preprocessor tokenises raw texts in the graph), a
            `WordVectorEncoder`, or any layer over feature vectors (e.g. a
            `keras.layers.Dense` projection of cached encoder features).
        normalize: L2-normalise embeddings before measuring distances (then
            squared distance = 2 - 2 cosine). Snell et al. use raw embeddings.

    Call it on an episode dict `{"support": [S], "support_labels": [S],
    "query": [Q]}` (one `EpisodeSampler` element); it returns float32
    `[Q, n_way]` logits. `compile()` defaults to the episodic loss (sparse
    categorical cross-entropy on logits) and accuracy.
    """

    def __init__(self, encoder, normalize=False, **kwargs):
        check_encoder(encoder)
        super().__init__(**kwargs)
        self.encoder = encoder
        self.normalize = bool(normalize)
        self._embedder = Embedder(encoder, normalize=self.normalize)

    def build(self, input_shape=None):
        # Build the encoder's weights only: calling a KerasHub preprocessor
        # here would build its packer before a `.keras` load has restored the
        # tokenizer's vocabulary (leaving it without [CLS]/[SEP] ids).
        has_preprocessor = getattr(self.encoder, "preprocessor", None) is not None
        if not self.encoder.built and not has_preprocessor and isinstance(input_shape, dict):
            self.encoder.build(input_shape["support"])
        self.built = True

    def _embed(self, examples, training=None):
        vectors = encode(self.encoder, examples, training=training)
        return tf.math.l2_normalize(vectors, axis=-1) if self.normalize else vectors

    def call(self, inputs, training=None):
        if not isinstance(inputs, dict) or not {"support", "support_labels", "query"} <= set(inputs):
            raise TypeError(
                "PrototypicalNetwork takes an episode dict with 'support', "
                "'support_labels' and 'query' (an element of "
                "kt.fewshot.EpisodeSampler(...).dataset()). For new classes use "
                "`predict(support_texts, support_labels, query_texts)`."
            )
        support, query = inputs["support"], inputs["query"]
        num_support = tf.shape(support)[0]
        # One encoder call for the whole episode: one tokenisation, one bucket.
        embeddings = self._embed(tf.concat([support, query], axis=0), training=training)
        return prototype_logits(
            embeddings[:num_support], inputs["support_labels"], embeddings[num_support:]
        )

    def compile(self, optimizer="adam", loss="auto", metrics="auto", **kwargs):
        """`keras.Model.compile` with the episodic loss and accuracy as defaults."""
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def embed(self, examples, batch_size=64):
        """The embeddings (numpy `[n, dim]`) that prototypes are built from."""
        return self._embedder(examples, batch_size=batch_size)

    def predict(
        self, support_texts, support_labels, query_texts, batch_size=64, return_scores=False
    ):
        """Label `query_texts` with the classes of a labelled support set.

        No training happens: the support examples of each label are
        averaged into a prototype and every query gets the label of the
        nearest one. The classes need not be among those seen in training.

        Args:
            support_texts: the labelled examples (strings, or vectors for a
                feature encoder), at least one per class.
            support_labels: their labels, one per example: any hashable
                values (strings or ints).
            query_texts: the examples to label.
            batch_size: examples per encoder call.
            return_scores: also return the logits `[num_query, num_classes]`
                and the class order.

        Returns:
            A numpy array of labels, one per query (values of
            `support_labels`); with `return_scores`, `(labels, logits,
            classes)`.
        """
        support = as_examples(support_texts, "support_texts")
        query = as_examples(query_texts, "query_texts")
        labels = np.asarray(list(support_labels))
        if labels.ndim != 1 or len(labels) != len(support):
            raise ValueError(
                f"`support_labels` needs one label per support example: got "
                f"{labels.shape} labels for {len(support)} examples."
            )
        classes, local = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                "The support set holds a single class: give labelled examples of "
                "at least two classes to choose between."
            )
        logits = prototype_logits(
            self.embed(support, batch_size),
            local.astype("int32"),
            self.embed(query, batch_size),
            num_classes=len(classes),
        ).numpy()
        predicted = classes[np.argmax(logits, axis=-1)]
        return (predicted, logits, classes) if return_scores else predicted

    def get_config(self):
        return {
            "name": self.name,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "normalize": self.normalize,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
