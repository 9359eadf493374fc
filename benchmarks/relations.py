"""Relation extraction on SemEval-2010 Task 8: entity markers + entity-start pooling.

Reads ../shared/data/semeval2010_task8 (train.tsv: 8,000 sentences,
test.tsv: 2,717; 19 directed labels in labels.tsv), rewrites the dataset's
`<e1>`/`</e1>`/`<e2>`/`</e2>` tags as the `[E1]` `[/E1]` `[E2]` `[/E2]`
markers that `kt.heads.add_entity_markers` adds to MiniLM's vocabulary, and
fine-tunes `RelationHead.build_classifier` (Baldini Soares et al. 2019,
"entity markers, entity start"). The task has no dev split: the score is on
the official test set, as published results report it.

Score: `kt.metrics.relation_f1`, the official macro-F1 over the 9 relation
types, direction-aware, excluding Other. The exported SavedModel (raw
sentences with markers in) is scored again. The majority-class baseline
(always Other) scores 0.0 by construction, as Other is left out.

Prints ONE JSON line.

    python benchmarks/relations.py                    # 3 epochs
    python benchmarks/relations.py --epochs 1 --train-size 1000 --test-size 300
"""

import argparse
import csv
import json
import os
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEMEVAL = os.path.join(REPO, "..", "shared", "data", "semeval2010_task8")
REPLACEMENTS = {"<e1>": " [E1] ", "</e1>": " [/E1] ", "<e2>": " [E2] ", "</e2>": " [/E2] "}


def read(path, limit=None):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    texts, labels = [], []
    for sentence, label in rows[:limit]:
        for tag, marker in REPLACEMENTS.items():
            sentence = sentence.replace(tag, marker)
        texts.append(" ".join(sentence.split()))
        labels.append(int(label))
    return texts, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=SEMEVAL)
    parser.add_argument("--preset", default="minilm")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    import ktransfer as kt

    keras.utils.set_random_seed(args.seed)
    with open(os.path.join(args.data, "labels.tsv"), encoding="utf-8") as f:
        names = [row[1] for row in csv.reader(f, delimiter="\t")][1:]
    train_texts, train_labels = read(os.path.join(args.data, "train.tsv"), args.train_size)
    test_texts, test_labels = read(os.path.join(args.data, "test.tsv"), args.test_size)

    encoder = kt.encoders.BertEncoder.from_preset(
        args.preset, sequence_length=args.sequence_length, pooling=None
    )
    encoder = kt.heads.add_entity_markers(encoder)
    model = kt.heads.RelationHead.build_classifier(encoder, len(names), dropout=0.1)
    train = kt.data.from_lists(train_texts, train_labels, class_names=names)
    batches = kt.data.prepare(train, encoder.preprocessor, args.batch_size, shuffle=True, seed=args.seed)
    test = kt.data.prepare(
        kt.data.from_lists(test_texts, test_labels, class_names=names), encoder.preprocessor, 64
    )
    steps = int(batches.cardinality()) * args.epochs
    warmup = max(1, steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=args.learning_rate, warmup_steps=warmup
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    gold = [names[i] for i in test_labels]
    epochs = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        history = model.fit(batches, epochs=1, verbose=2)
        seconds = time.perf_counter() - start
        logits = np.concatenate([np.asarray(model(x, training=False)) for x, _ in test])
        predicted = [names[i] for i in logits.argmax(-1)]
        epochs.append({
            "epoch": epoch + 1,
            "train_seconds": round(seconds, 1),
            "train_examples_per_s": round(len(train_texts) / seconds, 1),
            "loss": round(float(history.history["loss"][-1]), 4),
            "test_macro_f1": round(kt.metrics.relation_f1(gold, predicted)["f1"], 4),
            "test_accuracy": round(float(np.mean(np.array(predicted) == np.array(gold))), 4),
        })
        print(json.dumps(epochs[-1]), flush=True)

    with tempfile.TemporaryDirectory() as folder:
        path = kt.export.save(model, os.path.join(folder, "relations", "1"), labels=names)
        served = tf.saved_model.load(path).signatures["serving_default"]
        predicted = []
        for i in range(0, len(test_texts), 64):
            out = served(text=tf.constant(test_texts[i : i + 64]))
            predicted += [s.decode("utf-8") for s in out["label"].numpy()]
    scores = kt.metrics.relation_f1(gold, predicted)
    print(json.dumps({
        "task": "semeval2010_task8",
        "preset": args.preset,
        "train_examples": len(train_texts),
        "test_examples": len(test_texts),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "per_epoch": epochs,
        "test_macro_f1_official_savedmodel": round(scores["f1"], 4),
        "test_macro_precision": round(scores["precision"], 4),
        "test_macro_recall": round(scores["recall"], 4),
        "baseline_majority_macro_f1": 0.0,
        "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
