"""Fine-tuning throughput and accuracy: ktransfer vs KerasHub, in one run.

Fine-tunes the real MiniLM checkpoint on N SST-2 training sentences (default
4000, from ../shared/data/sst2), evaluates on the 872 dev sentences, and
prints ONE JSON line with, for each system: training examples/s after a
warm-up of 10 batches, total training seconds, dev accuracy and peak RSS.

- ktransfer: `BertEncoder(pooling="mean")` + `ClassificationHead`, token
  inputs from `kt.data.prepare` (length-bucketed batches).
- keras_hub: KerasHub's documented way, `keras_hub.models.BertTextClassifier`
  on raw strings, with the same backbone folder, batch size, optimizer,
  learning rate and sequence length.

Each system runs in its own subprocess so peak RSS is its own.

    python benchmarks/finetune.py                 # 4000 sentences, both systems
    python benchmarks/finetune.py --train-size 1000 --systems ktransfer
"""

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(REPO, "..", "shared", "data", "sst2")


def read_tsv(path, limit=None, seed=0):
    import random

    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    if limit:
        random.Random(seed).shuffle(rows)
        rows = rows[:limit]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def run_one(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    import ktransfer as kt

    keras.utils.set_random_seed(args.seed)
    if args.precision != "float32":
        keras.mixed_precision.set_dtype_policy(args.precision)
    folder = kt.assets.path("minilm")
    train_texts, train_labels = read_tsv(os.path.join(args.data, "train.tsv"), args.train_size, args.seed)
    dev_texts, dev_labels = read_tsv(os.path.join(args.data, "dev.tsv"))
    steps = -(-len(train_texts) // args.batch_size)
    optimizer = keras.optimizers.AdamW(
        keras.optimizers.schedules.PolynomialDecay(args.learning_rate, steps, 0.0)
    )
    if args.system == "ktransfer":
        encoder = kt.encoders.BertEncoder.from_preset(
            folder, sequence_length=args.sequence_length, pooling="mean"
        )
        head = kt.heads.ClassificationHead(2, dropout=0.1)
        model = keras.Sequential([encoder, head])
        train = kt.data.prepare(
            kt.data.from_lists(train_texts, train_labels), encoder.preprocessor,
            batch_size=args.batch_size, shuffle=True, seed=args.seed,
        )
        dev = kt.data.prepare(kt.data.from_lists(dev_texts, dev_labels), encoder.preprocessor, batch_size=64)
        loss = head.default_loss()
    else:
        import keras_hub

        backbone = keras_hub.models.BertBackbone.from_preset(folder)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
            folder, sequence_length=args.sequence_length
        )
        model = keras_hub.models.BertTextClassifier(
            backbone=backbone, preprocessor=preprocessor, num_classes=2
        )
        train = (
            tf.data.Dataset.from_tensor_slices((train_texts, train_labels))
            .shuffle(len(train_texts), seed=args.seed)
            .batch(args.batch_size)
        )
        dev = tf.data.Dataset.from_tensor_slices((dev_texts, dev_labels)).batch(64)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])

    class Timer(keras.callbacks.Callback):
        warmup = 10

        def on_train_batch_end(self, batch, logs=None):
            if batch == self.warmup - 1:
                self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = Timer()
    start = time.perf_counter()
    model.fit(train, epochs=1, verbose=0, callbacks=[timer])
    total = time.perf_counter() - start
    measured = len(train_texts) - timer.warmup * args.batch_size
    _, accuracy = model.evaluate(dev, verbose=0)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "system": args.system,
        "train_examples_per_s": round(measured / timer.seconds, 2),
        "train_seconds_total": round(total, 1),
        "dev_accuracy": round(float(accuracy), 4),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--systems", default="ktransfer,keras_hub")
    parser.add_argument("--data", default=SST2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--system", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.system:
        return run_one(args)
    if not os.path.isdir(args.data):
        sys.exit(f"SST-2 not found at {args.data}: pass --data (the folder with train.tsv and dev.tsv).")
    results = {}
    for system in args.systems.split(","):
        command = [sys.executable, __file__, "--system", system] + [
            a for a in sys.argv[1:] if not a.startswith("--systems")
        ]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            sys.exit(f"{system} failed:\n{completed.stderr[-3000:]}")
        results[system] = json.loads(completed.stdout.strip().splitlines()[-1])
    summary = {
        "benchmark": "finetune_sst2_minilm",
        "train_size": args.train_size,
        "batch_size": args.batch_size,
        "sequence_length": args.sequence_length,
        "precision": args.precision,
        "cpu_count": os.cpu_count(),
        **{f"{name}": figures for name, figures in results.items()},
    }
    if "ktransfer" in results and "keras_hub" in results:
        summary["speedup_vs_keras_hub"] = round(
            results["ktransfer"]["train_examples_per_s"] / results["keras_hub"]["train_examples_per_s"], 2
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
