"""`BiLSTMClassifier`: a bidirectional LSTM sentence classifier over word vectors, as a task."""

from ktransfer._keras import keras
from ktransfer.layers.checks import check_positive_int
from ktransfer.tasks.word_vector_model import WordVectorClassifier


@keras.saving.register_keras_serializable(package="ktransfer")
class BiLSTMClassifier(WordVectorClassifier):
    """A bidirectional LSTM over word vectors: a task, raw strings in, compiled.

    `texts -> encoder.preprocessor` (in the tf.data pipeline) `->
    WordVectorEncoder -> Bidirectional(LSTM(units))` (the final states of
    both directions, concatenated; padding is skipped through the mask the
    encoder attaches) `-> ClassificationHead` (dropout, dense, logits),
    compiled with Adam, sparse categorical cross-entropy from logits and
    accuracy. A `kt.tasks.TextClassifier` (see `kt.models.TextCNN`): `fit`
    on raw texts and labels, `predict`, `predict_labels`, `export`.

    Args:
        encoder: an adapted `kt.encoders.WordVectorEncoder(..., pooling=None)`.
        num_classes: number of classes (>= 2); default `len(labels)`.
        units: LSTM units per direction.
        dropout: dropout rate on the LSTM output.
        learning_rate: Adam's learning rate.
        labels: the class names.
        **kwargs: `kt.tasks.TextClassifier` arguments.

    Example:

    ```python
    import numpy as np, ktransfer as kt
    vectors = kt.WordVectors(["a", "great", "dull", "film"], np.eye(4, dtype="float32"))
    encoder = kt.encoders.WordVectorEncoder(vectors, standardize="lower")
    encoder.adapt(["a great film", "a dull film"])
    model = kt.models.BiLSTMClassifier(encoder, num_classes=2, units=8, labels=["neg", "pos"])
    model.fit(x=["a great film", "a dull film"], y=["pos", "neg"], epochs=1, verbose=0)
    model.predict_labels(["a great film"])   # ['pos'] once trained enough
    ```
    """

    default_name = "bilstm_classifier"

    def __init__(self, encoder=None, num_classes=None, units=128, dropout=0.5, learning_rate=1e-3,
                 labels=None, **kwargs):
        check_positive_int(units, "units")
        super().__init__(
            encoder=encoder, num_classes=num_classes, labels=labels, dropout=dropout,
            learning_rate=learning_rate, body_config={"units": units}, **kwargs,
        )
        self.units = units

    def build_body(self, tokens, units=128):
        return keras.layers.Bidirectional(keras.layers.LSTM(units), name="bilstm")(tokens)

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config


__all__ = ["BiLSTMClassifier"]
