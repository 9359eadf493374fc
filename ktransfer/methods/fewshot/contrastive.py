"""`ContrastiveFinetuner`: SetFit-style few-shot text classification.

SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts")
works in two steps from a handful of labelled texts:

1. *Contrastive fine-tuning*: every labelled text is paired with a random
   text of the same class (target similarity 1) and one of another class
   (target 0), `num_iterations` times; the sentence encoder is fine-tuned as
   a siamese bi-encoder so that the cosine similarity of a pair's embeddings
   matches its target (Sentence-BERT's CosineSimilarityLoss: mean squared
   error). A few examples give many pairs: N texts give `2 * num_iterations
   * N` pairs.
2. *Head*: the fine-tuned encoder embeds the labelled texts (L2-normalised,
   as sentence-transformers models do) and a logistic regression is fitted on
   them (scikit-learn's `LogisticRegression`, SetFit's default head: a
   well-tested convex solver, deterministic, no learning rate to tune). Its
   weights are copied into a `kt.heads.ClassificationHead`, so the result is
   a plain Keras model, `encoder -> UnitNormalization -> head`, that
   `kt.export.save` serves from raw strings.

With a `BertEncoder` the pairs run through `kt.models.SiameseEncoder`
(length-bucketed batches from `kt.data.prepare`). Any other encoder (a
`WordVectorEncoder`, or a projection layer over cached feature vectors) is
trained as a siamese pair of itself on the examples as given.

Example:

```python
import keras, ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=64, pooling="mean")
setfit = kt.fewshot.ContrastiveFinetuner(encoder, num_iterations=20)
setfit.fit(["a great film", "a dull film", "loved it", "boring"], ["pos", "neg", "pos", "neg"])
setfit.predict(["what a great movie"])     # labels as given to fit, e.g. array(['pos'])
setfit.export("saved_models/setfit/1")      # raw strings in, as kt.export.save
```
"""

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.methods.fewshot._embedding import Embedder
from ktransfer.methods.fewshot._embedding import as_examples
from ktransfer.methods.fewshot._embedding import check_encoder


