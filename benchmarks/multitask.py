"""Multi-task vs single-task fine-tuning of one MiniLM encoder, on real data.

Two tasks from ../shared/data:

- sentiment: SST-2 (a seeded random subset of train.tsv; all 872 sentences
  of dev.tsv for evaluation), 2 classes;
- topic: which of the 4 Amazon product domains (books, dvd, electronics,
  kitchen) a review comes from, from the review texts of amazon_multidomain
  (duplicates removed per domain, then a seeded fixed split: the first
  `--topic-train` reviews per domain train, the next `--topic-dev` evaluate).

Three fine-tuning runs with the same recipe (MiniLM, `pooling="mean"`,
`sequence_length` 64, batch 32, AdamW with linear decay to 0, the same
epochs and seed): a single-task model per task (`Sequential([encoder,
ClassificationHead])`), and one `kt.multitask.MultiTaskModel` (one encoder,
two heads) on `kt.data.mix` of both training sets. Prints ONE JSON line:
each task's dev accuracy for its single-task model and for the multi-task
model, the parameter counts, the seconds of each run, and the length
statistics behind the no-padding design of `kt.data.mix`.

    python benchmarks/multitask.py                       # all three runs
    python benchmarks/multitask.py --runs multitask --loss-weights topic=0.5
"""

import argparse
import csv
import json
import os
import random
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data")
DOMAINS = ("books", "dvd", "electronics", "kitchen")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finetune import read_tsv as read_sst2  # noqa: E402  (seeded SST-2 subset)


def read_domains(folder, train_per_domain, dev_per_domain, seed=0):
    """(train_texts, train_labels), (dev_texts, dev_labels): label = domain index."""
    csv.field_size_limit(1 << 24)
    train, dev = ([], []), ([], [])
    for label, domain in enumerate(DOMAINS):
        with open(os.path.join(folder, f"{domain}.tsv"), encoding="utf-8", newline="") as f:
            texts = [row[0] for row in list(csv.reader(f, delimiter="\t"))[1:]]
        texts = sorted(set(texts))  # the release repeats some reviews: keep one of each
        random.Random(seed).shuffle(texts)
        if len(texts) < train_per_domain + dev_per_domain:
            raise SystemExit(f"{domain}: only {len(texts)} distinct reviews")
        for (xs, ys), chosen in (
            (train, texts[:train_per_domain]),
            (dev, texts[train_per_domain:train_per_domain + dev_per_domain]),
        ):
            xs.extend(chosen)
            ys.extend([label] * len(chosen))
    return train, dev


def count_params(model):
    return int(sum(int(w.numpy().size) for w in model.weights))


