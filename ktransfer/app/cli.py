"""The `ktransfer` command.

```
ktransfer train CONFIG.yaml [--set training.epochs=1 ...] [--check] [--overwrite]
ktransfer evaluate RUN_DIR [--data FILE]
ktransfer export RUN_DIR [--path saved_models/NAME] [--version N] [--overwrite]
ktransfer predict [--model saved_models/NAME/1 | RUN_DIR] "a great film" "a dull film"
ktransfer serve saved_models/NAME [--port 8501]
ktransfer report RUN_DIR
ktransfer assets fetch|list|path ...
ktransfer demo
```

Exit status: 0 done; 2 a bad argument, config or folder (the message says
which and what to do; nothing was changed); 3 training diverged (the run is
marked failed, nothing saved or exported).

This module imports only the standard library at load time; each command
imports TensorFlow (quietly, see `ktransfer.app.quiet`) only when it runs.
`import ktransfer`, which importing this module implies, is eager, so the
console script starts in `ktransfer_cli.py` (outside the package), which
answers `ktransfer --help` from this file alone in a tenth of a second.
"""

import argparse
import json
import os
import sys

COMMANDS = {
    "train": "train from a YAML config into its run folder (resumes after a crash)",
    "evaluate": "evaluate a finished run on its validation data or another file",
    "export": "export a finished run as a TF Serving SavedModel (the next version)",
    "predict": "classify texts with an exported SavedModel or a run folder",
    "serve": "serve an export with TF Serving's REST API on 127.0.0.1 (local checks)",
    "report": "write an HTML report (curves, confusion matrix, mistakes, model card) of a run",
    "assets": "fetch, list and locate the pretrained assets (minilm, glove50)",
    "demo": "fine-tune MiniLM on an SST-2 sample, evaluate, export, query",
}

EXIT_USAGE = 2
EXIT_DIVERGED = 3


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
        return EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command == "assets":
        from ktransfer.assets import main as assets_main

        return assets_main(rest)
    if command == "demo":
        from ktransfer.app.demo import main as demo_main

        return demo_main(rest)
    from ktransfer.app.quiet import live_filtered_stderr

    if command == "serve":
        from ktransfer.app.serve import main as serve_main

        with live_filtered_stderr():
            return serve_main(rest)
    with live_filtered_stderr():
        return {
            "train": train_main,
            "evaluate": evaluate_main,
            "export": export_main,
            "predict": predict_main,
            "report": report_main,
        }[command](rest)


def _quiet_tensorflow():
    from ktransfer.app.quiet import quiet_tensorflow

    quiet_tensorflow()


def train_main(argv):
    from ktransfer.app import config as config_lib
    from ktransfer.app import runs

    parser = argparse.ArgumentParser(
        prog="ktransfer train",
        description=(
            "Train from a YAML config. Writes the run folder (training.output): "
            "config.yaml, status.json, history.csv, steps.csv, TensorBoard logs/, "
            "model.keras, metrics.json; then exports to export.path/export.version. "
            "The run is backed up every epoch: after a crash, run the same command "
            "again to resume (a changed config is refused, naming the keys). A run "
            "whose loss becomes NaN stops, is marked failed, and exits with status 3."
        ),
        epilog="config keys (section.key: accepted values (default)):\n" + config_lib.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="the YAML config file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.epochs=1 (repeatable)",
    )
    parser.add_argument("--check", action="store_true",
                        help="only validate the config and say what training would do")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished run (or an interrupted one under another config) "
                        "in training.output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        config = config_lib.load(args.config, overrides=args.overrides)
        plan = runs.plan_run(config, overwrite=args.overwrite)
        conflict = runs.export_conflict(config, plan)
        if conflict:
            raise FileExistsError(conflict)
    except (config_lib.ConfigError, FileNotFoundError, FileExistsError, runs.ConfigChanged) as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        print(f"{args.config}: valid; training would {_would(plan)}")
        return 0
    _quiet_tensorflow()
    from ktransfer.app.train import train

    try:
        run = train(config, verbose=0 if args.quiet else "auto", overwrite=args.overwrite)
    except runs.TrainingDiverged as error:
        print(error, file=sys.stderr)
        return EXIT_DIVERGED
    except (FileExistsError, runs.ConfigChanged) as error:  # the folder changed meanwhile
        print(error, file=sys.stderr)
        return EXIT_USAGE
    summary = {"run_dir": run.run_dir, "steps": run.steps, "export": run.export_path}
    if run.resumed_from_epoch:
        summary["resumed_from_epoch"] = run.resumed_from_epoch
    for split in ("validation", "test"):
        if split in run.metrics:
            summary[f"{split}_accuracy"] = round(run.metrics[split]["accuracy"], 4)
    print(json.dumps(summary))
    return 0


