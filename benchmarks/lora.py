"""LoRA vs full fine-tuning of MiniLM on SST-2, and the merged LoRA export.

Fine-tunes the real MiniLM checkpoint (mean pooling, `ClassificationHead(2,
dropout=0.1)`, AdamW with a linear decay to 0, batch 32, length-bucketed
batches) on N SST-2 training sentences (default 4000, a seeded random sample
of ../shared/data/sst2/train.tsv) for E epochs, twice:

- full: every weight trains (learning rate 5e-5);
- lora: `encoder.enable_lora(rank=8)`: only the LoRA factors of the query
  and value projections and the head train (learning rate 1e-3).

Both are evaluated on the 872 dev sentences. The LoRA model is then merged
(`kt.strategies.merge_lora`), exported with `kt.export.save`, and served in
a fresh process (TensorFlow + tensorflow_text only) on the dev sentences:
the served probabilities are compared with the in-memory LoRA model's.
Prints ONE JSON line.

    python benchmarks/lora.py                       # 4000 sentences, 2 epochs each
    python benchmarks/lora.py --skip-full --lora-epochs 4 --lora-learning-rate 2e-3
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from feature_extraction import REPO  # noqa: E402
from feature_extraction import SHARED  # noqa: E402
from feature_extraction import load_split  # noqa: E402


def fine_tune(args, train, dev, lora_rank, learning_rate, epochs):
    """Train one model; return it with its figures."""
    import keras
    import numpy as np

    import ktransfer as kt

    keras.utils.set_random_seed(args.seed)
    encoder = kt.encoders.BertEncoder.from_preset(
        kt.assets.path("minilm"), sequence_length=args.sequence_length, pooling="mean"
    )
    if lora_rank:
        encoder.enable_lora(rank=lora_rank)
    head = kt.heads.ClassificationHead(2, dropout=0.1)
    model = keras.Sequential([encoder, head])
    train_batches = kt.data.prepare(
        kt.data.from_lists(*train),
        encoder.preprocessor,
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,
    )
    dev_batches = kt.data.prepare(kt.data.from_lists(*dev), encoder.preprocessor, batch_size=64)
    model(next(iter(train_batches))[0])
    steps = epochs * int(train_batches.cardinality())
    model.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.PolynomialDecay(learning_rate, steps, 0.0)
        ),
        loss=head.default_loss(),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(train_batches, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(dev_batches, verbose=0)[1]
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    total = sum(int(np.prod(v.shape)) for v in model.weights)
    return model, {
        "epochs": epochs,
        "learning_rate": learning_rate,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_seconds": round(seconds, 1),
        "train_examples_per_s": round(epochs * len(train[0]) / seconds, 1),
        "dev_accuracy": round(float(accuracy), 4),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lora-epochs", type=int, help="default: --epochs")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--full-learning-rate", type=float, default=5e-5)
    parser.add_argument("--lora-learning-rate", type=float, default=1e-3)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--data", default=os.path.join(SHARED, "sst2"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-full", action="store_true", help="train the LoRA model only")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    import ktransfer as kt

    sys.path.insert(0, os.path.join(REPO, "tests"))
    from harness import serve_in_fresh_process

    train = load_split(os.path.join(args.data, "train.tsv"), args.train_size, args.seed)
    dev = load_split(os.path.join(args.data, "dev.tsv"))
    full = None
    if not args.skip_full:
        _, full = fine_tune(args, train, dev, None, args.full_learning_rate, args.epochs)
    lora_model, lora = fine_tune(
        args, train, dev, args.rank, args.lora_learning_rate, args.lora_epochs or args.epochs
    )

    merged = kt.strategies.merge_lora(lora_model)
    in_memory = tf.nn.softmax(kt.predict(lora_model, dev[0], raw=True)).numpy()
    with tempfile.TemporaryDirectory() as folder:
        path = kt.export.save(
            merged, os.path.join(folder, "sst2_lora", "1"), labels=["negative", "positive"]
        )
        answer = serve_in_fresh_process(path, dev[0])
    served = np.asarray(answer["probabilities"])
    print(
        json.dumps(
            {
                "benchmark": "lora_vs_full_sst2_minilm",
                "train_size": len(train[0]),
                "dev_size": len(dev[0]),
                "batch_size": args.batch_size,
                "sequence_length": args.sequence_length,
                "lora_rank": args.rank,
                "cpu_count": os.cpu_count(),
                "full": full,
                "lora": lora,
                "trainable_fraction": round(
                    lora["trainable_parameters"] / lora["total_parameters"], 4
                ),
                "merged_export": {
                    "merged_has_lora_variables": any("lora" in v.path for v in merged.weights),
                    "max_abs_diff_vs_in_memory": float(np.abs(served - in_memory).max()),
                    "served_dev_accuracy": round(
                        float((served.argmax(-1) == np.asarray(dev[1])).mean()), 4
                    ),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
