"""TextCNN (Kim 2014) over GloVe 6B 50d on SST-2: ktransfer vs plain Keras, one run.

Trains on the full SST-2 train file (67,349 phrases, ../shared/data/sst2),
evaluates on the 872 dev sentences, and prints ONE JSON line with, for each
system and each setting (frozen vectors = Kim's CNN-static, trainable =
CNN-non-static): dev accuracy, training seconds and examples/s.

- ktransfer: `kt.encoders.WordVectorEncoder(glove50, standardize="lower",
  oov="random")` + `kt.models.TextCNN` (widths 3/4/5 x 100 filters by
  default, `--filter-sizes` / `--num-filters` for both systems; "same"
  windows max-pooled over the real tokens, dropout 0.5), batches padded to
  their longest text. The trainable model is also exported with
  `kt.export.save` and the SavedModel's dev accuracy is measured on raw strings.
- plain_keras: the textbook Keras recipe (keras.io "Using pre-trained word
  embeddings"): `TextVectorization(standardize="lower",
  output_sequence_length=64)`, an `Embedding` initialised with GloVe (zeros
  for missing words), `Conv1D` widths 3/4/5 x 100 ("valid") +
  `GlobalMaxPooling1D` over all 64 positions, dropout 0.5, dense softmax.

Both: Adam (lr 1e-3), batch 50, the same epochs, the same shuffled order
(seeded), `keras.utils.set_random_seed(seed)` before each model; one training
per seed (default 0, 1, 2: on 872 dev sentences one seed moves accuracy by
about a point), figures are means over seeds, with each seed's dev accuracy.
Timings are wall-clock on whatever cores the machine has (possibly shared:
noisy).

    python benchmarks/text_cnn_sst2.py                 # 3 epochs x 3 seeds, both systems (~25 min on 2 cores)
    python benchmarks/text_cnn_sst2.py --quick         # 10k train phrases, 1 epoch, 1 seed
    python benchmarks/text_cnn_sst2.py --systems ktransfer --settings frozen
    python benchmarks/text_cnn_sst2.py --settings frozen --filter-sizes 1 2 3 4 5 --num-filters 300
"""

import argparse
import json
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(REPO, "..", "shared", "data", "sst2")
TARGETS = {"frozen": 0.78, "trainable": 0.81}


def load_sst2(folder, train_size, seed):
    import numpy as np

    import ktransfer as kt

    def arrays(dataset):
        texts, labels = [], []
        for text, label in dataset.as_numpy_iterator():
            texts.append(text)
            labels.append(label)
        return np.array(texts, dtype=object), np.array(labels, dtype="int32")

    train_texts, train_labels = arrays(kt.data.from_tsv(os.path.join(folder, "train.tsv")))
    dev_texts, dev_labels = arrays(kt.data.from_tsv(os.path.join(folder, "dev.tsv")))
    if train_size:
        order = np.random.default_rng(seed).permutation(len(train_texts))[:train_size]
        train_texts, train_labels = train_texts[order], train_labels[order]
    return train_texts, train_labels, dev_texts, dev_labels


def batches(texts, labels, batch_size, seed):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((texts.astype(bytes), labels))
    dataset = dataset.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def accuracy(predict, texts, labels, batch_size=256):
    import numpy as np

    hits = 0
    for start in range(0, len(texts), batch_size):
        scores = predict(texts[start:start + batch_size])
        hits += int(np.sum(np.argmax(scores, axis=-1) == labels[start:start + batch_size]))
    return hits / len(texts)


def fit(model, data, args, seed):
    train_texts, train_labels = data[0], data[1]
    start = time.perf_counter()
    model.fit(batches(train_texts, train_labels, args.batch_size, seed), epochs=args.epochs,
              shuffle=False, verbose=0)  # the dataset is shuffled (seeded) already
    seconds = time.perf_counter() - start
    return seconds, args.epochs * len(train_texts) / seconds