def main(args):
    import numpy as np
    import keras
    import ktransfer as kt

    data = {
        "sentiment": (
            read_sst2(os.path.join(args.data, "sst2", "train.tsv"), args.sentiment_train, args.seed),
            read_sst2(os.path.join(args.data, "sst2", "dev.tsv")),
        ),
        "topic": read_domains(
            os.path.join(args.data, "amazon_multidomain"), args.topic_train, args.topic_dev, args.seed
        ),
    }
    num_classes = {"sentiment": 2, "topic": len(DOMAINS)}
    loss_weights = dict(
        (name, float(value)) for name, value in (item.split("=") for item in args.loss_weights if item)
    )

    def encoder():
        return kt.encoders.BertEncoder.from_preset(
            "minilm", sequence_length=args.sequence_length, pooling="mean"
        )

    def prepared(preprocessor, texts, labels, shuffle):
        return kt.data.prepare(
            kt.data.from_lists(texts, labels), preprocessor, batch_size=args.batch_size,
            shuffle=shuffle, seed=args.seed,
        )

    def optimizer(steps):
        return keras.optimizers.AdamW(
            keras.optimizers.schedules.PolynomialDecay(args.learning_rate, steps, 0.0)
        )

    results = {"accuracy": {}, "params": {}, "seconds": {}}
    for run in args.runs:
        keras.utils.set_random_seed(args.seed)
        shared = encoder()
        train = {t: prepared(shared.preprocessor, *data[t][0], shuffle=True) for t in data}
        dev = {t: prepared(shared.preprocessor, *data[t][1], shuffle=False) for t in data}
        start = time.perf_counter()
        if run == "multitask":
            heads = {t: kt.heads.ClassificationHead(num_classes[t], dropout=0.1) for t in data}
            model = kt.multitask.MultiTaskModel(shared, heads)
            mixed = kt.data.mix(train, strategy=args.strategy, temperature=args.temperature, seed=args.seed)
            model.compile(
                optimizer=optimizer(int(mixed.cardinality()) * args.epochs),
                metrics={t: ["accuracy"] for t in data},
                loss_weights=loss_weights or None,
            )
            model.fit(mixed, epochs=args.epochs, verbose=2)
            logs = model.evaluate(kt.data.mix(dev), verbose=0, return_dict=True)
            accuracy = {t: logs[f"{t}_accuracy"] for t in data}
            results["mix_counts"] = mixed.counts
        else:
            head = kt.heads.ClassificationHead(num_classes[run], dropout=0.1)
            model = keras.Sequential([shared, head])
            model.compile(
                optimizer=optimizer(int(train[run].cardinality()) * args.epochs),
                loss=head.default_loss(),
                metrics=["accuracy"],
            )
            model.fit(train[run], epochs=args.epochs, verbose=2)
            accuracy = {run: model.evaluate(dev[run], verbose=0, return_dict=True)["accuracy"]}
        results["seconds"][run] = round(time.perf_counter() - start, 1)
        results["params"][run] = count_params(model)
        for task, value in accuracy.items():
            results["accuracy"].setdefault(task, {})[run if run != "multitask" else "multitask"] = round(
                float(value), 4
            )
        print(f"{run}: {accuracy} in {results['seconds'][run]}s", file=sys.stderr, flush=True)
        if run == "multitask":
            # Padding each batch to the longest task's length would multiply the
            # sentiment batches' tokens by this factor (kt.data.mix keeps buckets).
            widths = [int(x["token_ids"].shape[1]) for x, _ in train["sentiment"]]
            results["sentiment_batch_width"] = {
                "mean": round(float(np.mean(widths)), 1),
                "padded_to": args.sequence_length,
            }
        keras.backend.clear_session()

    for task in data:
        scores = results["accuracy"].get(task, {})
        if "multitask" in scores and task in scores:
            scores["multitask_minus_single_points"] = round(100 * (scores["multitask"] - scores[task]), 2)
    params = results["params"]
    if all(r in params for r in ("sentiment", "topic", "multitask")):
        params["two_single_models"] = params["sentiment"] + params["topic"]
        params["multitask_over_two_models"] = round(params["multitask"] / params["two_single_models"], 4)
    results["config"] = {
        name: getattr(args, name)
        for name in ("sentiment_train", "topic_train", "topic_dev", "sequence_length", "batch_size",
                     "learning_rate", "epochs", "strategy", "temperature", "seed")
    }
    results["config"]["loss_weights"] = loss_weights or "1.0 each"
    results["config"]["dev"] = {"sentiment": len(data["sentiment"][1][0]), "topic": len(data["topic"][1][0])}
    print(json.dumps(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--runs", default="sentiment,topic,multitask", type=lambda s: s.split(","))
    parser.add_argument("--sentiment-train", type=int, default=2000)
    parser.add_argument("--topic-train", type=int, default=250, help="training reviews per domain")
    parser.add_argument("--topic-dev", type=int, default=150, help="dev reviews per domain")
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--strategy", default="proportional")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--loss-weights", default=[], type=lambda s: s.split(","),
                        help="e.g. sentiment=1,topic=0.5")
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
