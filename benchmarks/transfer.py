"""Fixed-weight transfer: Amazon reviews -> SST-2 with 200 labelled sentences.

1. Source task: fine-tune MiniLM (mean pooling, AdamW 5e-5 with linear
   decay, 1 epoch, batch 32, sequence length 128) on S Amazon product
   reviews (default 4000, a seeded random sample of the 8000 reviews of the
   four domains in ../shared/data/amazon_multidomain), checked on 500 other
   reviews and, with no SST-2 label at all, on the SST-2 dev set.
2. Target task: SST-2 with only T labelled training sentences (default 200,
   a seeded random sample of train.tsv), evaluated on the 872 dev
   sentences, four ways:
   - minilm_probe: the pretrained MiniLM frozen, a new head (cached
     features, Adam 1e-3, 50 epochs);
   - minilm_finetuned: the pretrained MiniLM fine-tuned on the T sentences
     (AdamW 5e-5 with linear decay, batch 16, 10 epochs);
   - transfer_fixed: `kt.transfer.from_model(amazon_model, new_head,
     trainable=False)`: the Amazon encoder's weights fixed, a new head
     (cached features, as minilm_probe);
   - transfer_finetuned: `from_model(..., trainable=True)`, then fine-tuned
     as minilm_finetuned.
   Each target run is repeated for R samples of T sentences (seeds 0..R-1);
   the JSON line holds every run and the means.

    python benchmarks/transfer.py                   # 4000 reviews, 200 sentences, 3 samples
    python benchmarks/transfer.py --source-size 1000 --repeats 1
"""

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from feature_extraction import SHARED  # noqa: E402
from feature_extraction import load_split  # noqa: E402


def read_amazon(folder):
    texts, labels = [], []
    for path in sorted(glob.glob(os.path.join(folder, "*.tsv"))):
        domain_texts, domain_labels = load_split(path, quoting="auto")
        texts += domain_texts
        labels += domain_labels
    return texts, labels


def compile_(model, learning_rate, steps=None):
    import keras

    rate = (
        learning_rate
        if steps is None
        else keras.optimizers.schedules.PolynomialDecay(learning_rate, steps, 0.0)
    )
    optimizer = keras.optimizers.AdamW(rate) if steps is not None else keras.optimizers.Adam(rate)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def fine_tune(model, encoder, data, batch_size, epochs, learning_rate, seed):
    import ktransfer as kt

    batches = kt.data.prepare(
        kt.data.from_lists(*data),
        encoder.preprocessor,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
    )
    model(next(iter(batches))[0])
    compile_(model, learning_rate, steps=epochs * int(batches.cardinality()))
    model.fit(batches, epochs=epochs, verbose=0)
    return model


def evaluate(model, encoder, data):
    import ktransfer as kt

    batches = kt.data.prepare(kt.data.from_lists(*data), encoder.preprocessor, batch_size=64)
    return round(float(model.evaluate(batches, verbose=0)[1]), 4)


