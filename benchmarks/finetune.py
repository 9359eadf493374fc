"""Fine-tuning throughput and accuracy: ktransfer vs KerasHub, in one run.

Fine-tunes the real MiniLM checkpoint on N SST-2 training sentences (default
4000, from ../shared/data/sst2), evaluates on the 872 dev sentences, and
prints ONE JSON line with, for each system: training examples/s after a
warm-up of 10 batches (in wall time, and per CPU second of the process over
the same batches), total training seconds, dev accuracy and peak RSS.

- ktransfer: `BertEncoder(pooling="mean")` + `ClassificationHead`, token
  inputs from `kt.data.prepare` (length-bucketed batches).
- hf_torch: Hugging Face transformers on PyTorch (`pip install -e .[bench]`
  installs torch 2.13.0 CPU and transformers), `AutoModelForSequenceClassification`
  with dynamic padding per batch, AdamW with linear decay, all cores.
- keras_hub: KerasHub's documented way, `keras_hub.models.BertTextClassifier`
  on raw strings, with the same backbone folder, batch size, optimizer,
  learning rate and sequence length.

Each system runs in its own subprocess so peak RSS is its own.

    python benchmarks/finetune.py                 # 4000 sentences, both systems
    python benchmarks/finetune.py --train-size 1000 --systems ktransfer
"""

import argparse
import csv
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(REPO, "..", "shared", "data", "sst2")


