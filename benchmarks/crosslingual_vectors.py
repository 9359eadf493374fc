"""Cross-lingual transfer over static multilingual subword vectors, English <-> Chinese sentiment.

Issue 20, item 3: the word-vector route. No aligned English-Chinese word
vectors exist offline, but multilingual-e5-small's input embedding table is
one subword vocabulary shared by ~100 languages. `kt.WordVectors.from_encoder`
turns it into static vectors (one per SentencePiece piece), a
`kt.encoders.WordVectorEncoder` over them tokenises with e5's SentencePiece
model, and Kim's TextCNN and a BiLSTM over them are trained on one language
and scored on the other, zero-shot:

- en->zh: train on an SST-2 train sample, score on ChnSentiCorp dev (1,200)
  and on SST-2 dev (872, in-language);
- zh->en: train on a ChnSentiCorp train sample, score on SST-2 dev and on
  ChnSentiCorp dev (in-language).

Then distillation (`kt.distill`): an e5 `kt.tasks.TextClassifier` teacher
fine-tuned on the source language, as benchmarks/crosslingual.py does it
(1 epoch, batch 32, `compile()`'s FusedAdamW 5e-5, `text_prefix="query: "`,
mean pooling), labels texts with its logits once (`kt.distill.soft_targets`);
a TextCNN student of the same configuration learns from the source labels
and logits plus (unless `--unlabelled 0`) the logits alone on
`--unlabelled` target-language train texts whose labels are never read.
Reported: the teacher's and the distilled student's accuracy on both dev
sets, their parameter counts, and the per-sentence latency of each (the
median over `--latency-calls` single-sentence calls of its exported
SavedModel, `task.export`, loaded in this process, after 10 warm-up calls,
on sentences drawn from both dev sets; measured in the first direction
only; wall-clock on whatever cores the machine has: possibly shared, noisy).

Data (../shared/data, `KTRANSFER_SHARED_DATA`) and samples as in
benchmarks/crosslingual.py: each train file is permuted once (numpy seed 0);
its first `--source` rows are the labelled source sample; the unlabelled
target texts are the rows crosslingual.py uses as such (after its 200
kt.adapt validation rows). The vectors: e5 trimmed with `trim_vocabulary` to
every text of SST-2 train + dev and ChnSentiCorp train + dev (texts only, no
labels; ~20k of 250k pieces), so every evaluated text's pieces have a vector.

How each setting was chosen (fixed before any run; nothing is chosen on
target-language labels, nor on dev labels of either language):

- vectors frozen (`trainable=False`, Kim's CNN-static): training moves only
  the vectors of pieces the source texts use, which would pull them away
  from the target language's pieces that share e5's space; frozen vectors
  keep the one space both languages share. A design argument, not a search.
- `fill_vocabulary=True` with `max_tokens` = every trimmed piece: the
  vocabulary holds the pieces of both languages, so target pieces read
  their pretrained vector, not `[UNK]` (texts only, no labels: as trimming).
- TextCNN: the class defaults, Kim (2014): widths 3/4/5 x 100, dropout 0.5,
  Adam 1e-3, batch 50. BiLSTM: the class defaults, 128 units per direction,
  dropout 0.5, Adam 1e-3, batch 50.
- `--epochs` 10 for the students (Kim trains 25 epochs on the 10x larger
  SST-2 sets; with 2,000 rows 10 epochs is 400 steps): a fixed budget, the
  last epoch's model is scored (no early stopping on any dev set).
- sequence length 64 (crosslingual.py's), seed 0.
- distillation: `Distiller`'s defaults (temperature 2, alpha 0.5, KL;
  Hinton et al. 2015), the student's epochs and batch size.

Prints ONE JSON line (accuracies in [0, 1], seconds, milliseconds).

    nice -n 10 .venv/bin/python benchmarks/crosslingual_vectors.py
    nice -n 10 .venv/bin/python benchmarks/crosslingual_vectors.py --directions en-zh --stages students
    nice -n 10 .venv/bin/python benchmarks/crosslingual_vectors.py --source 64 --unlabelled 32 --limit 64 --epochs 1 --latency-calls 10   # smoke
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crosslingual import DATA  # noqa: E402  the same data, samples and seeding as item 2
from crosslingual import DIRECTIONS  # noqa: E402
from crosslingual import read_tsv  # noqa: E402
from crosslingual import reseed  # noqa: E402
from crosslingual import split_train  # noqa: E402

STAGES = ("students", "distill")
LABELS = ["negative", "positive"]
# crosslingual.py's samples: `--source` rows, then its 200 kt.adapt validation
# rows, then the unlabelled target-language rows.
ADAPT_VALIDATION_ROWS = 200


def accuracy(model, texts, labels):
    scores = model.predict(texts, batch_size=64, verbose=0)
    return round(float(np.mean(np.argmax(scores, -1) == np.asarray(labels))), 4)


def scores(model, data, source_lang, target_lang):
    return {"source_dev": accuracy(model, *data[source_lang]["dev"]),
            "target_dev": accuracy(model, *data[target_lang]["dev"])}


def word_encoder(kt, vectors, args):
    return kt.encoders.WordVectorEncoder(
        vectors, max_tokens=len(vectors) + 2, sequence_length=args.sequence_length,
        trainable=False, fill_vocabulary=True, seed=args.seed)


def student(kt, keras, kind, vectors, texts, args):
    reseed(keras, args.seed)
    encoder = word_encoder(kt, vectors, args)
    coverage = encoder.adapt(texts)
    if kind == "textcnn":
        model = kt.models.TextCNN(encoder, labels=LABELS)
    else:
        model = kt.models.BiLSTMClassifier(encoder, labels=LABELS)
    return model, coverage


def latency_ms(path, texts, calls):
    """Median milliseconds of one single-sentence call of an exported SavedModel."""
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    for text in texts[:10]:  # warm-up (tracing, caches)
        serve(text=tf.constant([text]))
    times = []
    for i in range(calls):
        text = tf.constant([texts[i % len(texts)]])
        start = time.perf_counter()
        serve(text=text)["probabilities"].numpy()
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 3)


def run_direction(kt, keras, tf, encoder, initial, vectors, data, splits, source_lang, target_lang,
                  args, stages, measure_latency):
    out, seconds = {}, {}
    src_rows, unl_rows = splits[source_lang][0], splits[target_lang][1]
    src_texts = [data[source_lang]["train"][0][i] for i in src_rows]
    src_labels = data[source_lang]["train"][1][src_rows]

    if "students" in stages:
        for kind in ("textcnn", "bilstm"):
            t = time.perf_counter()
            model, coverage = student(kt, keras, kind, vectors, src_texts, args)
            model.fit(x=src_texts, y=src_labels, batch_size=args.batch_size, epochs=args.epochs,
                      shuffle=True, seed=args.seed, verbose=0)
            out[kind] = scores(model, data, source_lang, target_lang)
            out[kind]["parameters"] = int(model.count_params())
            out[kind]["trainable_parameters"] = int(
                sum(np.prod(w.shape) for w in model.trainable_weights))
            seconds[kind] = round(time.perf_counter() - t, 1)
            print(f"{source_lang}->{target_lang} {kind} {out[kind]} ({seconds[kind]} s)",
                  file=sys.stderr, flush=True)
        out["vocabulary"] = {"pieces": int(model.preprocessor.vectorizer.vocabulary_size()),
                             "source_token_coverage": round(coverage["tokens"], 4)}

    if "distill" in stages:
        t = time.perf_counter()
        reseed(keras, args.seed)
        for variable, value in zip(encoder.weights, initial):
            variable.assign(value)
        teacher = kt.tasks.TextClassifier(encoder=encoder, num_classes=2, labels=LABELS)
        teacher.compile()
        teacher.fit(x=src_texts, y=src_labels, batch_size=args.teacher_batch_size,
                    epochs=args.teacher_epochs, seed=args.seed, verbose=0)
        seconds["teacher_train"] = round(time.perf_counter() - t, 1)
        out["teacher"] = scores(teacher, data, source_lang, target_lang)
        out["teacher"]["parameters"] = int(teacher.count_params())
        print(f"{source_lang}->{target_lang} teacher {out['teacher']}", file=sys.stderr, flush=True)

        t = time.perf_counter()
        cache_dir = tempfile.mkdtemp(prefix="crosslingual_vectors_targets_")
        try:
            targets = kt.distill.soft_targets(
                teacher, kt.data.from_lists(src_texts, src_labels.tolist()), cache_dir=cache_dir)
            examples = len(src_texts)
            if args.unlabelled:
                unlabelled = [data[target_lang]["train"][0][i] for i in unl_rows]
                targets = targets.concatenate(kt.distill.soft_targets(
                    teacher, kt.data.from_lists(unlabelled), cache_dir=cache_dir))
                examples += len(unlabelled)
            logits = np.stack([y["logits"] for _, y in targets.as_numpy_iterator()])
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        seconds["soft_targets"] = round(time.perf_counter() - t, 1)
        texts = src_texts + (unlabelled if args.unlabelled else [])
        labels = np.concatenate([src_labels, -np.ones(examples - len(src_texts), "int32")])
        # the student's vocabulary: from the texts it trains on (as the students above,
        # plus the unlabelled target texts), filled from the vectors
        model, _ = student(kt, keras, "textcnn", vectors, texts, args)
        preprocessor = model.preprocessor
        dataset = tf.data.Dataset.from_tensor_slices(
            (texts, {"label": labels.astype("int32"), "logits": logits.astype("float32")}))
        dataset = dataset.shuffle(examples, seed=args.seed).batch(args.batch_size).map(
            lambda x, y: (kt.tasks.serving.preprocess_texts(preprocessor, x), y))
        distiller = kt.distill.Distiller(model, temperature=args.temperature, alpha=args.alpha)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
        t = time.perf_counter()
        distiller.fit(dataset, epochs=args.epochs, shuffle=False, verbose=0)  # shuffled above
        seconds["distill"] = round(time.perf_counter() - t, 1)
        out["distilled_textcnn"] = scores(model, data, source_lang, target_lang)
        out["distilled_textcnn"]["parameters"] = int(model.count_params())
        out["distilled_textcnn"]["examples"] = {"labelled_source": len(src_texts),
                                                "unlabelled_target": examples - len(src_texts)}
        print(f"{source_lang}->{target_lang} distilled {out['distilled_textcnn']}", file=sys.stderr,
              flush=True)

        if measure_latency and args.latency_calls:
            folder = tempfile.mkdtemp(prefix="crosslingual_vectors_export_")
            try:
                sentences = list(data[source_lang]["dev"][0]) + list(data[target_lang]["dev"][0])
                order = np.random.default_rng(0).permutation(len(sentences))
                sentences = [sentences[i] for i in order]
                out["latency_ms_median_single_sentence"] = {
                    "teacher": latency_ms(teacher.export(os.path.join(folder, "teacher", "1")),
                                          sentences, args.latency_calls),
                    "student": latency_ms(model.export(os.path.join(folder, "student", "1")),
                                          sentences, args.latency_calls),
                    "calls": args.latency_calls,
                    "texts": "both dev sets, shuffled (seed 0)",
                }
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    out["seconds"] = seconds
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", default="students,distill", help=f"comma-separated subset of {STAGES}")
    parser.add_argument("--directions", default="en-zh,zh-en")
    parser.add_argument("--source", type=int, default=2000, help="labelled source rows")
    parser.add_argument("--unlabelled", type=int, default=1000,
                        help="unlabelled target-language rows for distillation (0: none)")
    parser.add_argument("--epochs", type=int, default=10, help="student epochs")
    parser.add_argument("--batch-size", type=int, default=50, help="student batch size")
    parser.add_argument("--teacher-epochs", type=int, default=1)
    parser.add_argument("--teacher-batch-size", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="score only the first N dev rows")
    parser.add_argument("--latency-calls", type=int, default=200,
                        help="single-sentence calls timed per model (0: no latency figures)")
    args = parser.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    if any(s not in STAGES for s in stages):
        raise SystemExit(f"--stages must be a subset of {STAGES}")
    directions = [d for d in args.directions.split(",") if d]
    if any(d not in DIRECTIONS for d in directions):
        raise SystemExit(f"--directions must be a subset of {tuple(DIRECTIONS)}")

    import keras
    import tensorflow as tf

    import ktransfer as kt

    keras.utils.set_random_seed(args.seed)  # once, before any SentencePiece op exists
    started = time.perf_counter()
    data = {}
    for name in ("sst2", "chnsenticorp"):
        data[name] = {"train": read_tsv(os.path.join(DATA, name, "train.tsv")),
                      "dev": read_tsv(os.path.join(DATA, name, "dev.tsv"), args.limit)}
    splits = {}
    for name in data:
        source, unlabelled, _ = split_train(data[name]["train"][1],
                                            args.source + ADAPT_VALIDATION_ROWS, args.unlabelled, [])
        splits[name] = (source[:args.source], unlabelled)

    seconds = {}
    t = time.perf_counter()
    full = kt.encoders.BertEncoder.from_preset(
        "multilingual-e5-small", sequence_length=args.sequence_length, pooling="mean",
        text_prefix="query: ")
    corpus = [text for n in data for split in ("train", "dev") for text in data[n][split][0]]
    encoder = full.trim_vocabulary(corpus)
    # `full` stays alive: the shared preprocessor's SentencePiece resource belongs to it
    vectors = kt.WordVectors.from_encoder(encoder)  # the pretrained rows, before any fine-tuning
    initial = [np.array(v.numpy()) for v in encoder.weights]
    seconds["load_trim_vectors"] = round(time.perf_counter() - t, 1)
    record = vectors.tokenizer_record
    result = {
        "benchmark": "crosslingual_vectors_en_zh",
        "protocol": {
            "source_examples": args.source, "unlabelled_target_for_distillation": args.unlabelled,
            "student_epochs": args.epochs, "student_batch_size": args.batch_size,
            "student_optimizer": "adam 1e-3", "vectors_trainable": False,
            "textcnn": "widths 3/4/5 x 100, dropout 0.5", "bilstm": "128 units, dropout 0.5",
            "teacher": "e5 TextClassifier, query: prefix, mean pooling, FusedAdamW 5e-5",
            "teacher_epochs": args.teacher_epochs, "teacher_batch_size": args.teacher_batch_size,
            "temperature": args.temperature, "alpha": args.alpha,
            "sequence_length": args.sequence_length, "seed": args.seed, "split_seed": 0,
            "dev_rows": {n: len(data[n]["dev"][1]) for n in data},
            "trimmed_to": "all texts of SST-2 train+dev and ChnSentiCorp train+dev (no labels)",
        },
        "vectors": {"pieces": len(vectors), "dim": vectors.dim, "tokenizer": record["class"],
                    "tokenizer_vocabulary_size": record["vocabulary_size"]},
        "majority_dev": {n: round(float(max(np.mean(data[n]["dev"][1]), 1 - np.mean(data[n]["dev"][1]))), 4)
                         for n in data},
    }
    for position, d in enumerate(directions):
        source_lang, target_lang = DIRECTIONS[d]
        result[d] = run_direction(kt, keras, tf, encoder, initial, vectors, data, splits, source_lang,
                                  target_lang, args, stages, measure_latency=position == 0)
    seconds["total"] = round(time.perf_counter() - started, 1)
    result["seconds"] = seconds
    del full
    print(json.dumps(result))


if __name__ == "__main__":
    main()
