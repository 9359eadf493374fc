"""Extractive QA: MiniLM trained on SQuAD (train head), scored on XQuAD English; HF PyTorch peer.

ktransfer: `kt.tasks.QuestionAnswerer.from_preset(preset, sequence_length=384,
doc_stride=128)` trained on `../shared/data/squad_train_head/train.json`
(windows batched by length), scored on `../shared/data/squad_small/xquad.en.json`
with `kt.metrics.squad_v1`, in memory and through its exported SavedModel
(loaded back with `tf.saved_model.load`; the two must be equal). Serving:
median latency of one question + a ~150-token paragraph through the export,
and questions/s at batch 64.

Peer, measured in the same run (a subprocess, so TensorFlow and PyTorch do
not share threads): Hugging Face transformers on PyTorch with the `run_qa.py`
recipe on the same checkpoint and questions: `prepare_train_features` (384 /
128, padded to 384, answers outside a window on [CLS]),
`AutoModelForQuestionAnswering`, AdamW with the same linear decay, batch and
epochs, and `utils_qa.py` post-processing (n-best 20, max answer 30). Skipped
with a reason when torch / transformers are not installed
(`pip install -e ".[bench]"`).

Both use the same learning rate, linear decay to 0, no warm-up, no weight
decay, the same seeded sample of training questions, and the same number of
threads. "Training examples/s" counts training questions (each epoch) per
second of training; windows/s counts the windows (features) the models saw.

Prints ONE JSON line.

    python benchmarks/qa.py --max-train 300 --max-eval 200          # a quick check
    python benchmarks/qa.py                                         # all 3,012 questions, all of XQuAD en
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data")
TRAIN = os.path.join(DATA, "squad_train_head", "train.json")
XQUAD_EN = os.path.join(DATA, "squad_small", "xquad.en.json")


def sample(examples, n, seed):
    """A seeded sample of `n` questions (all when n is None), in file order."""
    import numpy as np

    if n is None or n >= len(examples):
        return examples
    keep = sorted(np.random.default_rng(seed).choice(len(examples), size=n, replace=False).tolist())
    from ktransfer.data.squad import SquadExamples

    pick = lambda column: [column[i] for i in keep]  # noqa: E731
    return SquadExamples(pick(examples.ids), pick(examples.titles), pick(examples.questions),
                         pick(examples.contexts), pick(examples.answers), pick(examples.answer_starts),
                         pick(examples.references), path=examples.path)


def as_records(examples):
    return [{"id": examples.ids[i], "question": examples.questions[i], "context": examples.contexts[i],
             "answer": examples.answers[i][0], "answer_start": examples.answer_starts[i][0]}
            for i in range(len(examples))]


# ---------------------------------------------------------------------------
# ktransfer
# ---------------------------------------------------------------------------
def score_sets(qa, kt, sets):
    """EM / F1 of `qa` on each (name, examples, metric), with the predictions."""
    out, answers = {}, {}
    for name, examples, metric in sets:
        start = time.perf_counter()
        predictions = qa.predict(examples, batch_size=64)
        scores = getattr(kt.metrics, metric)([p["answer"] for p in predictions], examples.references)
        out[name] = {"metric": metric, "questions": len(examples),
                     "exact_match": round(scores["exact_match"], 2), "f1": round(scores["f1"], 2),
                     "predict_s": round(time.perf_counter() - start, 1)}
        answers[name] = [p["answer"] for p in predictions]
        print(f"  {name}: {out[name]}", file=sys.stderr, flush=True)
    return out, answers


def run_ktransfer(args, train, sets):
    import keras
    import numpy as np
    import tensorflow as tf

    import ktransfer as kt

    keras.utils.set_random_seed(args.seed)
    encoder = kt.encoders.BertEncoder.from_preset(args.preset, sequence_length=args.sequence_length,
                                                  pooling=None)
    trim = None
    if args.trim:
        # Every text the model is trained on or asked about (questions and
        # contexts; no answers): unseen pieces would map to <unk> anyway.
        texts = list(train.questions) + list(train.contexts)
        for _, examples, _ in sets:
            texts += list(examples.questions) + list(examples.contexts)
        start = time.perf_counter()
        encoder = encoder.trim_vocabulary(sorted(set(texts)))
        trim = dict(encoder.trim_summary, trim_s=round(time.perf_counter() - start, 1))
    qa = kt.tasks.QuestionAnswerer(encoder=encoder, doc_stride=args.doc_stride)
    start = time.perf_counter()
    dataset = qa.make_dataset(train, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    prepare_s = time.perf_counter() - start
    steps_per_epoch = int(dataset.cardinality())
    windows = qa.count_windows(train)
    schedule = keras.optimizers.schedules.PolynomialDecay(
        args.learning_rate, steps_per_epoch * args.epochs, end_learning_rate=0.0, power=1.0)
    qa.compile(optimizer=kt.optimizers.FusedAdamW(schedule, weight_decay=0.0))
    callbacks = []
    if args.average:
        averaging = kt.callbacks.CheckpointAveraging(args.average, apply=False)
        callbacks.append(averaging)
    start, cpu = time.perf_counter(), time.process_time()
    history = qa.fit(dataset, epochs=args.epochs, verbose=0, callbacks=callbacks)
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    print(f"ktransfer trained in {train_s:.0f} s", file=sys.stderr, flush=True)

    scores, answers = score_sets(qa, kt, sets)
    averaged = None
    if args.average:
        averaging.apply_average()
        averaged, _ = score_sets(qa, kt, sets)
        averaged["checkpoints"] = averaging.steps_taken
        averaging.restore_final()

    # The export answers the first evaluation set: the same answers as in memory.
    name, evaluation, metric = sets[0]
    folder = tempfile.mkdtemp(prefix="kt_qa_")
    path = qa.export(os.path.join(folder, "qa", "1"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    exported = []
    for i in range(0, len(evaluation), 64):
        out = serve(question=tf.constant(evaluation.questions[i:i + 64]),
                    context=tf.constant(evaluation.contexts[i:i + 64]))
        exported.extend(a.decode("utf-8") for a in out["answer"].numpy())
    export_scores = getattr(kt.metrics, metric)(exported, evaluation.references)

    # Serving: one question + a ~150-token paragraph; questions/s at batch 64.
    lengths = [len(qa.preprocessor.offset_tokenizer(tf.constant([c]))[0][0]) for c in evaluation.contexts[:64]]
    pick = int(np.argmin([abs(n - 150) for n in lengths]))
    one = {"question": tf.constant([evaluation.questions[pick]]), "context": tf.constant([evaluation.contexts[pick]])}
    serve(**one)
    latencies = []
    for _ in range(args.latency_runs):
        t = time.perf_counter()
        serve(**one)["answer"].numpy()
        latencies.append(time.perf_counter() - t)
    batch = {"question": tf.constant((evaluation.questions * 64)[:64]),
             "context": tf.constant((evaluation.contexts * 64)[:64])}
    serve(**batch)
    t = time.perf_counter()
    for _ in range(3):
        serve(**batch)["answer"].numpy()
    batch_qps = 3 * 64 / (time.perf_counter() - t)
    result = {
        "exact_match": scores[name]["exact_match"], "f1": scores[name]["f1"],
        "scores": scores,
        "export_eval": name,
        "export_exact_match": round(export_scores["exact_match"], 2),
        "export_f1": round(export_scores["f1"], 2),
        "export_equals_in_memory": exported == answers[name],
        "train_windows": windows, "steps_per_epoch": steps_per_epoch,
        "prepare_s": round(prepare_s, 1), "train_s": round(train_s, 1),
        "train_cpu_s": round(train_cpu_s, 1),
        "train_examples_per_s": round(len(train) * args.epochs / train_s, 2),
        "train_windows_per_s": round(windows * args.epochs / train_s, 2),
        "final_loss": round(float(history.history["loss"][-1]), 4),
        "serving_context_tokens": lengths[pick],
        "serving_latency_ms_median": round(1000 * statistics.median(latencies), 1),
        "serving_questions_per_s_batch64": round(batch_qps, 1),
    }
    if averaged is not None:
        result["checkpoint_average"] = averaged
    if trim is not None:
        result["trim"] = trim
    return result


# ---------------------------------------------------------------------------
# Hugging Face transformers on PyTorch (run_qa.py + utils_qa.py), in a subprocess
# ---------------------------------------------------------------------------
def hf_worker(config):
    import numpy as np
    import torch
    import transformers

    torch.manual_seed(config["seed"])
    torch.set_num_threads(config["threads"])
    folder, length, stride = config["folder"], config["sequence_length"], config["doc_stride"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    pad_right = tokenizer.padding_side == "right"
    train, evaluation = config["train"], config["eval"]

    # run_qa.py prepare_train_features
    t = time.perf_counter()
    tokenized = tokenizer([r["question"].lstrip() for r in train], [r["context"] for r in train],
                          truncation="only_second", max_length=length, stride=stride,
                          return_overflowing_tokens=True, return_offsets_mapping=True,
                          padding="max_length")
    mapping = tokenized.pop("overflow_to_sample_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(tokenized.pop("offset_mapping")):
        ids = tokenized["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id)
        sequence_ids = tokenized.sequence_ids(i)
        record = train[mapping[i]]
        start_char = record["answer_start"]
        end_char = start_char + len(record["answer"])
        first = 0
        while sequence_ids[first] != (1 if pad_right else 0):
            first += 1
        last = len(ids) - 1
        while sequence_ids[last] != (1 if pad_right else 0):
            last -= 1
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            starts.append(cls)
            ends.append(cls)
        else:
            while first < len(offsets) and offsets[first][0] <= start_char:
                first += 1
            starts.append(first - 1)
            while offsets[last][1] >= end_char:
                last -= 1
            ends.append(last + 1)
    prepare_s = time.perf_counter() - t
    tensors = {k: torch.tensor(tokenized[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
    tensors["start_positions"] = torch.tensor(starts)
    tensors["end_positions"] = torch.tensor(ends)
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(folder)
    batch_size, epochs = config["batch_size"], config["epochs"]
    num = len(starts)
    steps = math.ceil(num / batch_size) * epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"], weight_decay=0.0)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, 0, steps)
    model.train()
    generator = torch.Generator().manual_seed(config["seed"])
    t, cpu = time.perf_counter(), time.process_time()
    loss = None
    for _ in range(epochs):
        for rows in torch.randperm(num, generator=generator).split(batch_size):
            out = model(**{k: v[rows] for k, v in tensors.items()})
            out.loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            loss = float(out.loss)
    train_s, train_cpu_s = time.perf_counter() - t, time.process_time() - cpu

    # run_qa.py prepare_validation_features + utils_qa.postprocess_qa_predictions
    t = time.perf_counter()
    features = tokenizer([r["question"].lstrip() for r in evaluation], [r["context"] for r in evaluation],
                         truncation="only_second", max_length=length, stride=stride,
                         return_overflowing_tokens=True, return_offsets_mapping=True,
                         padding="max_length")
    example_of = features.pop("overflow_to_sample_mapping")
    offsets = []
    for i, row in enumerate(features["offset_mapping"]):
        sequence_ids = features.sequence_ids(i)
        offsets.append([o if sequence_ids[k] == (1 if pad_right else 0) else None for k, o in enumerate(row)])
    model.eval()
    start_logits, end_logits = [], []
    with torch.no_grad():
        for i in range(0, len(offsets), 64):
            out = model(**{k: torch.tensor(features[k][i:i + 64])
                           for k in ("input_ids", "token_type_ids", "attention_mask")})
            start_logits.append(out.start_logits.numpy())
            end_logits.append(out.end_logits.numpy())
    start_logits, end_logits = np.concatenate(start_logits), np.concatenate(end_logits)
    n_best, max_answer = 20, 30
    by_example = {}
    for f, e in enumerate(example_of):
        by_example.setdefault(e, []).append(f)
    predictions = []
    for e, record in enumerate(evaluation):
        candidates = []
        for f in by_example.get(e, []):
            for s in np.argsort(start_logits[f])[-1:-n_best - 1:-1]:
                for x in np.argsort(end_logits[f])[-1:-n_best - 1:-1]:
                    if offsets[f][s] is None or offsets[f][x] is None or x < s or x - s + 1 > max_answer:
                        continue
                    candidates.append((start_logits[f][s] + end_logits[f][x], offsets[f][s][0], offsets[f][x][1]))
        best = max(candidates) if candidates else (0.0, 0, 0)
        predictions.append(record["context"][best[1]:best[2]])
    predict_s = time.perf_counter() - t
    return {"predictions": predictions, "train_windows": num, "steps": steps,
            "prepare_s": round(prepare_s, 1), "train_s": round(train_s, 1),
            "train_cpu_s": round(train_cpu_s, 1), "final_loss": round(loss, 4), "predict_s": round(predict_s, 1),
            "torch": torch.__version__, "transformers": transformers.__version__}


def run_hf(args, train, evaluation):
    try:
        import importlib.util

        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    except ImportError:
        missing = ["torch", "transformers"]
    if missing:
        return {"skipped": f"{', '.join(missing)} not installed: pip install -e '.[bench]'"}
    from ktransfer import assets

    folder = assets.path(args.preset) if assets.is_cached(args.preset) else args.preset
    config = {"folder": str(folder), "sequence_length": args.sequence_length, "doc_stride": args.doc_stride,
              "batch_size": args.batch_size, "epochs": args.epochs, "learning_rate": args.learning_rate,
              "seed": args.seed, "threads": args.threads, "train": as_records(train),
              "eval": as_records(evaluation)}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(args.threads))
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--hf-worker", f.name],
                            capture_output=True, text=True, env=env)
    os.unlink(f.name)
    if result.returncode != 0:
        return {"failed": result.stderr[-2000:]}
    out = json.loads(result.stdout.strip().splitlines()[-1])
    from ktransfer import metrics

    scores = getattr(metrics, args.metric)(out.pop("predictions"), evaluation.references)
    out.update(exact_match=round(scores["exact_match"], 2), f1=round(scores["f1"], 2),
               train_examples_per_s=round(len(train) * args.epochs / out["train_s"], 2),
               train_windows_per_s=round(out["train_windows"] * args.epochs / out["train_s"], 2))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="minilm")
    parser.add_argument("--train", default=TRAIN)
    parser.add_argument("--eval", nargs="+", default=[XQUAD_EN],
                        help="SQuAD-format files to score (the first one also through the export, "
                             "and by the peer)")
    parser.add_argument("--max-train", type=int, default=None, help="a seeded sample of N training questions")
    parser.add_argument("--max-eval", type=int, default=None, help="a seeded sample of N evaluation questions")
    parser.add_argument("--metric", nargs="+", choices=["squad_v1", "cmrc"], default=["squad_v1"],
                        help="one per --eval file, or one for all; cmrc: character-level scores "
                             "for Chinese (XQuAD zh, CMRC 2018)")
    parser.add_argument("--trim", action="store_true",
                        help="trim the vocabulary to the questions and contexts of --train and --eval "
                             "(multilingual-e5-small: 250k pieces)")
    parser.add_argument("--average", type=int, default=0,
                        help="also score the mean of N evenly spaced checkpoints "
                             "(kt.callbacks.CheckpointAveraging; Free Lunch, Schmidt et al. 2023)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--sequence-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer", choices=["hf", "none"], default="hf")
    parser.add_argument("--hf-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_worker:
        with open(args.hf_worker) as f:
            print(json.dumps(hf_worker(json.load(f))))
        return
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(args.threads))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import ktransfer as kt

    if len(args.metric) not in (1, len(args.eval)):
        parser.error(f"give one --metric, or one per --eval file ({len(args.eval)})")
    metrics = args.metric * len(args.eval) if len(args.metric) == 1 else args.metric
    train = sample(kt.data.read_squad(args.train), args.max_train, args.seed)
    sets = [(os.path.basename(path), sample(kt.data.read_squad(path), args.max_eval, args.seed), metric)
            for path, metric in zip(args.eval, metrics)]
    evaluation = sets[0][1]
    args.metric = sets[0][2]  # the peer scores the first set
    result = {
        "benchmark": "qa", "preset": args.preset, "train_questions": len(train),
        "eval": sets[0][0], "eval_questions": len(evaluation),
        "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "schedule": "linear decay to 0, no warm-up, no weight decay",
        "sequence_length": args.sequence_length, "doc_stride": args.doc_stride,
        "n_best": 20, "max_answer_length": 30, "threads": args.threads, "metric": args.metric,
        "trim": args.trim, "checkpoints_averaged": args.average,
        "command": "python benchmarks/qa.py " + " ".join(sys.argv[1:]),
    }
    if args.peer == "hf":  # first, so that the two runs do not overlap
        result["hf_pytorch"] = run_hf(args, train, evaluation)
    result["ktransfer"] = run_ktransfer(args, train, sets)
    peer = result.get("hf_pytorch", {})
    if "train_examples_per_s" in peer:
        result["speedup_train_examples_per_s"] = round(
            result["ktransfer"]["train_examples_per_s"] / peer["train_examples_per_s"], 2)
        result["speedup_train_cpu_time"] = round(
            peer["train_cpu_s"] / result["ktransfer"]["train_cpu_s"], 2)
        result["f1_minus_peer"] = round(result["ktransfer"]["f1"] - peer["f1"], 2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
