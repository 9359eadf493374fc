"""The `ktransfer` command.

```
ktransfer train CONFIG.yaml [--set training.epochs=1 ...] [--check]
ktransfer evaluate RUN_DIR [--data FILE]
ktransfer export RUN_DIR [--path saved_models/NAME] [--version N]
ktransfer predict --model saved_models/NAME/1 "a great film" "a dull film"
ktransfer report RUN_DIR
ktransfer assets fetch|list|path ...
ktransfer demo
```
"""

import argparse
import json
import os
import sys

COMMANDS = {
    "train": "train from a YAML config into its run folder (resumes after a crash)",
    "evaluate": "evaluate a finished run on its validation data or another file",
    "export": "export a finished run as a TF Serving SavedModel",
    "predict": "classify texts with an exported SavedModel or a run folder",
    "report": "write an HTML report (curves, confusion matrix, model card) of a run",
    "assets": "fetch, list and locate the pretrained assets (minilm, glove50)",
    "demo": "fine-tune MiniLM on an SST-2 sample, evaluate, export, query",
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(
            prog="ktransfer",
            description="Transfer learning for NLP with Keras.",
            epilog="commands:\n"
            + "\n".join(f"  {name:9s} {text}" for name, text in COMMANDS.items())
            + "\n\n`ktransfer COMMAND --help` describes each command.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("command", choices=list(COMMANDS))
        parser.parse_args(argv[:1] or ["--help"])
        return 2
    command, rest = argv[0], argv[1:]
    if command == "assets":
        from ktransfer.assets import main as assets_main

        return assets_main(rest)
    if command == "demo":
        from ktransfer.app.demo import main as demo_main

        return demo_main(rest)
    return {
        "train": train_main,
        "evaluate": evaluate_main,
        "export": export_main,
        "predict": predict_main,
        "report": report_main,
    }[command](rest)


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def train_main(argv):
    from ktransfer.app import config as config_lib

    parser = argparse.ArgumentParser(
        prog="ktransfer train",
        description=(
            "Train from a YAML config. Writes the run folder (training.output): "
            "config.yaml, history.csv, TensorBoard logs/, model.keras, metrics.json; "
            "then exports to export.path/export.version. BackupAndRestore backs the "
            "run up every epoch: after a crash, run the same command again to resume."
        ),
        epilog="config keys (section.key: accepted values (default)):\n" + config_lib.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="the YAML config file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.epochs=1 (repeatable)",
    )
    parser.add_argument("--check", action="store_true", help="only validate the config")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        config = config_lib.load(args.config, overrides=args.overrides)
    except (config_lib.ConfigError, FileNotFoundError) as error:
        print(error, file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: valid")
        return 0
    _quiet_tensorflow()
    from ktransfer.app.train import train

    run = train(config, verbose=0 if args.quiet else "auto")
    summary = {"run_dir": run.run_dir, "steps": run.steps, "export": run.export_path}
    for split in ("validation", "test"):
        if split in run.metrics:
            summary[f"{split}_accuracy"] = round(run.metrics[split]["accuracy"], 4)
    print(json.dumps(summary))
    return 0


def _load_run_or_exit(run_dir):
    from ktransfer.app.train import load_run

    try:
        return load_run(run_dir)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return None


def evaluate_main(argv):
    parser = argparse.ArgumentParser(
        prog="ktransfer evaluate",
        description="Evaluate a finished run; prints one JSON line of metrics.",
    )
    parser.add_argument("run_dir", help="the run folder (training.output)")
    parser.add_argument("--data", help="a labelled file to evaluate on (default: data.validation)")
    parser.add_argument("--split", default="validation", choices=["validation", "test", "train"])
    args = parser.parse_args(argv)
    _quiet_tensorflow()
    loaded = _load_run_or_exit(args.run_dir)
    if loaded is None:
        return 2
    config, model = loaded
    from ktransfer.app import config as config_lib
    from ktransfer.app.train import evaluate, prepare_split, read_data

    if args.data:
        config = config_lib.load(config, overrides={"data": {"validation": os.path.abspath(args.data)}})
        split = "validation"
    else:
        split = args.split
    datasets = read_data(config)
    if split not in datasets:
        print(f"The run's config has no data.{split}; pass --data FILE.", file=sys.stderr)
        return 2
    preprocessor = model.layers[0].preprocessor
    batches = prepare_split(config, datasets[split], preprocessor)
    metrics = evaluate(model, batches, config.class_names, config.task["type"] == "multilabel")
    print(json.dumps(metrics))
    return 0


def export_main(argv):
    parser = argparse.ArgumentParser(
        prog="ktransfer export",
        description="Export a finished run as a TF Serving SavedModel (raw strings in).",
    )
    parser.add_argument("run_dir", help="the run folder (training.output)")
    parser.add_argument("--path", help="base folder (default: the config's export.path)")
    parser.add_argument("--version", type=int, help="version number (default: export.version)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    args = parser.parse_args(argv)
    _quiet_tensorflow()
    loaded = _load_run_or_exit(args.run_dir)
    if loaded is None:
        return 2
    config, model = loaded
    base = args.path or (config.export or {}).get("path")
    if not base:
        print("No export path: pass --path saved_models/NAME.", file=sys.stderr)
        return 2
    version = args.version or (config.export or {}).get("version") or 1
    from ktransfer import export

    try:
        path = export.save(
            model, os.path.join(base, str(version)), labels=config.class_names,
            overwrite=args.overwrite,
        )
    except FileExistsError as error:
        print(error, file=sys.stderr)
        return 2
    print(path)
    return 0


def predict_main(argv):
    parser = argparse.ArgumentParser(
        prog="ktransfer predict",
        description=(
            "Classify texts. Prints one line per text: label, probability, text "
            "(or JSON with --json)."
        ),
    )
    parser.add_argument("texts", nargs="+", help='texts to classify ("-" reads lines from stdin)')
    parser.add_argument(
        "--model", required=True,
        help="an exported SavedModel version folder (saved_models/NAME/1) or a run folder",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)
    texts = [line.rstrip("\n") for line in sys.stdin] if args.texts == ["-"] else args.texts
    _quiet_tensorflow()
    if os.path.isfile(os.path.join(args.model, "saved_model.pb")):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  registers the tokenizer ops

        serve = tf.saved_model.load(args.model).signatures["serving_default"]
        answer = serve(text=tf.constant(texts))
        labels = [label.decode("utf-8") for label in answer["label"].numpy()]
        probabilities = answer["probabilities"].numpy()
        names = None
    else:
        loaded = _load_run_or_exit(args.model)
        if loaded is None:
            return 2
        config, model = loaded
        import numpy as np

        from ktransfer.predict import predict

        scores = predict(model, texts)
        if config.task["type"] == "multilabel":
            probabilities = 1.0 / (1.0 + np.exp(-scores))
            labels = [
                ",".join(n for n, p in zip(config.class_names, row) if p > 0.5)
                for row in probabilities
            ]
        else:
            shifted = np.exp(scores - scores.max(-1, keepdims=True))
            probabilities = shifted / shifted.sum(-1, keepdims=True)
            labels = [config.class_names[i] for i in probabilities.argmax(-1)]
        names = config.class_names
    for text, label, row in zip(texts, labels, probabilities):
        if args.json:
            record = {"text": text, "label": label, "probabilities": [float(p) for p in row]}
            if names:
                record["classes"] = names
            print(json.dumps(record))
        else:
            print(f"{label}\t{float(max(row)):.3f}\t{text}")
    return 0


def report_main(argv):
    parser = argparse.ArgumentParser(
        prog="ktransfer report",
        description=(
            "Write RUN_DIR/report/: index.html with training curves, confusion matrix "
            "and per-class metrics (PNG plots, matplotlib) and model_card.md."
        ),
    )
    parser.add_argument("run_dir", help="the run folder (training.output)")
    parser.add_argument("--output", help="report folder (default: RUN_DIR/report)")
    args = parser.parse_args(argv)
    from ktransfer.app.report import write_report

    try:
        path = write_report(args.run_dir, args.output)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
