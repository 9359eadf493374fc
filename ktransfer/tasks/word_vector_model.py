"""Shared pieces of the raw-string word-vector classifiers (`TextCNN`, `BiLSTMClassifier`)."""

from ktransfer._keras import keras


def check_token_encoder(encoder, model_name):
    """`encoder` must be an adapted `WordVectorEncoder` returning one vector per token."""
    from ktransfer.encoders.word_vector_encoder import WordVectorEncoder

    if not isinstance(encoder, WordVectorEncoder):
        raise TypeError(
            f"{model_name} reads raw strings through a "
            "`kt.encoders.WordVectorEncoder(vectors, pooling=None)`. Received: "
            f"{type(encoder).__name__}. For BERT encoders, use "
            "`keras.Sequential([encoder, kt.heads.ClassificationHead(n)])`."
        )
    if encoder.pooling is not None:
        raise ValueError(
            f"{model_name} needs one vector per token: build the encoder with "
            f"pooling=None (it has pooling={encoder.pooling!r})."
        )
    if encoder.vocabulary_size is None:
        raise ValueError(
            "The encoder has no vocabulary yet: call `encoder.adapt(train_texts)` "
            f"before building the {model_name}."
        )


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {value!r}")
    return value


def string_input():
    """The model input: a batch of raw strings, shape `[batch]`."""
    return keras.Input(shape=(), dtype="string", name="text")


def classifier(text, features, num_classes, dropout, learning_rate, name):
    """Finish a functional classifier: `ClassificationHead` (logits) + compile."""
    from ktransfer.heads.classification_head import ClassificationHead

    if not isinstance(learning_rate, (int, float)) or isinstance(learning_rate, bool) or learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be a positive number. Received: {learning_rate!r}")
    head = ClassificationHead(num_classes, dropout=dropout, name="classification_head")
    model = keras.Model(text, head(features), name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=head.default_loss(),
        metrics=["accuracy"],
    )
    return model
