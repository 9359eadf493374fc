"""Fine-tuning throughput and accuracy: ktransfer vs KerasHub, in one run.

Fine-tunes the real MiniLM checkpoint on N SST-2 training sentences (default
4000, from ../shared/data/sst2), evaluates on the 872 dev sentences, and
prints ONE JSON line with, for each system: training examples/s after a
warm-up of 10 batches, total training seconds, dev accuracy and peak RSS.

- ktransfer: `BertEncoder(pooling="mean")` + `ClassificationHead`, token
  inputs from `kt.data.prepare` (length-bucketed batches).
- hf_torch: Hugging Face transformers on PyTorch (`pip install -e .[bench]`
  installs torch 2.13.0 CPU and transformers), `AutoModelForSequenceClassification`
  with dynamic padding per batch, AdamW with linear decay, all cores.
- keras_hub: KerasHub's documented way, `keras_hub.models.BertTextClassifier`
  on raw strings, with the same backbone folder, batch size, optimizer,
  learning rate and sequence length.

Each system runs in its own subprocess so peak RSS is its own.

    python benchmarks/finetune.py                 # 4000 sentences, both systems
    python benchmarks/finetune.py --train-size 1000 --systems ktransfer
"""

import argparse
import csv
import importlib.util
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


def run_torch(args):
    """Hugging Face transformers on PyTorch, dynamic padding, same data and optimizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 2)
    folder = os.path.join(os.environ.get("KTRANSFER_HOME", os.path.expanduser("~/.cache/ktransfer")), "minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    train_texts, train_labels = read_tsv(os.path.join(args.data, "train.tsv"), args.train_size, args.seed)
    dev_texts, dev_labels = read_tsv(os.path.join(args.data, "dev.tsv"))
    order = torch.randperm(len(train_texts)).tolist()
    batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.004)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(batches))
    model.train()
    warmup = 10
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        if step == warmup:
            measured_start = time.perf_counter()
        encoded = tokenizer([train_texts[i] for i in batch], padding=True, truncation=True,
                            max_length=args.sequence_length, return_tensors="pt")
        labels = torch.tensor([train_labels[i] for i in batch])
        loss = model(**encoded, labels=labels).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    end = time.perf_counter()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dev_texts), 64):
            encoded = tokenizer(dev_texts[i:i + 64], padding=True, truncation=True,
                                max_length=args.sequence_length, return_tensors="pt")
            predicted = model(**encoded).logits.argmax(-1)
            correct += int((predicted == torch.tensor(dev_labels[i:i + 64])).sum())
    print(json.dumps({
        "system": "hf_torch",
        "versions": f"torch {torch.__version__}",
        "train_examples_per_s": round((len(train_texts) - warmup * args.batch_size) / (end - measured_start), 2),
        "train_seconds_total": round(end - start, 1),
        "dev_accuracy": round(correct / len(dev_texts), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


def run_one(args):
    if args.system == "hf_torch":
        return run_torch(args)
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
    parser.add_argument("--systems", default="ktransfer,keras_hub,hf_torch")
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
        if system == "hf_torch" and importlib.util.find_spec("transformers") is None:
            results[system] = "not installed: pip install -e .[bench]"
            continue
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
    for peer in ("keras_hub", "hf_torch"):
        if isinstance(results.get(peer), dict) and "ktransfer" in results:
            summary[f"speedup_vs_{peer}"] = round(
                results["ktransfer"]["train_examples_per_s"] / results[peer]["train_examples_per_s"], 2
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
