"""Zero-shot classification (`kt.tasks.ZeroShotClassifier`) and vocabulary trimming.

No labelled example is used: each label is embedded once from a template,
and a text gets the label whose embedding is the most cosine-similar.

Datasets (../shared/data, every row of each split):

- SST-2 dev (872 sentences, 2 classes): labels `negative` / `positive`,
  template "This review is {}.".
- ChnSentiCorp dev (1,200 Chinese reviews, 2 classes): the same English
  labels and template (cross-lingual), and, for e5, the Chinese template
  "这条评论是{}的。" with the labels 负面 / 正面.
- CLINC150 test, the 4,500 in-scope queries, 150 classes: each intent's name
  with "_" as spaces (e.g. "accept reservations") is the description,
  template "{}". The 1,000 out-of-scope (`oos`, label 150) test queries are
  left out (a zero-shot classifier with 150 labels always answers one of
  them; rejecting oos needs a similarity threshold tuned on labelled data).

Encoders: MiniLM (all-MiniLM-L6-v2, mean pooling) and multilingual-e5-small
(mean pooling, `text_prefix="query: "` on texts and label descriptions),
sequence_length 128 (ChnSentiCorp reviews are truncated there). Each row
has accuracy, chance (1 / classes) and the majority-class baseline (the
largest class's share of the split).

Trimming (`--trim`): e5's encoder trimmed to the word pieces of SST-2 train
+ ChnSentiCorp train (`BertEncoder.trim_vocabulary`), both SST-2 zero-shot
classifiers exported (`export`), the export folders' sizes, and the median
single-sentence latency of the exported `serving_default` (50 calls after 5
warm-up calls, one SST-2 dev sentence each, in this process) before and
after; also the largest absolute difference of the two exports' probabilities
on the SST-2 dev sentences whose pieces are all kept.

It prints ONE JSON line.

    nice -n 10 .venv/bin/python benchmarks/zero_shot.py              # every figure
    nice -n 10 .venv/bin/python benchmarks/zero_shot.py --limit 200  # first 200 rows of each split
    nice -n 10 .venv/bin/python benchmarks/zero_shot.py --encoders e5 --trim --no-accuracy
"""

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.environ.get("KTRANSFER_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
SEQUENCE_LENGTH = 128


def read_tsv(path, limit=None):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = rows[:limit] if limit else rows
    return [r["sentence"] for r in rows], np.array([int(r["label"]) for r in rows])


def clinc_intents():
    with open(os.path.join(DATA, "clinc150", "labels.tsv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [r["intent"] for r in rows if r["intent"] != "oos"]


def load_encoder(name):
    import ktransfer as kt

    if name == "minilm":
        return kt.encoders.BertEncoder.from_preset(
            "minilm", sequence_length=SEQUENCE_LENGTH, pooling="mean")
    return kt.encoders.BertEncoder.from_preset(
        "multilingual-e5-small", sequence_length=SEQUENCE_LENGTH, pooling="mean",
        text_prefix="query: ")


def score(clf, texts, y):
    start = time.time()
    probabilities = clf.predict(texts, batch_size=64, verbose=0)
    predicted = probabilities.argmax(-1)
    counts = np.bincount(y, minlength=clf.num_classes)
    return {
        "accuracy": round(float((predicted == y).mean()), 4),
        "chance": round(1.0 / clf.num_classes, 4),
        "majority": round(float(counts.max() / len(y)), 4),
        "n": int(len(y)),
        "seconds": round(time.time() - start, 1),
    }


def accuracy_rows(name, encoder, limit):
    import ktransfer as kt

    rows = {}
    texts, y = read_tsv(os.path.join(DATA, "sst2", "dev.tsv"), limit)
    sentiment = kt.tasks.ZeroShotClassifier(encoder, labels=["negative", "positive"],
                                            template="This review is {}.")
    rows["sst2_dev"] = score(sentiment, texts, y)
    texts, y = read_tsv(os.path.join(DATA, "chnsenticorp", "dev.tsv"), limit)
    rows["chnsenticorp_dev_english_template"] = score(sentiment, texts, y)
    if name == "e5":
        chinese = kt.tasks.ZeroShotClassifier(encoder, labels=["负面", "正面"],
                                              template="这条评论是{}的。")
        rows["chnsenticorp_dev_chinese_template"] = score(chinese, texts, y)
    texts, y = read_tsv(os.path.join(DATA, "clinc150", "test.tsv"))
    keep = y != 150  # out-of-scope queries left out
    texts, y = [t for t, k in zip(texts, keep) if k], y[keep]
    if limit:  # the split is sorted by intent: take every k-th query
        step = max(1, len(y) // limit)
        texts, y = texts[::step][:limit], y[::step][:limit]
    intents = clinc_intents()
    clinc = kt.tasks.ZeroShotClassifier(
        encoder, labels=intents, template="{}",
        descriptions={i: i.replace("_", " ") for i in intents})
    rows["clinc150_test_in_scope"] = score(clinc, texts, y)
    return rows


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def latency_ms(path, sentence, calls=50):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    serve = tf.saved_model.load(path).signatures["serving_default"]
    text = tf.constant([sentence])
    for _ in range(5):
        serve(text=text)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        serve(text=text)
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2), serve


def trim_rows(encoder, limit):
    import ktransfer as kt
    import tensorflow as tf

    corpus = read_tsv(os.path.join(DATA, "sst2", "train.tsv"))[0]
    corpus += read_tsv(os.path.join(DATA, "chnsenticorp", "train.tsv"))[0]
    start = time.time()
    trimmed = encoder.trim_vocabulary(corpus)
    trim_seconds = time.time() - start
    dev, _ = read_tsv(os.path.join(DATA, "sst2", "dev.tsv"), limit)
    out = {"trim_seconds": round(trim_seconds, 1), **trimmed.trim_summary}
    folder = tempfile.mkdtemp(prefix="zero_shot_")
    answers = {}
    try:
        for key, enc in (("full", encoder), ("trimmed", trimmed)):
            clf = kt.tasks.ZeroShotClassifier(enc, labels=["negative", "positive"])
            path = clf.export(os.path.join(folder, key, "1"))
            out[f"export_mb_{key}"] = round(folder_bytes(path) / 2**20, 1)
            out[f"latency_ms_{key}"], serve = latency_ms(path, dev[0])
            answers[key] = np.concatenate([
                serve(text=tf.constant(dev[i:i + 64]))["probabilities"].numpy()
                for i in range(0, len(dev), 64)])
            del clf, serve
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    # SST-2 dev sentences whose pieces are all in the trimmed vocabulary.
    tokenizer = encoder.preprocessor.tokenizer
    ids = tokenizer(tf.constant(["query: " + t for t in dev]))
    table = np.asarray(trimmed.token_id_map)
    unk = table[tokenizer.unk_token_id] if hasattr(tokenizer, "unk_token_id") else None
    covered = np.array([
        all(table[i] != unk or i == tokenizer.unk_token_id for i in np.asarray(row).tolist())
        for row in (ids if isinstance(ids, list) else ids.to_list())])
    out["sst2_dev_fully_covered"] = int(covered.sum())
    out["max_abs_diff_covered"] = float(
        np.abs(answers["full"][covered] - answers["trimmed"][covered]).max())
    out["max_abs_diff_all"] = float(np.abs(answers["full"] - answers["trimmed"]).max())
    out["same_label_all"] = float(
        (answers["full"].argmax(-1) == answers["trimmed"].argmax(-1)).mean())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="minilm,e5")
    parser.add_argument("--limit", type=int, default=None, help="rows per split (default all)")
    parser.add_argument("--trim", action="store_true", help="e5 export size / latency, trimmed")
    parser.add_argument("--no-accuracy", action="store_true")
    args = parser.parse_args()
    result = {"benchmark": "zero_shot", "limit": args.limit, "sequence_length": SEQUENCE_LENGTH}
    total = time.time()
    for name in args.encoders.split(","):
        start = time.time()
        encoder = load_encoder(name)
        if not args.no_accuracy:
            result[name] = accuracy_rows(name, encoder, args.limit)
        if args.trim and name == "e5":
            result["e5_trim"] = trim_rows(encoder, args.limit)
        result[f"{name}_seconds"] = round(time.time() - start, 1)
    result["seconds"] = round(time.time() - total, 1)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
