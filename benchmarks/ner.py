"""NER on CoNLL-2003: fine-tune MiniLM as a token tagger, report dev entity F1.

Reads ../shared/data/conll2003 (train.txt, dev.txt; IOB1 tags, converted to
IOB2 for training), fine-tunes `BertEncoder(pooling=None)` +
`TokenClassificationHead` with `kt.data.prepare_tokens` batches (tag on each
word's first sub-token), and evaluates the dev set after every epoch with
`kt.metrics.entity_f1` (CoNLL semantics). After training it exports the
tagger with `kt.export.save_tagger`, reloads the SavedModel and scores the
dev set again from raw sentences (the figure to trust for serving).

Baselines measured in the same run:

- the classic CoNLL "dictionary" baseline (each word gets its most frequent
  training tag; unseen words get "O");
- `--baseline glove` (the default): the word-vector baseline,
  `kt.models.BiLSTMTagger` over frozen GloVe 6B 50d (+ a casing embedding),
  trained on the same sentences, its dev entity F1 measured after every
  epoch and, at the end, through its exported SavedModel
  (`save_word_tagger`, raw sentences in). `--skip-bert` runs it alone.

Prints ONE JSON line.

    python benchmarks/ner.py                          # MiniLM 3 epochs + GloVe BiLSTM, all 14,041 sentences
    python benchmarks/ner.py --skip-bert                # the word-vector baseline alone (10 epochs)
    python benchmarks/ner.py --epochs 1 --train-size 2000 --dev-size 500 --baseline none
"""

import argparse
import collections
import json
import os
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONLL = os.path.join(REPO, "..", "shared", "data", "conll2003")


def sentences_of(dataset):
    return [
        ([w.decode("utf-8") for w in words.numpy()], [t.decode("utf-8") for t in tags.numpy()])
        for words, tags in dataset
    ]


def tag_all(tag_fn, sentences, batch_size=64):
    import tensorflow as tf

    predicted = []
    for i in range(0, len(sentences), batch_size):
        chunk = sentences[i : i + batch_size]
        out = tag_fn(text=tf.constant([" ".join(words) for words, _ in chunk]))
        for (words, _), row in zip(chunk, out["tags"].numpy()):
            predicted.append([t.decode("utf-8") for t in row[: len(words)]])
    return predicted


def dictionary_baseline(train, dev):
    from ktransfer.metrics import entity_f1

    counts = collections.defaultdict(collections.Counter)
    for words, tags in train:
        for word, tag in zip(words, tags):
            counts[word][tag] += 1
    predicted = [
        [counts[w].most_common(1)[0][0] if w in counts else "O" for w in words]
        for words, _ in dev
    ]
    return entity_f1([t for _, t in dev], predicted)["f1"]


def glove_baseline(args, train, tags, dev_sentences, gold):
    """Train `BiLSTMTagger` over frozen GloVe 50d; dev F1 per epoch and via its SavedModel."""
    import keras
    import tensorflow as tf

    import ktransfer as kt
    from ktransfer.tasks import bilstm_tagger

    keras.utils.set_random_seed(args.seed)
    encoder = kt.encoders.WordVectorEncoder(
        "glove50", standardize="lower", sequence_length=None,
        max_tokens=args.glove_max_tokens, seed=args.seed,
    )
    encoder.adapt(train.map(lambda words, tags: words))
    model = kt.models.BiLSTMTagger(
        encoder, len(tags), units=args.glove_units, dropout=args.glove_dropout,
        case_dim=args.glove_case_dim, learning_rate=args.glove_learning_rate,
    )
    batches = bilstm_tagger.prepare_sentences(
        train, tags, batch_size=args.glove_batch_size, shuffle=True, seed=args.seed
    )
    tag_fn = bilstm_tagger.word_tagger_function(model, tags)
    epochs = []
    for epoch in range(args.glove_epochs):
        start = time.perf_counter()
        history = model.fit(batches, epochs=1, verbose=2)
        seconds = time.perf_counter() - start
        f1 = kt.metrics.entity_f1(gold, tag_all(tag_fn, dev_sentences))["f1"]
        epochs.append({
            "epoch": epoch + 1,
            "train_seconds": round(seconds, 1),
            "loss": round(float(history.history["loss"][-1]), 4),
            "dev_f1": round(f1, 4),
        })
        print(json.dumps({"glove_bilstm": epochs[-1]}), flush=True)

    with tempfile.TemporaryDirectory() as folder:
        path = bilstm_tagger.save_word_tagger(model, os.path.join(folder, "ner_glove", "1"), tags=tags)
        served = tf.saved_model.load(path).signatures["serving_default"]
        scores = kt.metrics.entity_f1(gold, tag_all(served, dev_sentences))
    seconds = [e["train_seconds"] for e in epochs]
    return {
        "model": "BiLSTMTagger over frozen GloVe 6B 50d + casing embedding (no CRF, no char features)",
        "epochs": args.glove_epochs,
        "units": args.glove_units,
        "case_dim": args.glove_case_dim,
        "dropout": args.glove_dropout,
        "batch_size": args.glove_batch_size,
        "learning_rate": args.glove_learning_rate,
        "vocabulary_size": encoder.vocabulary_size,
        "train_token_coverage": round(encoder.coverage["tokens"], 4),
        "per_epoch": epochs,
        "seconds_per_epoch": round(sum(seconds[1:] or seconds) / len(seconds[1:] or seconds), 1),
        "dev_entity_f1_savedmodel": round(scores["f1"], 4),
        "dev_precision": round(scores["precision"], 4),
        "dev_recall": round(scores["recall"], 4),
        "dev_f1_per_type": {k: round(v["f1"], 4) for k, v in scores["per_type"].items()},
    }


