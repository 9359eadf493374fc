"""Cross-lingual transfer, English <-> Chinese sentiment, with multilingual-e5-small.

Issue 20, item 2. Two directions, each trained on one language and scored on
the other language's dev split it never saw:

- en->zh: fine-tune on an SST-2 train sample, score on ChnSentiCorp dev
  (1,200 reviews) zero-shot, and on SST-2 dev (872, the in-language figure);
- zh->en: fine-tune on a ChnSentiCorp train sample, score on SST-2 dev
  zero-shot, and on ChnSentiCorp dev (the in-language ceiling).

Data (../shared/data, `KTRANSFER_SHARED_DATA`): each train file is permuted
once (numpy seed 0). Its first `--source` rows are the labelled source
sample; the next `--unlabelled` rows are the unlabelled target-language texts
(self-training, kt.adapt; their labels are never read); the target-label pool
is drawn from the rest, stratified (k/2 per class, nested: the 16 are in the
64, the 64 in the 256).

Encoder: multilingual-e5-small (`text_prefix="query: "`, mean pooling,
`--sequence-length` 64: ChnSentiCorp reviews are truncated there), trimmed
with `BertEncoder.trim_vocabulary` to every text of SST-2 train + dev and
ChnSentiCorp train + dev (texts only, no labels; ~20k of 250k rows, so no
piece of an evaluated text reads as `<unk>`). Each direction starts from the
same trimmed weights.

Training: `kt.tasks.TextClassifier(encoder, num_classes=2)` with `compile()`'s
defaults (FusedAdamW 5e-5), batch `--batch-size` 32, `--epochs` 1, seed
`--seed`. Nothing is chosen on target-language labels: every setting below
was fixed before any run, from the library defaults or the cited papers.

Methods, each scored against plain zero-shot transfer from the same run:

- `average`: checkpoint averaging (Schmidt et al. 2023, "Free Lunch: Robust
  Cross-Lingual Transfer via Model Checkpoint Averaging"): the uniform mean
  of snapshots of the trainable weights taken every `steps // --checkpoints`
  steps of the source run, plus the last step (63 steps, `--checkpoints`
  10: steps 6, 12, ..., 60 and 63, 11 snapshots). No target data of any
  kind.
- `plus_k`: continue training the source model on k = `--shots` (16, 64,
  256) labelled target examples: a fresh `compile()`, batch 16, `--k-epochs`
  (4) epochs, fixed in advance (no target dev set to tune on).
- `self_training`: the source model labels the `--unlabelled` target texts;
  from each predicted class, its `--keep` (0.5) x (the smaller predicted
  class's count) most confident texts train it for one more epoch (fresh
  `compile()`, batch 32). The pseudo-labels' accuracy is reported, never used.
- `adapt`: `kt.adapt.MMD` / `CORAL` / `DANN` (`--adapt-methods`) with the
  unlabelled target texts as the target domain, fit with the public defaults
  (terms ramped in, `fallback=True` with `--adapt-validation` held-out
  *source-language* labelled rows as `source_validation`); scored as kept
  and before the rule picks.

Baselines: `minilm` (the English-only all-MiniLM-L6-v2, mean pooling, same
protocol and samples: the floor) and `keras_hub` (KerasHub's
`BertTextClassifier` on a `BertBackbone` loaded from the same e5 folder,
untrimmed, its own [CLS]-pooler head, the same ktransfer token ids, AdamW
5e-5). Published anchors for ChnSentiCorp dev (ymcui/Chinese-BERT-wwm, full
train set, seq 256): BERT-base-chinese 94.7, ERNIE 95.4.

Prints ONE JSON line with every figure (accuracies in [0, 1]) and seconds.

    nice -n 10 .venv/bin/python benchmarks/crosslingual.py
    nice -n 10 .venv/bin/python benchmarks/crosslingual.py --stages e5,average,plus_k --source 2000
    nice -n 10 .venv/bin/python benchmarks/crosslingual.py --directions en-zh --stages e5 --source 200 --limit 100
"""