def _would(plan):
    return ("" if plan.action == "resume" else "start ") + plan.message


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
        return EXIT_USAGE
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
        return EXIT_USAGE
    preprocessor = model.layers[0].preprocessor
    batches = prepare_split(config, datasets[split], preprocessor)
    metrics = evaluate(model, batches, config.class_names, config.task["type"] == "multilabel")
    print(json.dumps(metrics))
    return 0


def versions(base):
    """The numbered version folders under an export base folder, ascending."""
    if not os.path.isdir(base):
        return []
    return sorted(int(name) for name in os.listdir(base)
                  if name.isdigit() and os.path.isdir(os.path.join(base, name)))


def export_main(argv):
    parser = argparse.ArgumentParser(
        prog="ktransfer export",
        description=(
            "Export a finished run as a TF Serving SavedModel (raw strings in). Without "
            "--version it writes the next free version (TF Serving serves the highest)."
        ),
    )
    parser.add_argument("run_dir", help="the run folder (training.output)")
    parser.add_argument("--path", help="base folder (default: the config's export.path)")
    parser.add_argument("--version", type=int,
                        help="version number (default: one above the highest there, or export.version)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --version")
    args = parser.parse_args(argv)
    if args.version is not None and args.version < 1:
        print(f"--version must be a positive int, got {args.version}.", file=sys.stderr)
        return EXIT_USAGE
    from ktransfer.app import runs

    try:
        config_file = runs.require_finished(args.run_dir, ["config.yaml", "model.keras"])[0]
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    from ktransfer.app import config as config_lib

    export_section = config_lib.load(config_file).export or {}
    base = os.path.abspath(args.path) if args.path else export_section.get("path")
    if not base:
        print("No export path in the run's config: pass --path saved_models/NAME.", file=sys.stderr)
        return EXIT_USAGE
    existing = versions(base)
    version = args.version
    if version is None:
        version = existing[-1] + 1 if existing else export_section.get("version") or 1
    path = os.path.join(base, str(version))
    if os.path.exists(path) and not args.overwrite:
        print(f"{path} already exists. Pass --overwrite to replace it, or --version "
              f"{(existing[-1] if existing else version) + 1} for a new version "
              "(or leave --version out: the next free one is used).", file=sys.stderr)
        return EXIT_USAGE
    _quiet_tensorflow()
    loaded = _load_run_or_exit(args.run_dir)
    if loaded is None:
        return EXIT_USAGE
    config, model = loaded
    from ktransfer import export

    try:
        path = export.save(model, path, labels=config.class_names, overwrite=args.overwrite)
    except FileExistsError:
        print(f"{path} appeared while exporting; pass --overwrite to replace it, or --version "
              f"{version + 1}.", file=sys.stderr)
        return EXIT_USAGE
    print(path)
    return 0


def find_model(folder="."):
    """The model `ktransfer predict` uses without --model: the one run (or export) here.

    The finished runs in `./runs/` come first; without any, the exports in
    `./saved_models/` (the highest version of the only one). Raises
    `FileNotFoundError` listing what is there when it is not exactly one.
    """
    from ktransfer.app import runs

    root = os.path.join(folder, "runs")
    finished = []
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            run_dir = os.path.join(root, name)
            status = runs.read_status(run_dir) if os.path.isdir(run_dir) else None
            if status and status.get("status") == "finished" and \
                    os.path.isfile(os.path.join(run_dir, "model.keras")):
                finished.append(run_dir)
    if len(finished) == 1:
        return finished[0]
    exports = []
    root = os.path.join(folder, "saved_models")
    if not finished and os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            found = [v for v in versions(os.path.join(root, name))
                     if os.path.isfile(os.path.join(root, name, str(v), "saved_model.pb"))]
            if found:
                exports.append(os.path.join(root, name, str(found[-1])))
        if len(exports) == 1:
            return exports[0]
    listed = finished or exports
    if listed:
        raise FileNotFoundError(
            f"Several models here ({', '.join(listed)}): pass --model with the one to use."
        )
    raise FileNotFoundError(
        "No finished run in ./runs and no export in ./saved_models: pass --model "
        "saved_models/NAME/VERSION or a run folder (or train one first: ktransfer train CONFIG.yaml)."
    )


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
        "--model",
        help="an exported SavedModel version folder (saved_models/NAME/1) or a run folder "
        "(default: the only finished run in ./runs, else the only export in ./saved_models)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)
    if args.model is None:
        try:
            args.model = find_model()
        except FileNotFoundError as error:
            print(error, file=sys.stderr)
            return EXIT_USAGE
        print(f"Using {args.model} (pass --model to choose another).", file=sys.stderr)
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
            return EXIT_USAGE
        config, model = loaded
        import numpy as np

        from ktransfer.predict import predict

        scores = predict(model, texts, raw=True)
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
            "Write RUN_DIR/report/: index.html with per-step loss and learning-rate curves, "
            "confusion matrix, per-class metrics, the most confident mistakes and the model "
            "card with provenance (PNG plots, matplotlib), and model_card.md."
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
        return EXIT_USAGE
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
