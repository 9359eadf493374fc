"""Distil a fine-tuned MiniLM (SST-2) into a TextCNN over GloVe-50d, in one run.

Teacher: MiniLM (`BertEncoder(pooling="mean")` + `ClassificationHead(2)`)
fine-tuned on SST-2, loaded from `--teacher PATH` (a `.keras` file), or, when
none is given, fine-tuned here on `--teacher-train-size` SST-2 phrases (1
epoch, AdamW 5e-5 with linear decay; saved beside the soft-target cache and
reused by later runs).

Student: `kt.models.TextCNN` (Kim 2014: widths 3/4/5 x 100, dropout 0.5) over
`WordVectorEncoder(glove50, standardize="lower_and_split_punctuation",
trainable=True)`, its vocabulary adapted on SST-2 train. Two students of this
architecture, trained with the same epochs, batch size, optimizer (Adam 1e-3)
and seeds:

- alone: `model.fit` on the 67,349 SST-2 train phrases with their labels;
- distilled: `kt.distill.Distiller(student, temperature, alpha, soft_loss)` on
  the same phrases with labels and the teacher's logits
  (`kt.distill.soft_targets`, cached), plus (`--transfer amazon`, default)
  `--transfer-size` sentences of the Amazon multi-domain reviews
  (../shared/data/amazon_multidomain, all four domains, split into
  sentences, labels dropped) that teach through the teacher's logits only.

Reported (ONE JSON line): SST-2 dev accuracy (872 sentences) of the teacher,
the student alone and the distilled student (mean over seeds, and per seed);
parameter counts; and, for the exported SavedModels of the teacher and of a
distilled student, loaded with `tf.saved_model.load` in this process:
single-sentence latency (median of 200 calls) and batch-64 throughput,
measured one after the other in the same run. Timings are wall-clock on
whatever cores the machine has (possibly shared: noisy).

    python benchmarks/distill.py --teacher /work/teacher/sst2_minilm_full.keras
    python benchmarks/distill.py                       # fine-tunes its own teacher first
    python benchmarks/distill.py --quick               # 5k phrases, 1 epoch, 1 seed, 2k transfer sentences
"""

import argparse
import json
import os
import re
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data")
LABELS = ["negative", "positive"]
AMAZON_DOMAINS = ("books", "dvd", "electronics", "kitchen")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", help="a trained teacher .keras file (default: fine-tune one)")
    parser.add_argument("--teacher-train-size", type=int, default=8000)
    parser.add_argument("--teacher-sequence-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="student epochs (both students)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--soft-loss", default="kl", choices=["kl", "mse"])
    parser.add_argument("--transfer", default="amazon", choices=["amazon", "none"])
    parser.add_argument("--transfer-size", type=int, default=20000)
    parser.add_argument("--train-size", type=int, default=None, help="SST-2 phrases (default all)")
    parser.add_argument("--cache-dir", default=None, help="soft-target cache (default $KTRANSFER_HOME/soft_targets)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the student trained alone")
    parser.add_argument("--no-serving", action="store_true", help="skip the export and latency figures")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_size, args.epochs, args.seeds = args.train_size or 5000, 1, "0"
        args.transfer_size = min(args.transfer_size, 2000)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    return args


def read_sst2(name):
    import numpy as np

    import ktransfer as kt

    dataset = kt.data.from_tsv(os.path.join(DATA, "sst2", f"{name}.tsv"), class_names=["0", "1"])
    texts, labels = [], []
    for text, label in dataset.batch(4096).as_numpy_iterator():
        texts.extend(t.decode("utf-8") for t in text)
        labels.extend(label.tolist())
    return texts, np.array(labels, "int32")


def amazon_sentences(size, seed):
    """Sentences (4-40 words) of the Amazon reviews of all four domains, shuffled."""
    import numpy as np

    import ktransfer as kt

    sentences, seen = [], set()
    for domain in AMAZON_DOMAINS:
        reviews = kt.data.from_tsv(
            os.path.join(DATA, "amazon_multidomain", f"{domain}.tsv"), quoting="auto"
        )
        for review, _ in reviews.as_numpy_iterator():
            for sentence in re.split(r"(?<=[.!?])\s+|[\n\t]+", review.decode("utf-8")):
                sentence = sentence.strip()
                if 4 <= len(sentence.split()) <= 40 and sentence not in seen:
                    seen.add(sentence)
                    sentences.append(sentence)
    order = np.random.default_rng(seed).permutation(len(sentences))[:size]
    return [sentences[i] for i in order], len(sentences)


def load_or_train_teacher(args, train_texts, train_labels):
    import keras

    import ktransfer as kt

    if args.teacher:
        return keras.saving.load_model(args.teacher), args.teacher, False
    folder = args.cache_dir or os.path.join(kt.assets.home(), "soft_targets")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(
        folder, f"teacher_sst2_{args.teacher_train_size}_len{args.teacher_sequence_length}.keras"
    )
    if os.path.isfile(path):
        return keras.saving.load_model(path), path, False
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(
        "minilm", sequence_length=args.teacher_sequence_length, pooling="mean", trainable=True
    )
    head = kt.heads.ClassificationHead(2, dropout=0.1)
    teacher = keras.Sequential([encoder, head])
    subset = kt.data.from_lists(
        train_texts[: args.teacher_train_size], train_labels[: args.teacher_train_size].tolist()
    )
    batches = kt.data.prepare(subset, encoder.preprocessor, batch_size=32, shuffle=True, seed=0)
    schedule = keras.optimizers.schedules.PolynomialDecay(5e-5, int(batches.cardinality()), 0.0)
    teacher.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01), loss=head.default_loss()
    )
    teacher.fit(batches, epochs=1, verbose=0)
    staging = path + ".tmp.keras"
    teacher.save(staging)
    os.replace(staging, path)
    return teacher, path, True


