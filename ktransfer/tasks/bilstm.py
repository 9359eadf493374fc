"""`BiLSTMClassifier`: a bidirectional LSTM sentence classifier over word vectors."""

from ktransfer._keras import keras
from ktransfer.tasks.word_vector_model import check_positive_int
from ktransfer.tasks.word_vector_model import check_token_encoder
from ktransfer.tasks.word_vector_model import classifier
from ktransfer.tasks.word_vector_model import string_input


def BiLSTMClassifier(encoder, num_classes, units=128, dropout=0.5, learning_rate=1e-3):
    """A bidirectional LSTM over word vectors, raw strings in, compiled.

    `text [batch] -> encoder -> Bidirectional(LSTM(units))` (the final states
    of both directions, concatenated; padding is skipped through the mask the
    encoder attaches) `-> ClassificationHead` (dropout, dense, logits),
    compiled with Adam, sparse categorical cross-entropy from logits and
    accuracy. Train with `model.fit` on batches of `(raw text, label)`; export
    with `kt.export.save`.

    Args:
        encoder: an adapted `kt.encoders.WordVectorEncoder(..., pooling=None)`.
        num_classes: number of classes (>= 2).
        units: LSTM units per direction.
        dropout: dropout rate on the LSTM output.
        learning_rate: Adam's learning rate.

    Returns:
        A compiled functional `keras.Model`.

    Example:

    ```python
    import ktransfer as kt
    train = kt.data.from_lists(["a great film", "a dull film"], ["pos", "neg"])
    encoder = kt.encoders.WordVectorEncoder("glove50", standardize="lower")
    encoder.adapt(train)
    model = kt.models.BiLSTMClassifier(encoder, num_classes=2, units=64)
    model.fit(train.batch(2), epochs=1)
    ```
    """
    check_token_encoder(encoder, "BiLSTMClassifier")
    check_positive_int(units, "units")
    text = string_input()
    tokens = encoder(text)
    features = keras.layers.Bidirectional(keras.layers.LSTM(units), name="bilstm")(tokens)
    return classifier(text, features, num_classes, dropout, learning_rate, name="bilstm_classifier")