def probe(encoder, train, dev, cache_dir, epochs, seed):
    """A new head on the frozen encoder's cached features; dev accuracy."""
    import keras

    import ktransfer as kt

    keras.utils.set_random_seed(seed)
    features = kt.strategies.cache_features(
        encoder, kt.data.from_lists(*train), cache_dir=cache_dir
    )
    dev_features = kt.strategies.cache_features(
        encoder, kt.data.from_lists(*dev), cache_dir=cache_dir
    )
    head = kt.heads.ClassificationHead(2)
    model = keras.Sequential([keras.Input((encoder.output_dim,)), head])
    compile_(model, 1e-3)
    model.fit(features.shuffle(len(train[0]), seed=seed).batch(16), epochs=epochs, verbose=0)
    return round(float(model.evaluate(dev_features.batch(256), verbose=0)[1]), 4)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-size", type=int, default=4000)
    parser.add_argument("--target-size", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target-epochs", type=int, default=10)
    parser.add_argument("--probe-epochs", type=int, default=50)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--amazon", default=os.path.join(SHARED, "amazon_multidomain"))
    parser.add_argument("--sst2", default=os.path.join(SHARED, "sst2"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import ktransfer as kt

    minilm = kt.assets.path("minilm")

    def pretrained(trainable=True):
        return kt.encoders.BertEncoder.from_preset(
            minilm, sequence_length=args.sequence_length, pooling="mean", trainable=trainable
        )

    # --- 1. source task: Amazon reviews -----------------------------------------
    texts, labels = read_amazon(args.amazon)
    order = np.random.default_rng(0).permutation(len(texts))
    pick = lambda indices: ([texts[i] for i in indices], [labels[i] for i in indices])  # noqa: E731
    source_train = pick(order[: args.source_size])
    source_check = pick(order[args.source_size : args.source_size + 500])
    sst2_dev = load_split(os.path.join(args.sst2, "dev.tsv"))
    keras.utils.set_random_seed(0)
    encoder = pretrained()
    amazon_model = keras.Sequential([encoder, kt.heads.ClassificationHead(2, dropout=0.1)])
    start = time.perf_counter()
    fine_tune(amazon_model, encoder, source_train, 32, 1, 5e-5, seed=0)
    source = {
        "train_reviews": len(source_train[0]),
        "train_seconds": round(time.perf_counter() - start, 1),
        "heldout_reviews_accuracy": evaluate(amazon_model, encoder, source_check),
        "sst2_dev_accuracy_zero_shot": evaluate(amazon_model, encoder, sst2_dev),
    }

    # --- 2. target task: SST-2 with T labels ----------------------------------
    cache_dir = tempfile.mkdtemp(prefix="kt-transfer-cache-")
    frozen_minilm = pretrained(trainable=False)
    runs = []
    for seed in range(args.repeats):
        train = load_split(os.path.join(args.sst2, "train.tsv"), args.target_size, seed=seed)
        run = {"seed": seed}
        run["minilm_probe"] = probe(
            frozen_minilm, train, sst2_dev, cache_dir, args.probe_epochs, seed
        )
        keras.utils.set_random_seed(seed)
        encoder = pretrained()
        model = keras.Sequential([encoder, kt.heads.ClassificationHead(2, dropout=0.1)])
        fine_tune(model, encoder, train, 16, args.target_epochs, 5e-5, seed)
        run["minilm_finetuned"] = evaluate(model, encoder, sst2_dev)
        fixed = kt.transfer.from_model(
            amazon_model, kt.heads.ClassificationHead(2), trainable=False
        )
        run["transfer_fixed"] = probe(
            fixed.layers[0], train, sst2_dev, cache_dir, args.probe_epochs, seed
        )
        keras.utils.set_random_seed(seed)
        transferred = kt.transfer.from_model(
            amazon_model, kt.heads.ClassificationHead(2, dropout=0.1), trainable=True
        )
        fine_tune(transferred, transferred.layers[0], train, 16, args.target_epochs, 5e-5, seed)
        run["transfer_finetuned"] = evaluate(transferred, transferred.layers[0], sst2_dev)
        runs.append(run)
        print(json.dumps(run), file=sys.stderr)
    ways = ["minilm_probe", "minilm_finetuned", "transfer_fixed", "transfer_finetuned"]
    print(
        json.dumps(
            {
                "benchmark": "transfer_amazon_to_sst2_minilm",
                "target_train_size": args.target_size,
                "dev_size": len(sst2_dev[0]),
                "repeats": args.repeats,
                "sequence_length": args.sequence_length,
                "cpu_count": os.cpu_count(),
                "source": source,
                "runs": runs,
                "mean_dev_accuracy": {
                    way: round(statistics.mean(r[way] for r in runs), 4) for way in ways
                },
            }
        )
    )


if __name__ == "__main__":
    main()