def bert_tagger(args, train, tags, train_sentences, dev_sentences, gold):
    """Fine-tune the BERT preset; dev F1 per epoch and via its SavedModel."""
    import keras
    import tensorflow as tf

    import ktransfer as kt

    keras.utils.set_random_seed(args.seed)
    encoder = kt.encoders.BertEncoder.from_preset(
        args.preset, sequence_length=args.sequence_length, pooling=None
    )
    head = kt.heads.TokenClassificationHead(len(tags), dropout=args.dropout)
    model = keras.Sequential([encoder, head])
    batches = kt.data.prepare_tokens(
        train, encoder.preprocessor, tags, batch_size=args.batch_size, shuffle=True,
        seed=args.seed,
    )
    steps = int(batches.cardinality()) * args.epochs
    warmup = max(1, steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=args.learning_rate,
        warmup_steps=warmup, alpha=0.0,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01),
        loss=head.default_loss(),
        weighted_metrics=["accuracy"],
    )
    tag_fn = kt.export.tagger_function(model, tags)
    epochs = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        history = model.fit(batches, epochs=1, verbose=2)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        f1 = kt.metrics.entity_f1(gold, tag_all(tag_fn, dev_sentences))["f1"]
        epochs.append({
            "epoch": epoch + 1,
            "train_seconds": round(seconds, 1),
            "train_sentences_per_s": round(len(train_sentences) / seconds, 1),
            "loss": round(float(history.history["loss"][-1]), 4),
            "dev_f1": round(f1, 4),
            "eval_seconds": round(time.perf_counter() - start, 1),
        })
        print(json.dumps(epochs[-1]), flush=True)

    with tempfile.TemporaryDirectory() as folder:
        path = kt.export.save_tagger(model, os.path.join(folder, "ner", "1"), tags=tags)
        served = tf.saved_model.load(path).signatures["serving_default"]
        scores = kt.metrics.entity_f1(gold, tag_all(served, dev_sentences))

    return {
        "preset": args.preset,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "sequence_length": args.sequence_length,
        "per_epoch": epochs,
        "dev_entity_f1_savedmodel": round(scores["f1"], 4),
        "dev_precision": round(scores["precision"], 4),
        "dev_recall": round(scores["recall"], 4),
        "dev_f1_per_type": {k: round(v["f1"], 4) for k, v in scores["per_type"].items()},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=CONLL)
    parser.add_argument("--preset", default="minilm")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=None, help="first N sentences")
    parser.add_argument("--dev-size", type=int, default=None, help="first N dev sentences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-bert", action="store_true", help="run the baselines only")
    parser.add_argument("--baseline", choices=["glove", "none"], default="glove",
                        help="word-vector baseline to train beside the BERT tagger")
    parser.add_argument("--glove-epochs", type=int, default=10)
    parser.add_argument("--glove-units", type=int, default=128)
    parser.add_argument("--glove-case-dim", type=int, default=8)
    parser.add_argument("--glove-dropout", type=float, default=0.5)
    parser.add_argument("--glove-batch-size", type=int, default=32)
    parser.add_argument("--glove-learning-rate", type=float, default=2e-3)
    parser.add_argument("--glove-max-tokens", type=int, default=100_000)
    args = parser.parse_args()

    import ktransfer as kt

    train = kt.data.from_conll(os.path.join(args.data, "train.txt"), scheme="iob2")
    dev = kt.data.from_conll(os.path.join(args.data, "dev.txt"), scheme="iob2")
    if args.train_size:
        train = train.take(args.train_size)
    if args.dev_size:
        dev = dev.take(args.dev_size)
    tags = kt.data.tag_vocabulary(train)
    train_sentences, dev_sentences = sentences_of(train), sentences_of(dev)
    gold = [t for _, t in dev_sentences]

    result = {
        "task": "conll2003_ner",
        "train_sentences": len(train_sentences),
        "dev_sentences": len(dev_sentences),
    }
    if not args.skip_bert:
        bert = bert_tagger(args, train, tags, train_sentences, dev_sentences, gold)
        result.update(bert)
    if args.baseline == "glove":
        result["baseline_glove_bilstm"] = glove_baseline(args, train, tags, dev_sentences, gold)
    result["baseline_dictionary_dev_f1"] = round(dictionary_baseline(train_sentences, dev_sentences), 4)
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