def contrastive_pairs(labels, num_iterations=20, seed=0):
    """SetFit's positive and negative pairs, as indices into the examples.

    For each of `num_iterations` rounds and each example `i`: one pair of `i`
    with a random other example of its class (target 1.0; `i` itself when
    it is its class's only example) and one pair with a random example of
    another class (target 0.0).

    Args:
        labels: one class label per example (at least two classes).
        num_iterations: rounds of pairing (SetFit's default is 20).
        seed: the random seed.

    Returns:
        `(first, second, targets)`: int arrays of example indices and float32
        targets, each of length `2 * num_iterations * len(labels)`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError("`labels` must be a non-empty 1-D list of class labels.")
    if isinstance(num_iterations, bool) or not isinstance(num_iterations, (int, np.integer)) or num_iterations < 1:
        raise ValueError(f"`num_iterations` must be a positive int. Received: {num_iterations!r}")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("Contrastive pairs need examples of at least two classes.")
    rng = np.random.default_rng(seed)
    index = np.arange(len(labels))
    same = {c: index[labels == c] for c in classes}
    other = {c: index[labels != c] for c in classes}
    first, second, targets = [], [], []
    for _ in range(num_iterations):
        for i, label in enumerate(labels):
            partners = same[label][same[label] != i]
            first += [i, i]
            second += [
                rng.choice(partners) if len(partners) else i,
                rng.choice(other[label]),
            ]
            targets += [1.0, 0.0]
    return (
        np.asarray(first, dtype=np.int64),
        np.asarray(second, dtype=np.int64),
        np.asarray(targets, dtype=np.float32),
    )


class _CosinePair(keras.Model):
    """Cosine similarity of two inputs embedded by one shared encoder."""

    def __init__(self, encoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder

    def call(self, inputs, training=None):
        first, second = inputs
        a = tf.math.l2_normalize(tf.cast(self.encoder(first, training=training), tf.float32), -1)
        b = tf.math.l2_normalize(tf.cast(self.encoder(second, training=training), tf.float32), -1)
        return tf.reduce_sum(a * b, axis=-1)


class ContrastiveFinetuner:
    """Few-shot classifier: contrastive encoder fine-tuning, then a linear head.

    Args:
        encoder: a pooled encoder layer, e.g.
            `BertEncoder.from_preset("minilm", pooling="mean")` (fine-tuned in
            place: its `trainable` setting decides what trains), a
            `WordVectorEncoder`, or a layer over feature vectors.
        num_iterations: SetFit's pair rounds (see `contrastive_pairs`).
        epochs: passes over the pairs; 0 skips fine-tuning (the head alone,
            on the encoder as it is).
        batch_size: pairs per step.
        learning_rate: Adam's learning rate for the encoder.
        max_pairs: optional cap on the number of pairs (a random subset), to
            bound the cost when there are many labelled texts.
        head_c: the inverse L2 strength `C` of the logistic regression.
        seed: seeds the pairs, their order and the fine-tuning.

    After `fit`: `model` (the Keras classifier, encoder included),
    `class_names`, `classes_` (the label values), `history`.
    """

    def __init__(
        self,
        encoder,
        num_iterations=20,
        epochs=1,
        batch_size=16,
        learning_rate=2e-5,
        max_pairs=None,
        head_c=1.0,
        seed=0,
    ):
        check_encoder(encoder)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"`epochs` must be an int >= 0. Received: {epochs!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
        if max_pairs is not None and (not isinstance(max_pairs, int) or max_pairs < 2):
            raise ValueError(f"`max_pairs` must be an int >= 2 or None. Received: {max_pairs!r}")
        if not float(head_c) > 0:
            raise ValueError(f"`head_c` must be > 0. Received: {head_c!r}")
        self.encoder = encoder
        self.num_iterations = num_iterations
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = float(learning_rate)
        self.max_pairs = max_pairs
        self.head_c = float(head_c)
        self.seed = int(seed)
        self.model = None
        self.history = None
        self.classes_ = None
        self.class_names = None
        self._siamese = None
        self._embedder = Embedder(encoder, normalize=True)

    # -- training ----------------------------------------------------------------
    def fit(self, texts, labels, verbose=0):
        """Fine-tune the encoder on contrastive pairs, then fit the head.

        Args:
            texts: the labelled examples (strings, or vectors for a feature
                encoder).
            labels: one label per example (strings or ints), >= 2 classes.
            verbose: Keras `fit` verbosity for the fine-tuning.

        Returns:
            self.
        """
        examples = as_examples(texts)
        labels = np.asarray(list(labels))
        if labels.ndim != 1 or len(labels) != len(examples):
            raise ValueError(
                f"`labels` needs one label per example: got {labels.shape} labels "
                f"for {len(examples)} examples."
            )
        self.classes_, indices = np.unique(labels, return_inverse=True)
        self.class_names = [str(c) for c in self.classes_]
        first, second, targets = contrastive_pairs(indices, self.num_iterations, self.seed)
        if self.epochs:
            self.history = self._fine_tune(examples, first, second, targets, verbose)
        head = self._fit_head(self._embedder(examples), indices)
        self.model = self._classifier(head)
        return self

    def _fine_tune(self, examples, first, second, targets, verbose):
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(targets))
        if self.max_pairs is not None:
            order = order[: self.max_pairs]
        first, second, targets = first[order], second[order], targets[order]
        keras.utils.set_random_seed(self.seed)
        pair_model = self._pair_model()
        if getattr(self.encoder, "preprocessor", None) is not None:
            from ktransfer.data.pipeline import prepare

            pairs = tf.data.Dataset.from_tensor_slices(
                ((examples[first], examples[second]), targets)
            )
            batches = prepare(pairs, pair_model.preprocessor, batch_size=self.batch_size)
        else:
            if examples.dtype != object:
                examples = examples.astype("float32")
            batches = tf.data.Dataset.from_tensor_slices(
                ((examples[first], examples[second]), targets)
            ).batch(self.batch_size)
        return pair_model.fit(batches, epochs=self.epochs, verbose=verbose).history

    def _pair_model(self):
        """The compiled siamese model; a later `fit` reuses it with a fresh Adam state.

        Reusing it keeps Keras' compiled train step, so refitting (e.g. one
        episode after another, with the encoder's weights reset) is not
        dominated by tracing.
        """
        if self._siamese is None:
            if getattr(self.encoder, "preprocessor", None) is not None:
                from ktransfer.tasks.siamese import SiameseEncoder

                self._siamese = SiameseEncoder(self.encoder)
            else:
                self._siamese = _CosinePair(self.encoder, name="cosine_pair")
            self._siamese.compile(
                optimizer=keras.optimizers.Adam(self.learning_rate), loss="mse"
            )
            return self._siamese
        optimizer = self._siamese.optimizer
        for variable in optimizer.variables:  # Adam's step count and moments, not its rate
            if not variable.path.endswith("learning_rate"):
                variable.assign(tf.zeros_like(variable))
        return self._siamese

    def _fit_head(self, embeddings, indices):
        from ktransfer.heads import ClassificationHead

        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError as error:  # pragma: no cover - a declared dependency
            raise ImportError(
                "ContrastiveFinetuner fits its head with scikit-learn: "
                "`pip install scikit-learn`."
            ) from error
        regression = LogisticRegression(C=self.head_c, max_iter=1000)
        regression.fit(embeddings, indices)
        coef, intercept = regression.coef_, regression.intercept_
        if coef.shape[0] == 1:  # binary: logits [0, w.x + b] give p1 = sigmoid(w.x + b)
            coef = np.concatenate([np.zeros_like(coef), coef], axis=0)
            intercept = np.concatenate([np.zeros_like(intercept), intercept])
        head = ClassificationHead(len(self.classes_))
        head.build((None, embeddings.shape[-1]))
        head.output_dense.set_weights([coef.T.astype("float32"), intercept.astype("float32")])
        return head

    def _classifier(self, head):
        from ktransfer.encoders.bert_encoder import BertEncoder
        from ktransfer.methods.feature_extraction import attach_head

        dim = head.output_dense.kernel.shape[0]
        on_top = keras.Sequential(
            [keras.Input((dim,)), keras.layers.UnitNormalization(), head], name="setfit_head"
        )
        if isinstance(self.encoder, BertEncoder):
            return attach_head(self.encoder, on_top, name="setfit")
        return keras.Sequential([self.encoder, on_top], name="setfit")

    # -- inference ---------------------------------------------------------------
    def _check_fitted(self):
        if self.model is None:
            raise RuntimeError("This ContrastiveFinetuner is not fitted yet: call fit(texts, labels).")

    def embed(self, texts, batch_size=64):
        """L2-normalised embeddings of the (fine-tuned) encoder, numpy `[n, dim]`."""
        return self._embedder(texts, batch_size=batch_size)

    def predict_proba(self, texts, batch_size=64):
        """Class probabilities `[n, num_classes]`, columns in `classes_` order."""
        self._check_fitted()
        head = self.model.layers[-1]
        logits = head(self.embed(texts, batch_size), training=False)
        return np.asarray(tf.nn.softmax(logits, axis=-1))

    def predict(self, texts, batch_size=64):
        """The predicted label of each text (values of the `fit` labels)."""
        self._check_fitted()
        return self.classes_[np.argmax(self.predict_proba(texts, batch_size), axis=-1)]

    def export(self, path, overwrite=False):
        """Write the classifier as a raw-string SavedModel (`kt.export.save`)."""
        from ktransfer import export

        self._check_fitted()
        return export.save(self.model, path, labels=self.class_names, overwrite=overwrite)