def run_ktransfer(vectors, data, setting, args, seed):
    import keras
    import tensorflow as tf

    import ktransfer as kt

    keras.utils.set_random_seed(seed)
    train_texts, _, dev_texts, dev_labels = data
    encoder = kt.encoders.WordVectorEncoder(
        vectors, standardize=args.standardize, trainable=setting == "trainable", seed=seed
    )
    start = time.perf_counter()
    coverage = encoder.adapt(list(train_texts))
    adapt_seconds = time.perf_counter() - start
    model = kt.models.TextCNN(
        encoder, num_classes=2, filter_sizes=tuple(args.filter_sizes), num_filters=args.num_filters
    )
    seconds, throughput = fit(model, data, args, seed)
    result = {
        "dev_accuracy": round(accuracy(lambda t: model(tf.constant(t.astype(bytes)), training=False), dev_texts, dev_labels), 4),
        "train_seconds": round(seconds, 1),
        "examples_per_second": round(throughput, 1),
        "adapt_seconds": round(adapt_seconds, 2),
        "coverage": {key: round(coverage[key], 4) for key in ("vocabulary", "tokens")},
        "vocabulary_size": encoder.vocabulary_size,
    }
    if setting == "trainable":
        folder = tempfile.mkdtemp(prefix="text_cnn_sst2_")
        try:
            path = kt.export.save(model, os.path.join(folder, "sst2_cnn", "1"), labels=["negative", "positive"])
            serve = tf.saved_model.load(path).signatures["serving_default"]
            result["exported_dev_accuracy"] = round(
                accuracy(lambda t: serve(text=tf.constant(t.astype(bytes)))["probabilities"].numpy(), dev_texts, dev_labels), 4
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return result


def run_plain_keras(vectors, data, setting, args, seed):
    """The keras.io pretrained-embeddings recipe with Kim's convolutions."""
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    train_texts, _, dev_texts, dev_labels = data
    start = time.perf_counter()
    vectorizer = keras.layers.TextVectorization(
        max_tokens=50_000, standardize="lower", output_sequence_length=args.sequence_length
    )
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(train_texts.astype(bytes)).batch(1024))
    vocabulary = vectorizer.get_vocabulary()
    matrix = np.zeros((len(vocabulary), vectors.dim), "float32")
    for row, word in enumerate(vocabulary):
        vector = vectors.get(str(word))
        if vector is not None:
            matrix[row] = vector
    adapt_seconds = time.perf_counter() - start
    text = keras.Input(shape=(1,), dtype="string")
    ids = vectorizer(text)
    tokens = keras.layers.Embedding(
        len(vocabulary), vectors.dim, embeddings_initializer=keras.initializers.Constant(matrix),
        trainable=setting == "trainable",
    )(ids)
    pooled = [
        keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(args.num_filters, width, activation="relu")(tokens))
        for width in args.filter_sizes
    ]
    features = keras.layers.Dropout(0.5)(keras.layers.Concatenate()(pooled))
    model = keras.Model(text, keras.layers.Dense(2, activation="softmax")(features))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seconds, throughput = fit(model, (data[0][:, None], data[1]), args, seed)
    return {
        "dev_accuracy": round(accuracy(lambda t: model(tf.constant(t.astype(bytes)[:, None]), training=False), dev_texts, dev_labels), 4),
        "train_seconds": round(seconds, 1),
        "examples_per_second": round(throughput, 1),
        "adapt_seconds": round(adapt_seconds, 2),
    }


def summary(runs):
    """Mean of the numbers over seeds, plus each seed's dev accuracy."""
    import numpy as np

    result = {}
    for key, value in runs[0].items():
        values = [run[key] for run in runs]
        if isinstance(value, int) and len(set(values)) == 1:
            result[key] = value
        elif isinstance(value, (int, float)):
            result[key] = round(float(np.mean(values)), 4)
        else:
            result[key] = value
    result["dev_accuracy_by_seed"] = [run["dev_accuracy"] for run in runs]
    if "exported_dev_accuracy" in runs[0]:
        result["exported_dev_accuracy_by_seed"] = [run["exported_dev_accuracy"] for run in runs]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=SST2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--train-size", type=int, default=0, help="0 = the full train file")
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--standardize", default="lower")
    parser.add_argument("--filter-sizes", type=int, nargs="+", default=[3, 4, 5],
                        help="convolution widths, both systems (Kim: 3 4 5)")
    parser.add_argument("--num-filters", type=int, default=100, help="feature maps per width (Kim: 100)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="one training per seed; the JSON has each seed's figures and the mean")
    parser.add_argument("--systems", nargs="+", default=["ktransfer", "plain_keras"],
                        choices=["ktransfer", "plain_keras"])
    parser.add_argument("--settings", nargs="+", default=["frozen", "trainable"], choices=["frozen", "trainable"])
    parser.add_argument("--quick", action="store_true", help="10k train phrases, 1 epoch")
    args = parser.parse_args()
    if args.quick:
        args.train_size, args.epochs, args.seeds = args.train_size or 10_000, 1, args.seeds[:1]

    import ktransfer as kt

    start = time.perf_counter()
    vectors = kt.WordVectors.load(kt.assets.path("glove50"))
    load_seconds = time.perf_counter() - start
    data = load_sst2(args.data, args.train_size, args.seeds[0])
    runners = {"ktransfer": run_ktransfer, "plain_keras": run_plain_keras}
    runs = {(system, setting): [] for system in args.systems for setting in args.settings}
    for seed in args.seeds:
        for setting in args.settings:
            for system in args.systems:
                runs[system, setting].append(runners[system](vectors, data, setting, args, seed))
    results = {system: {setting: summary(runs[system, setting]) for setting in args.settings}
               for system in args.systems}
    report = {
        "benchmark": "text_cnn_sst2",
        "vectors": "glove.6B.50d (kt.assets glove50)",
        "vectors_load_seconds": round(load_seconds, 2),
        "train_examples": len(data[0]),
        "dev_examples": len(data[2]),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": "adam 1e-3",
        "standardize": args.standardize,
        "filter_sizes": args.filter_sizes,
        "num_filters": args.num_filters,
        "seeds": args.seeds,
        "targets": TARGETS,
        "results": results,
        "cpu_count": os.cpu_count(),
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