def read_tsv(path, limit=None, seed=0):
    import random

    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    if limit:
        random.Random(seed).shuffle(rows)
        rows = rows[:limit]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def run_torch(args):
    """Hugging Face transformers on PyTorch, dynamic padding, same data and optimizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 2)
    folder = os.path.join(os.environ.get("KTRANSFER_HOME", os.path.expanduser("~/.cache/ktransfer")), "minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    train_texts, train_labels = read_tsv(os.path.join(args.data, "train.tsv"), args.train_size, args.seed)
    dev_texts, dev_labels = read_tsv(os.path.join(args.data, "dev.tsv"))
    order = torch.randperm(len(train_texts)).tolist()
    batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.004)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(batches))
    model.train()
    warmup = 10
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        if step == warmup:
            measured_start = time.perf_counter()
            measured_cpu_start = time.process_time()
        encoded = tokenizer([train_texts[i] for i in batch], padding=True, truncation=True,
                            max_length=args.sequence_length, return_tensors="pt")
        labels = torch.tensor([train_labels[i] for i in batch])
        loss = model(**encoded, labels=labels).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    end = time.perf_counter()
    cpu_seconds = time.process_time() - measured_cpu_start
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dev_texts), 64):
            encoded = tokenizer(dev_texts[i:i + 64], padding=True, truncation=True,
                                max_length=args.sequence_length, return_tensors="pt")
            predicted = model(**encoded).logits.argmax(-1)
            correct += int((predicted == torch.tensor(dev_labels[i:i + 64])).sum())
    print(json.dumps({
        "system": "hf_torch",
        "versions": f"torch {torch.__version__}",
        "train_examples_per_s": round((len(train_texts) - warmup * args.batch_size) / (end - measured_start), 2),
        "train_examples_per_cpu_s": round((len(train_texts) - warmup * args.batch_size) / cpu_seconds, 2),
        "train_seconds_total": round(end - start, 1),
        "dev_accuracy": round(correct / len(dev_texts), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


def run_one(args):
    if args.system == "hf_torch":
        return run_torch(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    import ktransfer as kt

    keras.utils.set_random_seed(args.seed)
    if args.precision != "float32":
        keras.mixed_precision.set_dtype_policy(args.precision)
    folder = kt.assets.path("minilm")
    train_texts, train_labels = read_tsv(os.path.join(args.data, "train.tsv"), args.train_size, args.seed)
    dev_texts, dev_labels = read_tsv(os.path.join(args.data, "dev.tsv"))
    steps = -(-len(train_texts) // args.batch_size)
    if args.schedule == "slanted_triangular":  # 10% warm-up, then linear decay (ULMFiT)
        schedule = kt.schedules.SlantedTriangular(args.learning_rate, steps, cut_fraction=0.1)
    else:  # linear decay to zero, as Hugging Face's default
        schedule = keras.optimizers.schedules.PolynomialDecay(args.learning_rate, steps, 0.0)
    if args.system == "ktransfer":  # ktransfer's AdamW: the same update, one fused kernel
        optimizer = kt.optimizers.FusedAdamW(schedule)
    else:
        optimizer = keras.optimizers.AdamW(schedule)
    if args.system == "ktransfer":
        encoder = kt.encoders.BertEncoder.from_preset(
            folder, sequence_length=args.sequence_length, pooling="mean"
        )
        if args.layer_decay != 1.0:  # layer-wise learning rates: lower blocks learn more slowly
            optimizer = kt.optimizers.layerwise(optimizer, encoder, decay=args.layer_decay)
        head = kt.heads.ClassificationHead(2, dropout=0.1)
        model = keras.Sequential([encoder, head])
        bucket_step = args.bucket_step or kt.data.default_bucket_step()
        bucket = kt.data.bucket_boundaries(args.sequence_length, step=bucket_step)
        train = kt.data.prepare(
            kt.data.from_lists(train_texts, train_labels), encoder.preprocessor,
            batch_size=args.batch_size, shuffle=True, seed=args.seed, bucket=bucket,
        )
        dev = kt.data.prepare(kt.data.from_lists(dev_texts, dev_labels), encoder.preprocessor, batch_size=64)
        loss = head.default_loss()
    else:
        import keras_hub

        backbone = keras_hub.models.BertBackbone.from_preset(folder)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
            folder, sequence_length=args.sequence_length
        )
        model = keras_hub.models.BertTextClassifier(
            backbone=backbone, preprocessor=preprocessor, num_classes=2
        )
        train = (
            tf.data.Dataset.from_tensor_slices((train_texts, train_labels))
            .shuffle(len(train_texts), seed=args.seed)
            .batch(args.batch_size)
        )
        dev = tf.data.Dataset.from_tensor_slices((dev_texts, dev_labels)).batch(64)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])

    class Timer(keras.callbacks.Callback):
        warmup = 10

        def on_train_batch_end(self, batch, logs=None):
            if batch == self.warmup - 1:
                self.start = time.perf_counter()
                self.cpu_start = time.process_time()
                if args.profile:
                    tf.profiler.experimental.start(args.profile)

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start
            self.cpu_seconds = time.process_time() - self.cpu_start
            if args.profile:
                tf.profiler.experimental.stop()

    if args.system == "ktransfer":
        # Real (unpadded) tokens per example, for the physical-limit figure.
        lengths = kt.data.pipeline.token_lengths(encoder.preprocessor(tf.constant(train_texts)))
        mean_tokens = round(float(tf.reduce_mean(tf.cast(lengths, tf.float32))), 2)
    timer = Timer()
    start = time.perf_counter()
    model.fit(train, epochs=1, verbose=0, callbacks=[timer])
    total = time.perf_counter() - start
    print(f"{args.system}: trained in {total:.1f}s", file=sys.stderr, flush=True)
    measured = len(train_texts) - timer.warmup * args.batch_size
    _, accuracy = model.evaluate(dev, verbose=0)
    if args.save and args.system == "ktransfer":
        staging = args.save + ".partial.keras"  # written whole, then renamed
        model.save(staging)
        os.replace(staging, args.save)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "system": args.system,
        "train_examples_per_s": round(measured / timer.seconds, 2),
        "train_examples_per_cpu_s": round(measured / timer.cpu_seconds, 2),
        "train_seconds_total": round(total, 1),
        "dev_accuracy": round(float(accuracy), 4),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }
    if args.system == "ktransfer":
        figures["mean_tokens_per_example"] = mean_tokens
        figures["bucket_step"] = bucket_step
    print(json.dumps(figures))


def child_arguments(args):
    """The parsed options, as arguments for one system's subprocess."""
    arguments = []
    for name in ("train_size", "batch_size", "learning_rate", "sequence_length", "precision",
                 "data", "seed", "save", "profile", "schedule", "layer_decay", "bucket_step"):
        value = getattr(args, name)
        if value is not None:
            arguments += ["--" + name.replace("_", "-"), str(value)]
    return arguments


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--systems", default="ktransfer,keras_hub,hf_torch")
    parser.add_argument("--data", default=SST2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedule", default="linear", choices=["linear", "slanted_triangular"])
    parser.add_argument("--layer-decay", type=float, default=1.0,
                        help="ktransfer only: learning-rate factor between consecutive encoder "
                        "blocks (kt.optimizers.layerwise); 1 means one rate for all (default)")
    parser.add_argument("--bucket-step", type=int, default=None,
                        help="ktransfer only: spacing of the length buckets up to 64 tokens "
                        "(kt.data.bucket_boundaries(step=...)); default: the library's, "
                        "kt.data.default_bucket_step() (2 on a CPU, 8 with a GPU/TPU)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per system; throughput is the median (default 3)")
    parser.add_argument("--save", help="write the fine-tuned ktransfer model to this .keras file")
    parser.add_argument("--profile", help="record a TensorBoard profile of ktransfer's epoch "
                        "(after warm-up) in this folder, in one extra run, and summarise it")
    parser.add_argument("--gflops", type=float, default=213.0,
                        help="this machine's float32 matmul rate (benchmarks/matmul_peak.py), "
                        "for the physical limit (default: 213, the EPYC development machine's)")
    parser.add_argument("--system", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.system:
        return run_one(args)
    if not os.path.isdir(args.data):
        sys.exit(f"SST-2 not found at {args.data}: pass --data (the folder with train.tsv and dev.tsv).")
    systems = args.systems.split(",")
    if "hf_torch" in systems and importlib.util.find_spec("transformers") is None:
        systems.remove("hf_torch")
        print("hf_torch skipped: pip install -e .[bench]", file=sys.stderr)
    runs = {system: [] for system in systems}
    for repeat in range(args.repeats):  # interleaved, so drifting load hits all alike
        for system in systems:
            child = dict(vars(args), profile=None, save=args.save if repeat == 0 else None)
            runs[system].append(run_child(system, argparse.Namespace(**child)))
            print(f"{system} run {repeat + 1}: {runs[system][-1]}", file=sys.stderr, flush=True)
    summary = {
        "benchmark": "finetune_sst2_minilm",
        "train_size": args.train_size or "all",
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "schedule": args.schedule,
        "layer_decay": args.layer_decay,
        "sequence_length": args.sequence_length,
        "precision": args.precision,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
    }
    for system, figures in runs.items():
        summary[system] = median_figures(figures)
    if "ktransfer" in runs:
        summary["bucket_step"] = runs["ktransfer"][0]["bucket_step"]
        # One training token of MiniLM costs about 67 MFLOP (forward + backward).
        tokens = summary["ktransfer"]["mean_tokens_per_example"]
        summary["physical_limit_examples_per_s"] = round(args.gflops * 1e9 / (67e6 * tokens), 1)
        for peer in systems:
            if peer != "ktransfer":
                summary[f"speedup_vs_{peer}"] = round(
                    summary["ktransfer"]["train_examples_per_s"]
                    / summary[peer]["train_examples_per_s"], 2
                )
                # The same ratio in CPU time (all threads of each process):
                # steadier than wall time where the machine's speed moves.
                summary[f"cpu_speedup_vs_{peer}"] = round(
                    summary["ktransfer"]["train_examples_per_cpu_s"]
                    / summary[peer]["train_examples_per_cpu_s"], 2
                )
    if args.profile:
        profiled = run_child("ktransfer", argparse.Namespace(**dict(vars(args), save=None)))
        summary["profile"] = {
            "folder": os.path.abspath(args.profile),
            "train_examples_per_s_while_profiling": profiled["train_examples_per_s"],
            "op_types": summarise_profile(args.profile),
        }
    print(json.dumps(summary))


def run_child(system, args):
    command = [sys.executable, __file__, "--system", system] + child_arguments(args)
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"{system} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def median_figures(figures):
    """Median throughput over the repeats, with every run's figures kept."""
    import statistics

    throughputs = [f["train_examples_per_s"] for f in figures]
    accuracies = [f["dev_accuracy"] for f in figures]
    summary = {
        "train_examples_per_s": round(statistics.median(throughputs), 2),
        "train_examples_per_s_runs": throughputs,
        "train_examples_per_cpu_s": round(
            statistics.median(f["train_examples_per_cpu_s"] for f in figures), 2
        ),
        "dev_accuracy": round(statistics.median(accuracies), 4),
        "dev_accuracy_runs": accuracies,
        "peak_rss_mb": max(f["peak_rss_mb"] for f in figures),
        "train_seconds_total_runs": [f["train_seconds_total"] for f in figures],
    }
    if "mean_tokens_per_example" in figures[0]:
        summary["mean_tokens_per_example"] = figures[0]["mean_tokens_per_example"]
    return summary


def summarise_profile(folder, top=12):
    """Share of host self-time per TensorFlow op type, from the recorded profile.

    Uses the TensorBoard profile plugin's converter (`pip install -e .[bench]`
    installs it) rather than parsing the XSpace protobuf by hand.
    """
    import glob

    try:
        from xprof.convert import raw_to_tool_data
    except ImportError:
        return "install tensorboard-plugin-profile to summarise (the trace is in the folder)"
    paths = sorted(glob.glob(os.path.join(folder, "plugins", "profile", "*", "*.xplane.pb")))
    data, _ = raw_to_tool_data.xspace_to_tool_data(paths[-1:], "framework_op_stats", {})
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    by_type = {}
    for row in table["rows"]:
        values = dict(zip(columns, [cell.get("v") if cell else None for cell in row["c"]]))
        by_type[values["type"]] = by_type.get(values["type"], 0.0) + float(values["total_self_time"] or 0)
    idle = by_type.pop("IDLE", 0.0)  # host threads waiting (input, other processes)
    total = sum(by_type.values()) or 1.0
    ranked = sorted(by_type.items(), key=lambda item: -item[1])[:top]
    shares = {name: round(100 * seconds / total, 1) for name, seconds in ranked}
    return {"percent_of_busy_op_time": shares,
            "idle_percent_of_all": round(100 * idle / (total + idle), 1)}


if __name__ == "__main__":
    main()
