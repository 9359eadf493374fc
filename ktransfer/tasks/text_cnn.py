"""`TextCNN`: Kim (2014)'s convolutional sentence classifier over word vectors, as a task.

Yoon Kim, "Convolutional Neural Networks for Sentence Classification", EMNLP
2014: word vectors -> convolutions of widths 3, 4, 5 (100 filters each, ReLU)
-> max over time -> dropout 0.5 -> softmax. With frozen vectors it is
"CNN-static", with `encoder.trainable = True` "CNN-non-static".
"""

from ktransfer._keras import keras
from ktransfer.layers.max_over_time import MaxOverTimeConv1D  # noqa: F401  (also its old home)
from ktransfer.tasks.word_vector_model import WordVectorClassifier


@keras.saving.register_keras_serializable(package="ktransfer")
class TextCNN(WordVectorClassifier):
    """Kim (2014)'s CNN sentence classifier: a task, raw strings in, compiled.

    `texts -> encoder.preprocessor` (in the tf.data pipeline) `->
    WordVectorEncoder -> MaxOverTimeConv1D -> ClassificationHead` (dropout,
    then a dense layer returning logits), compiled with Adam, the head's
    sparse categorical cross-entropy from logits and accuracy. A
    `kt.tasks.TextClassifier`: train with `model.fit` on raw texts and
    labels (lists, or a `tf.data.Dataset` of `(text, label)` such as
    `kt.data.from_tsv(...).batch(50)`), `predict` returns probabilities,
    `predict_labels` label names, and `export(path)` (or
    `kt.export.save(model, path, labels=...)`) writes a SavedModel that takes
    raw strings. Since tokenisation runs in the tf.data pipeline, plain
    `model.fit` also works under `MirroredStrategy` and
    `MultiWorkerMirroredStrategy` (build the model in `strategy.scope()`).

    Args:
        encoder: an adapted `kt.encoders.WordVectorEncoder(..., pooling=None)`.
            Frozen (`trainable=False`) is Kim's CNN-static; `trainable=True`
            CNN-non-static (toggling later needs `model.compile()` again).
        num_classes: number of classes (>= 2); default `len(labels)`.
        filter_sizes, num_filters: the convolutions (see `MaxOverTimeConv1D`).
            Kim's 3/4/5 x 100 by default. With frozen low-dimensional
            vectors the convolutions are the only learnt features, and more
            of them help: over frozen GloVe-50d on SST-2,
            `filter_sizes=(1, 2, 3, 4, 5), num_filters=300` reached 79.3%
            dev accuracy against 77.75% (docs/word_vectors.md).
        dropout: dropout rate on the pooled features.
        learning_rate: Adam's learning rate (`compile()` picks it again).
        labels: the class names (what `predict_labels` and the export answer).
        **kwargs: `kt.tasks.TextClassifier` arguments (`multi_label`,
            `threshold`, `name`).

    Example:

    ```python
    import ktransfer as kt
    train = kt.data.from_tsv("sst2/train.tsv")
    encoder = kt.encoders.WordVectorEncoder("glove50", standardize="lower")
    encoder.adapt(train)
    model = kt.models.TextCNN(encoder, num_classes=2, labels=["negative", "positive"])
    model.fit(train.shuffle(70_000, seed=0).batch(50), epochs=3)
    model.predict_labels(["a gripping, beautifully shot film"])
    model.export("saved_models/sst2_cnn/1")
    ```
    """

    default_name = "text_cnn"

    def __init__(
        self,
        encoder=None,
        num_classes=None,
        filter_sizes=(3, 4, 5),
        num_filters=100,
        dropout=0.5,
        learning_rate=1e-3,
        labels=None,
        **kwargs,
    ):
        super().__init__(
            encoder=encoder, num_classes=num_classes, labels=labels, dropout=dropout,
            learning_rate=learning_rate,
            body_config={"filter_sizes": filter_sizes, "num_filters": num_filters}, **kwargs,
        )
        convolutions = self.network.get_layer("convolutions")
        self.filter_sizes = tuple(convolutions.filter_sizes)
        self.num_filters = convolutions.num_filters

    def build_body(self, tokens, filter_sizes=(3, 4, 5), num_filters=100):
        return MaxOverTimeConv1D(filter_sizes, num_filters, name="convolutions")(tokens)

    def get_config(self):
        config = super().get_config()
        config.update({"filter_sizes": list(self.filter_sizes), "num_filters": self.num_filters})
        return config


__all__ = ["MaxOverTimeConv1D", "TextCNN"]