def student_model(vectors, train_texts, seed):
    import keras

    import ktransfer as kt

    keras.utils.set_random_seed(seed)
    encoder = kt.encoders.WordVectorEncoder(
        vectors, standardize="lower_and_split_punctuation", trainable=True, seed=seed
    )
    encoder.adapt(train_texts)
    return kt.models.TextCNN(encoder, num_classes=2)


def accuracy(predict, texts, labels, batch_size=256):
    import numpy as np

    hits = 0
    for start in range(0, len(texts), batch_size):
        scores = np.asarray(predict(texts[start:start + batch_size]))
        hits += int(np.sum(np.argmax(scores, -1) == labels[start:start + batch_size]))
    return hits / len(texts)


def serving_figures(path, dev_texts, dev_labels):
    """Dev accuracy, single-sentence latency and batch-64 throughput of a SavedModel."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  registers the tokenizer ops

    serve = tf.saved_model.load(path).signatures["serving_default"]
    probabilities = lambda texts: serve(text=tf.constant(texts))["probabilities"].numpy()  # noqa: E731
    dev_accuracy = accuracy(probabilities, dev_texts, dev_labels, batch_size=64)
    for text in dev_texts[:10]:  # warm-up
        probabilities([text])
    latencies = []
    for i in range(200):
        start = time.perf_counter()
        probabilities([dev_texts[i % len(dev_texts)]])
        latencies.append(time.perf_counter() - start)
    batches = [dev_texts[i:i + 64] for i in range(0, len(dev_texts) - 63, 64)]
    probabilities(batches[0])
    start = time.perf_counter()
    for batch in batches:
        probabilities(batch)
    seconds = time.perf_counter() - start
    return {
        "dev_accuracy": round(dev_accuracy, 4),
        "single_sentence_ms_median": round(1000 * float(np.median(latencies)), 3),
        "batch64_examples_per_second": round(64 * len(batches) / seconds, 1),
        "batch64_ms": round(1000 * seconds / len(batches), 2),
    }


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    import keras
    import numpy as np
    import tensorflow as tf

    import ktransfer as kt

    train_texts, train_labels = read_sst2("train")
    dev_texts, dev_labels = read_sst2("dev")
    if args.train_size:
        order = np.random.default_rng(0).permutation(len(train_texts))[: args.train_size]
        train_texts, train_labels = [train_texts[i] for i in order], train_labels[order]
    result = {"benchmark": "distill", "train_examples": len(train_texts), "dev_examples": len(dev_texts)}

    step = time.perf_counter()
    teacher, teacher_path, trained_here = load_or_train_teacher(args, train_texts, train_labels)
    result["teacher"] = {
        "path": teacher_path,
        "trained_here": trained_here,
        "parameters": int(teacher.count_params()),
        "load_or_train_seconds": round(time.perf_counter() - step, 1),
    }

    step = time.perf_counter()
    targets = kt.distill.soft_targets(
        teacher, kt.data.from_lists(train_texts, train_labels.tolist()), cache_dir=args.cache_dir
    )
    result["soft_targets_seconds"] = {"sst2": round(time.perf_counter() - step, 1)}
    transfer_examples = 0
    if args.transfer == "amazon":
        step = time.perf_counter()
        sentences, available = amazon_sentences(args.transfer_size, seed=0)
        extra = kt.distill.soft_targets(teacher, kt.data.from_lists(sentences), cache_dir=args.cache_dir)
        result["soft_targets_seconds"]["amazon"] = round(time.perf_counter() - step, 1)
        transfer_examples = len(sentences)
        targets = targets.concatenate(extra)
        result["transfer"] = {"source": "amazon_multidomain sentences", "used": len(sentences), "available": available}
    teacher_logits = np.stack([t["logits"] for _, t in targets.take(len(train_texts)).as_numpy_iterator()])
    result["teacher"]["train_accuracy"] = round(float(np.mean(np.argmax(teacher_logits, -1) == train_labels)), 4)

    vectors = kt.WordVectors.load(kt.assets.path("glove50"))
    text_batches = lambda texts: tf.constant(texts)  # noqa: E731
    alone, distilled = [], []
    train_seconds = {"alone": [], "distilled": []}
    distilled_student = None
    for seed in args.seeds:
        if not args.no_baseline:
            model = student_model(vectors, train_texts, seed)
            data = tf.data.Dataset.from_tensor_slices((train_texts, train_labels))
            step = time.perf_counter()
            model.fit(data.shuffle(len(train_texts), seed=seed).batch(args.batch_size), epochs=args.epochs, verbose=0)
            train_seconds["alone"].append(time.perf_counter() - step)
            alone.append(accuracy(lambda t: model(text_batches(t), training=False), dev_texts, dev_labels))
        student = student_model(vectors, train_texts, seed)
        distiller = kt.distill.Distiller(
            student, temperature=args.temperature, alpha=args.alpha, soft_loss=args.soft_loss
        )
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
        step = time.perf_counter()
        shuffled = targets.shuffle(len(train_texts) + transfer_examples, seed=seed)
        distiller.fit(shuffled.batch(args.batch_size), epochs=args.epochs, verbose=0)
        train_seconds["distilled"].append(time.perf_counter() - step)
        distilled.append(accuracy(lambda t: student(text_batches(t), training=False), dev_texts, dev_labels))
        distilled_student = student
        print(json.dumps({"seed": seed, "alone": alone[-1] if alone else None, "distilled": distilled[-1]}), flush=True)

    def summary(values):
        return {"dev_accuracy": round(float(np.mean(values)), 4), "dev_accuracy_by_seed": [round(v, 4) for v in values]}

    parameters = int(distilled_student.count_params())
    encoder = next(l for l in distilled_student.layers if isinstance(l, kt.encoders.WordVectorEncoder))
    embedding = int(np.prod(encoder.embedding.embeddings.shape))
    result["student"] = {
        "architecture": "TextCNN widths 3/4/5 x 100, GloVe 6B 50d trainable",
        "parameters": parameters,
        "parameters_without_embedding": parameters - embedding,
    }
    if alone:
        result["student_alone"] = dict(summary(alone), train_seconds=round(float(np.mean(train_seconds["alone"])), 1))
    result["student_distilled"] = dict(
        summary(distilled), train_seconds=round(float(np.mean(train_seconds["distilled"])), 1)
    )
    if alone:
        result["distilled_minus_alone"] = round(float(np.mean(distilled) - np.mean(alone)), 4)
    result["settings"] = {
        "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "adam 1e-3", "seeds": args.seeds,
        "temperature": args.temperature, "alpha": args.alpha, "soft_loss": args.soft_loss,
        "transfer": args.transfer, "distilled_examples_per_epoch": len(train_texts) + transfer_examples,
    }

    if args.no_serving:
        result["total_seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(result))
        return
    folder = tempfile.mkdtemp(prefix="distill_bench_")
    try:
        teacher_export = kt.export.save(teacher, os.path.join(folder, "teacher", "1"), labels=LABELS)
        student_export = kt.export.save(distilled_student, os.path.join(folder, "student", "1"), labels=LABELS)
        result["serving"] = {
            "teacher": serving_figures(teacher_export, dev_texts, dev_labels),
            "student": serving_figures(student_export, dev_texts, dev_labels),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["teacher"]["dev_accuracy"] = result["serving"]["teacher"]["dev_accuracy"]
    serving = result["serving"]
    result["speedup"] = {
        "single_sentence": round(serving["teacher"]["single_sentence_ms_median"] / serving["student"]["single_sentence_ms_median"], 1),
        "batch64": round(serving["student"]["batch64_examples_per_second"] / serving["teacher"]["batch64_examples_per_second"], 1),
    }
    result["cpu_count"] = os.cpu_count()
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
