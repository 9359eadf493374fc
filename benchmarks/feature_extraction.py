"""Feature extraction: cached features vs KerasHub's frozen-backbone `fit`.

Trains the same linear head (`ClassificationHead(2)`, no dropout, Adam) on
mean-pooled MiniLM features of N SST-2 training sentences (default 4000, a
seeded random sample of ../shared/data/sst2/train.tsv) for E epochs, two
ways, and evaluates both on the 872 dev sentences:

- cached: `kt.strategies.cache_features(encoder, train)` runs the encoder
  once; the head then trains on the cached vectors.
- keras_hub: KerasHub's way, `backbone.trainable = False` and `fit` on raw
  strings, the preprocessor mapped over the tf.data pipeline as
  `keras_hub.models.Task.fit` does: every epoch re-runs the backbone on
  every sentence (padded to `sequence_length`, as KerasHub does). The head
  is the same masked mean pooling + dense layer, with the same initial
  weights and the same batch order, over the same backbone object (exact
  GELU, as MiniLM was trained).

It prints ONE JSON line: the median seconds of epochs 2..E for each (the
speedup is their ratio), the one-off cost of building the cache, the cost
of finding it again (hashing the encoder and the data), both dev
accuracies, and a check that the exported raw-string SavedModel of the
cached-feature model answers like the in-memory model in a fresh process.

    python benchmarks/feature_extraction.py                # 4000 sentences, 6 epochs
    python benchmarks/feature_extraction.py --train-size 8000 --epochs 10
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data")


def load_split(path, size=None, seed=0, **reader_args):
    """(texts, labels) of a labelled TSV, optionally a seeded random sample."""
    import numpy as np

    import ktransfer as kt

    rows = list(kt.data.from_tsv(path, **reader_args).as_numpy_iterator())
    if size is not None:
        if size > len(rows):
            sys.exit(f"{path} has {len(rows)} rows; asked for {size}.")
        order = np.random.default_rng(seed).permutation(len(rows))[:size]
        rows = [rows[i] for i in order]
    return [text.decode("utf-8") for text, _ in rows], [int(label) for _, label in rows]


def epoch_timer():
    """A Keras callback recording each epoch's wall-clock seconds in `.seconds`."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def masked_mean(sequence, padding_mask):
    import keras

    mask = keras.ops.cast(padding_mask, sequence.dtype)[:, :, None]
    return keras.ops.sum(sequence * mask, axis=1) / keras.ops.maximum(
        keras.ops.sum(mask, axis=1), 1.0
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--data", default=os.path.join(SHARED, "sst2"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()
    if args.epochs < 2:
        sys.exit("--epochs must be >= 2: epochs 2..E are the ones compared.")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    import ktransfer as kt

    train_texts, train_labels = load_split(
        os.path.join(args.data, "train.tsv"), args.train_size, args.seed
    )
    dev_texts, dev_labels = load_split(os.path.join(args.data, "dev.tsv"))
    keras.utils.set_random_seed(args.seed)
    encoder = kt.encoders.BertEncoder.from_preset(
        kt.assets.path("minilm"),
        sequence_length=args.sequence_length,
        pooling="mean",
        trainable=False,
    )
    head = kt.heads.ClassificationHead(2)
    head.build((None, encoder.output_dim))
    initial_head = [np.array(w) for w in head.get_weights()]

    def compile_(model):
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    # --- cached features ------------------------------------------------------
    cache_dir = tempfile.mkdtemp(prefix="kt-feature-cache-")
    train = kt.data.from_lists(train_texts, train_labels)
    start = time.perf_counter()
    features = kt.strategies.cache_features(encoder, train, cache_dir=cache_dir)
    cache_seconds = time.perf_counter() - start
    start = time.perf_counter()
    again = kt.strategies.cache_features(encoder, train, cache_dir=cache_dir)
    cache_hit_seconds = time.perf_counter() - start
    assert again.cache_path == features.cache_path
    dev_features = kt.strategies.cache_features(
        encoder, kt.data.from_lists(dev_texts, dev_labels), cache_dir=cache_dir
    )

    probe = keras.Sequential([keras.Input((encoder.output_dim,)), head])
    compile_(probe)
    timer = epoch_timer()
    probe.fit(
        features.shuffle(len(train_texts), seed=args.seed).batch(args.batch_size),
        epochs=args.epochs,
        verbose=0,
        callbacks=[timer],
    )
    cached_accuracy = probe.evaluate(dev_features.batch(256), verbose=0)[1]
    cached_epochs = timer.seconds

    # --- KerasHub's way: frozen backbone, fit on raw strings ------------------
    backbone, preprocessor = encoder.backbone, encoder.preprocessor
    backbone.trainable = False
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask"),
    }
    sequence = backbone(inputs)["sequence_output"]
    peer_head = kt.heads.ClassificationHead(2)
    peer = keras.Model(inputs, peer_head(masked_mean(sequence, inputs["padding_mask"])))
    peer_head.set_weights(initial_head)
    compile_(peer)

    def tokenize(texts, labels):
        x = preprocessor(texts)
        return dict(x, padding_mask=tf.cast(x["padding_mask"], tf.int32)), labels

    raw_train = (
        tf.data.Dataset.from_tensor_slices((train_texts, train_labels))
        .shuffle(len(train_texts), seed=args.seed)
        .batch(args.batch_size)
        .map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    raw_dev = tf.data.Dataset.from_tensor_slices((dev_texts, dev_labels)).batch(64).map(tokenize)
    timer = epoch_timer()
    peer.fit(raw_train, epochs=args.epochs, verbose=0, callbacks=[timer])
    peer_accuracy = peer.evaluate(raw_dev, verbose=0)[1]
    peer_epochs = timer.seconds

    # --- the cached-feature model exports and answers on raw strings --------
    export = None
    if not args.skip_export:
        sys.path.insert(0, os.path.join(REPO, "tests"))
        from harness import serve_in_fresh_process

        model = kt.strategies.attach_head(encoder, probe)
        expected = tf.nn.softmax(kt.predict(model, dev_texts, raw=True)).numpy()
        with tempfile.TemporaryDirectory() as folder:
            path = kt.export.save(
                model, os.path.join(folder, "sst2_probe", "1"), labels=["negative", "positive"]
            )
            answer = serve_in_fresh_process(path, dev_texts)
        served = np.asarray(answer["probabilities"])
        export = {
            "texts": len(dev_texts),
            "max_abs_diff": float(np.abs(served - expected).max()),
            "accuracy": round(float((served.argmax(-1) == np.asarray(dev_labels)).mean()), 4),
        }

    cached_median = statistics.median(cached_epochs[1:])
    peer_median = statistics.median(peer_epochs[1:])
    print(
        json.dumps(
            {
                "benchmark": "feature_extraction_sst2_minilm",
                "train_size": len(train_texts),
                "dev_size": len(dev_texts),
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "sequence_length": args.sequence_length,
                "head_learning_rate": args.learning_rate,
                "pooling": "mean",
                "cpu_count": os.cpu_count(),
                "cached": {
                    "cache_build_seconds": round(cache_seconds, 2),
                    "cache_hit_seconds": round(cache_hit_seconds, 2),
                    "epoch_seconds_2_to_n": [round(s, 3) for s in cached_epochs[1:]],
                    "median_epoch_seconds": round(cached_median, 3),
                    "dev_accuracy": round(float(cached_accuracy), 4),
                },
                "keras_hub": {
                    "epoch_seconds_2_to_n": [round(s, 2) for s in peer_epochs[1:]],
                    "median_epoch_seconds": round(peer_median, 2),
                    "dev_accuracy": round(float(peer_accuracy), 4),
                },
                "speedup_epochs_2_to_n": round(peer_median / cached_median, 1),
                "accuracy_gap_points": round(
                    100 * abs(float(cached_accuracy) - float(peer_accuracy)), 2
                ),
                "export": export,
            }
        )
    )


if __name__ == "__main__":
    main()