import argparse
import csv
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.environ.get("KTRANSFER_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
STAGES = ("e5", "average", "plus_k", "self_training", "minilm", "keras_hub", "adapt")
DIRECTIONS = {"en-zh": ("sst2", "chnsenticorp"), "zh-en": ("chnsenticorp", "sst2")}
PUBLISHED_CHNSENTICORP_DEV = {"BERT-base-chinese": 94.7, "ERNIE": 95.4,
                              "source": "ymcui/Chinese-BERT-wwm README, ChnSentiCorp dev accuracy"}


def read_tsv(path, limit=None):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = rows[:limit] if limit else rows
    return [r["sentence"] for r in rows], np.array([int(r["label"]) for r in rows], "int32")


def split_train(labels, n_source, n_unlabelled, shots, seed=0):
    """(source rows, unlabelled rows, {k: labelled target rows}), disjoint."""
    order = np.random.default_rng(seed).permutation(len(labels))
    source = order[:n_source]
    unlabelled = order[n_source:n_source + n_unlabelled]
    rest = order[n_source + n_unlabelled:]
    per_class = {c: rest[labels[rest] == c] for c in (0, 1)}
    pool = {}
    for k in sorted(shots):
        pool[k] = np.concatenate([per_class[c][: k // 2] for c in (0, 1)])
    return source, unlabelled, pool


def accuracy(clf, texts, labels):
    return round(float(clf.evaluate(texts, labels, batch_size=64, verbose=0,
                                    return_dict=True)["accuracy"]), 4)


class Snapshots:
    """A Keras callback: the mean of `count` snapshots of the trainable weights."""

    def __new__(cls, keras, total_steps, count):
        every = max(1, total_steps // count)
        marks = set(range(every - 1, total_steps, every)[-count:]) | {total_steps - 1}

        class _Snapshots(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.sum, self.taken, self.step = None, 0, 0

            def on_train_batch_end(self, batch, logs=None):
                if self.step in marks:
                    values = [np.array(v.numpy(), np.float64) for v in self.model.trainable_weights]
                    self.sum = values if self.sum is None else [a + b for a, b in zip(self.sum, values)]
                    self.taken += 1
                self.step += 1

            def mean(self):
                return [(s / self.taken).astype(np.float32) for s in self.sum]

        return _Snapshots()


def reseed(keras, seed):
    """`keras.utils.set_random_seed` without `tf.random.set_seed`.

    In eager mode `tf.random.set_seed` clears TensorFlow's kernel cache, which
    drops the SentencePiece op's resource: every later tokenisation by an e5
    preprocessor built before the call fails ("Resource .../SentencepieceOp
    ... does not exist"). `main` sets the TF seed once, before any encoder is
    loaded; tf.data shuffles get explicit seeds.
    """
    import random

    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator

    global_state.set_global_attribute("global_random_seed", seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def get(variables):
    return [np.array(v.numpy()) for v in variables]


def put(variables, values):
    for v, x in zip(variables, values):
        v.assign(x)


def run_direction(kt, keras, name, encoder, initial, data, source_lang, target_lang, splits,
                  args, stages):
    """Every figure of one direction with one encoder (e5 or MiniLM)."""
    out = {}
    seconds = {}
    src_rows = splits[source_lang][0]
    tgt_unl_rows, tgt_pool = splits[target_lang][1], splits[target_lang][2]
    src_texts = [data[source_lang]["train"][0][i] for i in src_rows]
    src_labels = data[source_lang]["train"][1][src_rows]
    src_dev, tgt_dev = data[source_lang]["dev"], data[target_lang]["dev"]

    def fresh():
        reseed(keras, args.seed)
        put(encoder.weights, initial)
        clf = kt.tasks.TextClassifier(encoder=encoder, num_classes=2, labels=["negative", "positive"])
        clf.compile()
        return clf

    started = time.perf_counter()
    clf = fresh()
    steps = int(np.ceil(len(src_texts) / args.batch_size)) * args.epochs
    snaps = Snapshots(keras, steps, args.checkpoints)
    clf.fit(x=src_texts, y=src_labels, batch_size=args.batch_size, epochs=args.epochs,
            seed=args.seed, verbose=0, callbacks=[snaps] if "average" in stages else [])
    seconds["train"] = round(time.perf_counter() - started, 1)
    t = time.perf_counter()
    out["zero_shot"] = {"source_dev": accuracy(clf, *src_dev), "target_dev": accuracy(clf, *tgt_dev)}
    seconds["evaluate"] = round(time.perf_counter() - t, 1)
    print(f"{name} {source_lang}->{target_lang} zero-shot {out['zero_shot']} {seconds}",
          file=sys.stderr, flush=True)
    source_weights = get(clf.trainable_weights)

    if "average" in stages:
        put(clf.trainable_weights, snaps.mean())
        out["average"] = {"source_dev": accuracy(clf, *src_dev), "target_dev": accuracy(clf, *tgt_dev),
                          "checkpoints": snaps.taken, "of_steps": steps}
        print(f"  average {out['average']}", file=sys.stderr, flush=True)
        put(clf.trainable_weights, source_weights)

    if "plus_k" in stages:
        out["plus_k"] = {}
        for k in args.shots:
            t = time.perf_counter()
            reseed(keras, args.seed)
            put(clf.trainable_weights, source_weights)
            clf.compile()
            rows = tgt_pool[k]
            clf.fit(x=[data[target_lang]["train"][0][i] for i in rows],
                    y=data[target_lang]["train"][1][rows], batch_size=min(16, k),
                    epochs=args.k_epochs, seed=args.seed, verbose=0)
            out["plus_k"][str(k)] = accuracy(clf, *tgt_dev)
            seconds[f"plus_{k}"] = round(time.perf_counter() - t, 1)
            print(f"  +{k}: {out['plus_k'][str(k)]} ({seconds[f'plus_{k}']} s)", file=sys.stderr,
                  flush=True)

    if "self_training" in stages:
        t = time.perf_counter()
        put(clf.trainable_weights, source_weights)
        texts = [data[target_lang]["train"][0][i] for i in tgt_unl_rows]
        probabilities = clf.predict(texts, batch_size=64, verbose=0)
        guess, confidence = probabilities.argmax(-1), probabilities.max(-1)
        counts = [int((guess == c).sum()) for c in (0, 1)]
        per_class = int(min(counts) * args.keep)
        chosen = np.concatenate([
            np.flatnonzero(guess == c)[np.argsort(-confidence[guess == c])[:per_class]] for c in (0, 1)
        ]) if per_class else np.zeros(0, int)
        truth = data[target_lang]["train"][1][tgt_unl_rows]
        reseed(keras, args.seed)
        clf.compile()
        if len(chosen):
            clf.fit(x=[texts[i] for i in chosen], y=guess[chosen], batch_size=args.batch_size,
                    epochs=1, seed=args.seed, verbose=0)
        out["self_training"] = {
            "target_dev": accuracy(clf, *tgt_dev),
            "predicted_per_class": counts,
            "pseudo_labelled": int(len(chosen)),
            # read after the choice, to report it; never used to choose
            "pseudo_label_accuracy": round(float((guess[chosen] == truth[chosen]).mean()), 4)
            if len(chosen) else None,
        }
        seconds["self_training"] = round(time.perf_counter() - t, 1)
        print(f"  self-training {out['self_training']}", file=sys.stderr, flush=True)

    if "adapt" in stages:
        out["adapt"] = {}
        for method in args.adapt_methods:
            t = time.perf_counter()
            out["adapt"][method] = adapt_run(kt, keras, method, encoder, initial, src_texts,
                                             src_labels, data, source_lang, target_lang, splits,
                                             args)
            seconds[f"adapt_{method}"] = round(time.perf_counter() - t, 1)
            print(f"  {method} {out['adapt'][method]}", file=sys.stderr, flush=True)
    out["seconds"] = seconds
    return out


def adapt_run(kt, keras, method, encoder, initial, src_texts, src_labels, data, source_lang,
              target_lang, splits, args):
    reseed(keras, args.seed)
    put(encoder.weights, initial)
    head = kt.heads.ClassificationHead(2, dropout=0.1)
    prepare = kt.data.prepare
    src = prepare(kt.data.from_lists(src_texts, src_labels.tolist()), encoder.preprocessor,
                  batch_size=args.batch_size, shuffle=True, seed=args.seed)
    tgt_texts = [data[target_lang]["train"][0][i] for i in splits[target_lang][1]]
    tgt = prepare(kt.data.from_lists(tgt_texts), encoder.preprocessor,
                  batch_size=args.batch_size, shuffle=True, seed=args.seed + 1)
    val_rows = splits[source_lang][3]
    validation = prepare(
        kt.data.from_lists([data[source_lang]["train"][0][i] for i in val_rows],
                           data[source_lang]["train"][1][val_rows].tolist()),
        encoder.preprocessor, batch_size=64)
    cls = {"mmd": kt.adapt.MMD, "coral": kt.adapt.CORAL, "dann": kt.adapt.DANN}[method]
    model = cls(encoder, head)
    from ktransfer.optimizers import FusedAdamW

    model.compile(optimizer=FusedAdamW(5e-5), loss=head.default_loss(), metrics=["accuracy"])
    steps = int(np.ceil(len(src_texts) / args.batch_size))
    dev_texts, dev_labels = data[target_lang]["dev"]
    dev = prepare(kt.data.from_lists(dev_texts, dev_labels.tolist()), encoder.preprocessor,
                  batch_size=64)

    def evaluate(m):
        return round(float(m.evaluate(dev, verbose=0, return_dict=True)["accuracy"]), 4)

    class Score(keras.callbacks.Callback):
        adapted = None

        def on_train_end(self, logs=None):
            Score.adapted = evaluate(self.model)

    model.fit(kt.data.zip_domains(src, tgt), epochs=1, steps_per_epoch=steps, verbose=0,
              callbacks=[Score()], source_validation=validation)
    report = model.adaptation_report or {"kept": "adapted"}
    return {"adapted": Score.adapted, "target_dev": evaluate(model), "kept": report["kept"],
            "reasons": report.get("reasons", [])}


def keras_hub_run(keras, encoder_preprocessor, folder, data, source_lang, target_lang, splits, args):
    """KerasHub's BertTextClassifier on the same folder, fed ktransfer's e5 token ids."""
    import keras_hub
    import tensorflow as tf

    reseed(keras, args.seed)
    backbone = keras_hub.models.BertBackbone.from_preset(folder)
    model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    model.compile(optimizer=keras.optimizers.AdamW(5e-5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

    def batches(texts, labels, shuffle):
        ds = tf.data.Dataset.from_tensor_slices((list(texts), np.asarray(labels)))
        if shuffle:
            ds = ds.shuffle(len(texts), seed=args.seed)
        return ds.batch(args.batch_size if shuffle else 64).map(
            lambda x, y: (encoder_preprocessor(x), y))

    src_rows = splits[source_lang][0]
    train = batches([data[source_lang]["train"][0][i] for i in src_rows],
                    data[source_lang]["train"][1][src_rows], True)
    t = time.perf_counter()
    model.fit(train, epochs=args.epochs, verbose=0)
    train_seconds = round(time.perf_counter() - t, 1)
    result = {}
    for split, lang in (("source_dev", source_lang), ("target_dev", target_lang)):
        result[split] = round(float(model.evaluate(batches(*data[lang]["dev"], False), verbose=0,
                                                   return_dict=True)["accuracy"]), 4)
    result["train_seconds"] = train_seconds
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", default="e5,average,plus_k,self_training,minilm",
                        help=f"comma-separated subset of {STAGES}")
    parser.add_argument("--directions", default="en-zh,zh-en")
    parser.add_argument("--source", type=int, default=2000, help="labelled source rows")
    parser.add_argument("--unlabelled", type=int, default=1000, help="unlabelled target rows")
    parser.add_argument("--shots", default="16,64,256")
    parser.add_argument("--k-epochs", type=int, default=4)
    parser.add_argument("--keep", type=float, default=0.5,
                        help="self-training: the most confident fraction of each predicted class")
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--adapt-methods", default="mmd")
    parser.add_argument("--adapt-validation", type=int, default=200)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="score only the first N dev rows")
    args = parser.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    if any(s not in STAGES for s in stages):
        raise SystemExit(f"--stages must be a subset of {STAGES}")
    directions = [d for d in args.directions.split(",") if d]
    if any(d not in DIRECTIONS for d in directions):
        raise SystemExit(f"--directions must be a subset of {tuple(DIRECTIONS)}")
    args.shots = [int(k) for k in args.shots.split(",") if k]
    args.adapt_methods = [m for m in args.adapt_methods.split(",") if m]

    import keras

    import ktransfer as kt

    keras.utils.set_random_seed(args.seed)  # once, before any SentencePiece op exists
    started = time.perf_counter()
    data = {}
    for name in ("sst2", "chnsenticorp"):
        data[name] = {"train": read_tsv(os.path.join(DATA, name, "train.tsv")),
                      "dev": read_tsv(os.path.join(DATA, name, "dev.tsv"), args.limit)}
    splits = {}
    for name in data:
        labels = data[name]["train"][1]
        source, unlabelled, pool = split_train(labels, args.source + args.adapt_validation,
                                               args.unlabelled, args.shots, seed=0)
        # the last `--adapt-validation` rows of the source sample are kt.adapt's
        # source_validation; they are not in the training sample
        validation = source[args.source:]
        splits[name] = (source[:args.source], unlabelled, pool, validation)

    result = {"benchmark": "crosslingual_sentiment_en_zh", "protocol": {
        "source_examples": args.source, "unlabelled_target": args.unlabelled,
        "shots": args.shots, "k_epochs": args.k_epochs, "k_batch_size": 16,
        "sequence_length": args.sequence_length, "batch_size": args.batch_size,
        "epochs": args.epochs, "seed": args.seed, "optimizer": "compile() default, FusedAdamW 5e-5",
        "checkpoints_averaged": args.checkpoints, "self_training_keep": args.keep,
        "dev_rows": {n: len(data[n]["dev"][1]) for n in data}, "split_seed": 0,
        "trimmed_to": "all texts of SST-2 train+dev and ChnSentiCorp train+dev (no labels)"},
        "published_chnsenticorp_dev": PUBLISHED_CHNSENTICORP_DEV,
        "majority_dev": {n: round(float(max(np.mean(data[n]["dev"][1]), 1 - np.mean(data[n]["dev"][1]))), 4)
                         for n in data}}
    seconds = {}
    e5_stages = [s for s in stages if s in ("e5", "average", "plus_k", "self_training", "adapt")]
    if e5_stages:
        t = time.perf_counter()
        full = kt.encoders.BertEncoder.from_preset(
            "multilingual-e5-small", sequence_length=args.sequence_length, pooling="mean",
            text_prefix="query: ")
        corpus = [text for n in data for split in ("train", "dev") for text in data[n][split][0]]
        encoder = full.trim_vocabulary(corpus)
        # keep `full` alive: the SentencePiece op resource of the shared preprocessor
        # belongs to it (deleting it breaks later tokenisation)
        result["trim_summary"] = encoder.trim_summary
        seconds["load_and_trim"] = round(time.perf_counter() - t, 1)
        initial = get(encoder.weights)
        result["e5"] = {}
        for d in directions:
            source_lang, target_lang = DIRECTIONS[d]
            result["e5"][d] = run_direction(kt, keras, "e5", encoder, initial, data, source_lang,
                                            target_lang, splits, args, e5_stages)
        del encoder, initial
    if "minilm" in stages:
        encoder = kt.encoders.BertEncoder.from_preset(
            "minilm", sequence_length=args.sequence_length, pooling="mean")
        initial = get(encoder.weights)
        result["minilm"] = {}
        for d in directions:
            source_lang, target_lang = DIRECTIONS[d]
            result["minilm"][d] = run_direction(kt, keras, "minilm", encoder, initial, data,
                                                source_lang, target_lang, splits, args, ["e5"])
        del encoder, initial
    if "keras_hub" in stages:
        e5 = kt.encoders.BertEncoder.from_preset(
            "multilingual-e5-small", sequence_length=args.sequence_length, pooling="mean",
            text_prefix="query: ")
        folder = os.path.join(kt.assets.home(), "multilingual-e5-small")
        result["keras_hub"] = {}
        for d in directions:
            source_lang, target_lang = DIRECTIONS[d]
            result["keras_hub"][d] = keras_hub_run(keras, e5.preprocessor, folder, data,
                                                   source_lang, target_lang, splits, args)
            print(f"keras_hub {d} {result['keras_hub'][d]}", file=sys.stderr, flush=True)
    seconds["total"] = round(time.perf_counter() - started, 1)
    result["seconds"] = seconds
    print(json.dumps(result))


if __name__ == "__main__":
    main()
