"""`train`: config-driven fine-tuning into a run folder, fault-tolerant by default.

`kt.train(config)` reads and validates a config (see `ktransfer.config`),
builds the encoder and head under the configured `tf.distribute` strategy and
dtype policy, trains with `model.fit`, evaluates, and exports. Everything it
writes goes to the run folder `training.output`:

| file                 | what                                                         |
|----------------------|--------------------------------------------------------------|
| `config.yaml`        | the validated config, defaults filled in, paths absolute     |
| `status.json`        | running / finished / failed (with the reason and the fix)    |
| `provenance.json`    | base checkpoint + sha256, data files + rows used, versions   |
| `backup/epoch-N/`    | weights + optimizer state of the last two epochs (while running) |
| `logs/`              | TensorBoard logs (`tensorboard --logdir runs/sst2/logs`)     |
| `history.csv`        | one row of metrics per epoch (kept across restarts)          |
| `steps.csv`          | loss and learning rate of every step                         |
| `model.keras`        | the trained model (written to a temp file, then renamed)     |
| `metrics.json`       | validation (and test) accuracy, confusion matrix, per class  |
| `misclassified.json` | the most confident mistakes on the validation data           |

Fault tolerance: `EpochBackup` backs up weights, optimizer state and the
epoch number at the end of every epoch, each backup written atomically, the
previous one kept. Run the same command again after a crash (or a preempted
VM) and training resumes from the last readable backup: the interrupted
epoch is run again from its start, so the run ends with exactly
`epochs * steps_per_epoch` optimizer steps. The export and `model.keras`
are only written once training has finished, each atomically. A rerun
under a changed config is refused (`ConfigChanged` names the keys), and so
is a rerun over a finished run (`RunExists`; `overwrite=True` replaces it).

Divergence: a NaN or infinite loss stops training at once; the run is marked
failed, nothing is saved or exported, and `TrainingDiverged` says what to
change (usually `training.learning_rate`).

Multi-worker: with `training.strategy: multiworker` every worker runs the
same command with its own `TF_CONFIG`; batches are sharded by data
(`AutoShardPolicy.DATA`, identical seeded shuffling on every worker), and only
the chief writes the run folder (the other workers keep their backups in
`<output>/.workers/<index>/`).

Example:

```python
import ktransfer as kt
run = kt.train("examples/configs/sst2_minilm.yaml", training={"epochs": 1})
run.metrics["validation"]["accuracy"], run.export_path
```
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import warnings

from ktransfer._keras import keras

import numpy as np
import tensorflow as tf

from ktransfer.app import config as config_lib
from ktransfer.app import runs
from ktransfer.app.runs import ConfigChanged  # noqa: F401  (re-exported)
from ktransfer.app.runs import RunExists  # noqa: F401
from ktransfer.app.runs import TrainingDiverged  # noqa: F401
from ktransfer.app.runs import read_history
from ktransfer.app.runs import read_steps  # noqa: F401  (re-exported)
from ktransfer.utils.files import atomic_directory
from ktransfer.utils.files import atomic_file

TPU_STEPS_PER_EXECUTION = 32


def make_optimizer(training, total_steps):
    """The optimizer and schedule of a config's `training` section."""
    from ktransfer.optimizers import FusedAdamW
    from ktransfer.schedules import SlantedTriangular

    rate = training["learning_rate"]
    if training["schedule"] == "slanted_triangular" and total_steps >= 2:
        rate = SlantedTriangular(rate, total_steps, cut_fraction=training["warmup"])
    elif training["schedule"] == "linear":
        rate = keras.optimizers.schedules.PolynomialDecay(
            rate, decay_steps=max(total_steps, 1), end_learning_rate=0.0
        )
    if training["optimizer"] == "adamw":
        return FusedAdamW(rate, weight_decay=training["weight_decay"])
    if training["optimizer"] == "adam":
        return keras.optimizers.Adam(rate)
    return keras.optimizers.SGD(rate)


# --------------------------------------------------------------------------
# Building blocks from a config.
# --------------------------------------------------------------------------


def build_model(config):
    """Build `(model, encoder, head)` from a validated `Config`.

    Call it inside `strategy.scope()` and under the dtype policy you want.
    """
    from ktransfer import encoders, heads

    encoder_cfg, task = config.encoder, config.task
    if encoder_cfg["vectors"] is not None:
        raise ValueError(
            "encoder.vectors: word-vector models are not built by kt.train yet; "
            "use encoder.preset (a BERT checkpoint) or build the model in Python."
        )
    encoder = encoders.BertEncoder.from_preset(
        encoder_cfg["preset"],
        sequence_length=encoder_cfg["sequence_length"],
        pooling=encoder_cfg["pooling"],
        trainable=encoder_cfg["trainable"],
    )
    head = heads.ClassificationHead(
        task["num_classes"],
        dropout=task["dropout"],
        multi_label=task["type"] == "multilabel",
        hidden_dims=task["hidden_dims"],
    )
    model = keras.Sequential([encoder, head], name="ktransfer_classifier")
    return model, encoder, head


def read_data(config):
    """The config's datasets as `{split: dataset}` of unbatched (text, label)."""
    from ktransfer import data as data_lib

    data, task = config.data, config.task
    text = tuple(data["text"]) if isinstance(data["text"], list) else data["text"]
    multi_label = task["type"] == "multilabel"
    class_names = config.class_names
    if data["tfds"] is not None:
        if multi_label:
            raise ValueError("data.tfds: multilabel TFDS datasets are not supported; use files.")
        splits = {"train": data["train_split"], "validation": data["validation_split"]}
        datasets = {
            name: data_lib.from_tfds(data["tfds"], split, text=text, label=data["label"],
                                     class_names=task["labels"])
            for name, split in splits.items()
        }
    else:
        datasets = {}
        for name in ("train", "validation", "test"):
            path = data[name]
            if path is None:
                continue
            datasets[name] = _read_file(path, data, text, class_names, multi_label)
    if data["limit"] is not None:
        names = datasets["train"].class_names
        datasets["train"] = datasets["train"].take(data["limit"])
        datasets["train"].class_names = names
    return datasets


def _read_file(path, data, text, class_names, multi_label):
    from ktransfer import data as data_lib

    kind = data["format"]
    if kind == "auto":
        extension = os.path.splitext(path)[1].lower().lstrip(".")
        kind = {"tsv": "tsv", "txt": "tsv", "csv": "csv", "jsonl": "jsonl", "json": "jsonl"}.get(extension)
        if kind is None:
            raise ValueError(
                f"data: cannot tell the format of {path} from its extension; "
                "set data.format to tsv, csv or jsonl."
            )
    if kind == "jsonl":
        return data_lib.from_jsonl(path, text=text, label=data["label"],
                                   class_names=class_names, multi_label=multi_label)
    options = dict(class_names=class_names, multi_label=multi_label,
                   label_separator=data["label_separator"])
    if kind == "csv":
        return data_lib.from_csv(path, text=text, label=data["label"], **options)
    return data_lib.from_tsv(path, text=text, label=data["label"], quoting=data["quoting"], **options)


# --------------------------------------------------------------------------
# Evaluation.
# --------------------------------------------------------------------------


def evaluate(model, dataset, class_names, multi_label=False, threshold=0.5):
    """Accuracy, macro F1, confusion matrix and per-class metrics on `dataset`.

    `dataset` yields `(features, labels)` batches (from `kt.data.prepare`).
    Returns a JSON-friendly dict. For multi-label models, `accuracy` is the
    exact-match ratio and the per-class numbers are per label (threshold 0.5
    on the sigmoid); there is no confusion matrix.
    """
    scores, labels = predict_split(model, dataset)
    return evaluation_metrics(scores, labels, class_names, multi_label, threshold)


def predict_split(model, dataset):
    """`(scores, labels)` over a batched `(features, labels)` dataset, in its order."""
    scores, labels = [], []
    for features, label in dataset:
        scores.append(np.asarray(model(features, training=False), dtype="float32"))
        labels.append(np.asarray(label))
    return np.concatenate(scores), np.concatenate(labels)


def evaluation_metrics(scores, labels, class_names, multi_label=False, threshold=0.5):
    """The numbers of `evaluate`, from scores and labels."""
    names = [str(name) for name in class_names]
    if multi_label:
        predicted = (1.0 / (1.0 + np.exp(-scores))) > threshold
        gold = labels > 0.5
        tp = (predicted & gold).sum(0)
        fp = (predicted & ~gold).sum(0)
        fn = (~predicted & gold).sum(0)
        per_class = _per_class(names, tp, fp, fn, gold.sum(0))
        return {
            "examples": int(len(labels)),
            "accuracy": float((predicted == gold).all(-1).mean()),
            "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
            "per_class": per_class,
            "class_names": names,
        }
    predicted = scores.argmax(-1)
    labels = labels.astype("int64").reshape(-1)
    matrix = np.zeros((len(names), len(names)), dtype="int64")
    np.add.at(matrix, (labels, predicted), 1)
    tp = np.diag(matrix)
    per_class = _per_class(names, tp, matrix.sum(0) - tp, matrix.sum(1) - tp, matrix.sum(1))
    return {
        "examples": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "class_names": names,
    }


def _per_class(names, tp, fp, fn, support):
    result = {}
    for i, name in enumerate(names):
        precision = tp[i] / (tp[i] + fp[i]) if tp[i] + fp[i] else 0.0
        recall = tp[i] / (tp[i] + fn[i]) if tp[i] + fn[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(support[i]),
        }
    return result


# --------------------------------------------------------------------------
# TPU readiness.
# --------------------------------------------------------------------------

_HOST_ONLY_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc")


def check_tpu_ready(model, dataset, check_jit=True):
    """List what would stop `model` training on `dataset` on a TPU ([] = ready).

    Checks, without a TPU: every batch shape is static (batch and sequence
    dimensions known: `kt.data.prepare(..., bucket=False,
    drop_remainder=True)`); the forward pass has no `tf.py_function` and no
    string tensors (tokenisation belongs in the tf.data pipeline); the
    forward and backward pass compile with XLA (`jit_compile=True`, what
    TPUs run); and the model was compiled with `steps_per_execution > 1`
    (one host round trip per many steps).

    ```python
    from ktransfer.app.train import check_tpu_ready
    problems = check_tpu_ready(model, batches)
    assert not problems, problems
    ```
    """
    problems = []
    spec = dataset.element_spec
    features_spec = spec[0] if isinstance(spec, tuple) else spec
    for path, item in _flatten_with_paths(spec):
        if not item.shape.is_fully_defined():
            problems.append(
                f"dataset{path} has shape {item.shape}: TPUs need static shapes; use "
                "kt.data.prepare(..., bucket=False, drop_remainder=True)"
            )
    concrete_spec = tf.nest.map_structure(
        lambda s: tf.TensorSpec([d if d is not None else 2 for d in s.shape], s.dtype),
        features_spec,
    )
    forward = tf.function(lambda features: model(features, training=False))
    graph = forward.get_concrete_function(concrete_spec).graph
    ops = _all_ops(graph)
    for op in ops:
        if op.type in _HOST_ONLY_OPS:
            problems.append(f"the model calls tf.py_function ({op.name}): it cannot run on a TPU")
    string_ops = sorted({op.type for op in ops if any(t.dtype == tf.string for t in op.outputs)})
    if string_ops:
        problems.append(
            f"the model has string ops {string_ops}: tokenise in the tf.data "
            "pipeline (kt.data.prepare), not inside the model"
        )
    if check_jit and not problems:
        problems += _check_jit(model, concrete_spec)
    steps = getattr(model, "steps_per_execution", 1)
    if model.compiled and (not isinstance(steps, int) or steps <= 1):
        problems.append(
            f"steps_per_execution is {steps}: compile with steps_per_execution=32 "
            "(or more) so the TPU runs many steps per host call"
        )
    return problems


def _check_jit(model, spec):
    features = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), spec)

    @tf.function(jit_compile=True)
    def step(features):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.cast(model(features, training=True), tf.float32) ** 2)
        gradients = tape.gradient(loss, model.trainable_variables)
        return loss, [g for g in gradients if g is not None]

    try:
        step(features)
    except Exception as error:  # noqa: BLE001  any XLA failure is the answer
        return [f"the model does not compile with jit_compile=True: {str(error)[:500]}"]
    return []


def _flatten_with_paths(spec, path=""):
    if isinstance(spec, dict):
        for key, value in spec.items():
            yield from _flatten_with_paths(value, f"{path}[{key!r}]")
    elif isinstance(spec, (tuple, list)):
        for i, value in enumerate(spec):
            yield from _flatten_with_paths(value, f"{path}[{i}]")
    else:
        yield path, spec


def _all_ops(graph):
    ops = list(graph.get_operations())
    for function in graph._functions.values():  # tf.function bodies (while/cond)
        inner = getattr(function, "graph", None)
        if inner is not None:
            ops += _all_ops(inner)
    return ops


# --------------------------------------------------------------------------
# The training entry point.
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """What `train` returns: the model and where everything was written."""

    model: object
    config: config_lib.Config
    run_dir: str
    history: dict
    metrics: dict
    export_path: str = None
    steps: int = 0  # optimizer steps taken, over all (resumed) processes
    resumed_from_epoch: int = 0  # epochs restored from a backup (0: from the start)


def train(
    config=None, *, overrides=None, callbacks=None, strategy=None, verbose="auto",
    overwrite=False, **sections
):
    """Train a model from a config into its run folder, then evaluate and export.

    Args:
        config: a YAML file path, a dict or a `ktransfer.config.Config`.
        overrides: `"section.key=value"` strings applied over `config`.
        callbacks: extra Keras callbacks passed to `model.fit`.
        strategy: a `tf.distribute.Strategy` to use instead of
            `training.strategy` (e.g. one made once at the top of a notebook;
            `MultiWorkerMirroredStrategy` must be created before any other
            TensorFlow work in the process).
        verbose: Keras `fit` verbosity ("auto": a progress bar).
        overwrite: replace a finished run (or an interrupted one started
            under another config) in `training.output`. Without it such a
            folder is refused before anything runs (`RunExists`,
            `ConfigChanged`).
        **sections: whole sections merged over `config`, e.g.
            `training={"epochs": 1}`.

    Returns:
        A `Run` (model, config, run_dir, history, metrics, export_path, steps).
        Run it again after an interruption: it resumes from the last backup.

    Raises:
        TrainingDiverged: the loss (or the weights, or the validation
            outputs) became NaN or infinite. Training stops at once, the run
            folder is marked failed (`status.json`, `metrics.json`), no model
            is saved and nothing is exported; the message says what to change.

    Example:

    ```python
    run = kt.train(
        encoder={"preset": "minilm", "pooling": "mean", "sequence_length": 64},
        task={"labels": ["negative", "positive"]},
        data={"train": "examples/data/sst2_train_sample.tsv",
              "validation": "examples/data/sst2_dev.tsv", "text": "sentence"},
        training={"epochs": 1, "output": "runs/sst2"},
        export={"path": "saved_models/sst2"},
    )
    ```
    """
    config = config_lib.load(config if config is not None else {}, overrides=sections or None)
    if overrides:
        config = config_lib.load(config, overrides=list(overrides))
    training = config.training
    run_dir = training["output"]
    plan = runs.plan_run(config, overwrite=overwrite)  # before anything is written
    export_dir = config.export_dir
    conflict = runs.export_conflict(config, plan)
    if conflict:
        raise FileExistsError(conflict)
    already_exported = bool(export_dir) and plan.action == "resume" and (
        (runs.read_status(run_dir) or {}).get("export") == export_dir
    )
    if strategy is None:
        strategy = _make_strategy(training)  # first: multi-worker needs a fresh runtime
    chief, worker = _role(strategy)
    work_dir = run_dir if chief else os.path.join(run_dir, ".workers", str(worker))
    if chief:
        if plan.action == "restart":
            runs.clear_run(run_dir)
        os.makedirs(run_dir, exist_ok=True)
        config.save(os.path.join(run_dir, "config.yaml"))
        if plan.action == "resume":
            runs.write_status(run_dir, "running", resumed=runs.now())
        else:
            runs.write_status(run_dir, "running", started=runs.now())
    elif plan.action == "restart":
        shutil.rmtree(work_dir, ignore_errors=True)  # this worker's backup of the old run
    os.makedirs(work_dir, exist_ok=True)

    keras.utils.set_random_seed(training["seed"])
    on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    static = training["static_shapes"] if training["static_shapes"] != "auto" else on_tpu
    with _dtype_policy(training["precision"]):
        datasets = read_data(config)
        if chief and plan.action != "resume":
            write_provenance(run_dir, config, datasets)
        with strategy.scope():
            model, encoder, head = build_model(config)
        batches = _prepare_all(config, datasets, encoder.preprocessor, static)
        steps_per_epoch = int(batches["train"].cardinality())
        total_steps = steps_per_epoch * training["epochs"]
        steps_per_execution = training["steps_per_execution"]
        if steps_per_execution == "auto":
            steps_per_execution = TPU_STEPS_PER_EXECUTION if on_tpu else 1
        steps_per_execution = max(1, min(steps_per_execution, steps_per_epoch))
        jit_compile = training["jit_compile"]
        sample = next(iter(batches["train"]))  # outside the scope: a plain batch
        with strategy.scope():
            model.compile(
                optimizer=make_optimizer(training, total_steps),
                loss=head.default_loss(),
                metrics=[_accuracy_metric(config)],
                steps_per_execution=steps_per_execution,
                jit_compile=jit_compile,
            )
            model(sample[0])  # build the head's variables here; the backup needs them
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        if multi_worker or strategy.num_replicas_in_sync > 1:
            _build_from_plain_batch(model, strategy, sample)
        backup_dir = os.path.join(work_dir, "backup")
        initial_epoch = 0
        if training["backup"]:
            with strategy.scope():
                initial_epoch = restore_backup(model, backup_dir, steps_per_epoch)
        for name in ("history.csv", "steps.csv"):
            _repair_csv_tail(os.path.join(work_dir, name))
        guard = StopOnDivergence()
        fit_callbacks = _callbacks(training, work_dir, callbacks, guard, steps_per_epoch)
        with _scalar_log_reduction() if multi_worker else contextlib.nullcontext():
            model.fit(
                batches["train"],
                validation_data=batches.get("validation"),
                epochs=training["epochs"],
                initial_epoch=initial_epoch,
                callbacks=fit_callbacks,
                shuffle=False,  # `prepare` shuffles (seeded, identically on every worker)
                verbose=verbose,
            )
    steps = int(np.asarray(model.optimizer.iterations.numpy()))
    failure = guard.failure or _non_finite_weights(model, steps)
    metrics = {}
    predictions = {}
    multi_label = config.task["type"] == "multilabel"
    if failure is None:
        for split in ("validation", "test"):
            if split in batches:
                scores, labels = predict_split(model, batches[split])
                if not np.isfinite(scores).all():
                    failure = {
                        "reason": f"the model's {split} outputs are NaN or infinite",
                        "step": steps,
                    }
                    break
                predictions[split] = (scores, labels)
                metrics[split] = evaluation_metrics(scores, labels, config.class_names, multi_label)
    if failure is not None:
        _fail(config, run_dir, work_dir, chief, failure, steps, steps_per_epoch)
    metrics["steps"] = steps
    metrics["steps_per_epoch"] = steps_per_epoch
    metrics["status"] = "finished"
    history = read_history(run_dir if chief else work_dir)
    export_path = None
    if chief:
        runs.write_json(os.path.join(run_dir, "metrics.json"), metrics)
        shown = "validation" if "validation" in predictions else "test"
        if shown in predictions:
            runs.write_json(
                os.path.join(run_dir, "misclassified.json"),
                misclassified(datasets[shown], *predictions[shown], config.class_names,
                              multi_label, split=shown),
            )
        save_model(model, os.path.join(run_dir, "model.keras"))
        if export_dir and already_exported:
            export_path = export_dir
        elif export_dir:
            from ktransfer import export

            export_path = export.save(
                model, export_dir, labels=config.class_names, overwrite=config.export["overwrite"]
            )
            runs.write_status(run_dir, "running", export=export_path)
        runs.write_status(run_dir, "finished", finished=runs.now(), steps=steps,
                          export=export_path)
        shutil.rmtree(backup_dir, ignore_errors=True)  # only now: the model is safe
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return Run(
        model=model,
        config=config,
        run_dir=run_dir,
        history=history,
        metrics=metrics,
        export_path=export_path,
        steps=steps,
        resumed_from_epoch=initial_epoch,
    )


def divergence_advice(training):
    """What to change in a config whose training diverged."""
    rate = training["learning_rate"]
    suggestion = min(rate / 10, 5e-5)
    tips = [
        f"lower training.learning_rate (it is {rate:g}; fine-tuning a pretrained encoder "
        f"usually works between 1e-5 and 1e-4: --set training.learning_rate={suggestion:g})"
    ]
    if training["optimizer"] == "sgd":
        tips.append("use training.optimizer: adamw")
    if training["schedule"] == "constant":
        tips.append("warm up with training.schedule: slanted_triangular")
    if training["precision"] == "mixed_float16":
        tips.append("use training.precision: mixed_bfloat16 or float32")
    return "To fix it, " + "; or ".join(tips) + "; then run the command again."


def _fail(config, run_dir, work_dir, chief, failure, steps, steps_per_epoch):
    """Mark the run failed (nothing saved, nothing exported) and raise TrainingDiverged."""
    advice = divergence_advice(config.training)
    reason = failure["reason"]
    where = f" at step {failure['step']}" if failure.get("step") else ""
    if chief:
        runs.write_json(os.path.join(run_dir, "metrics.json"), {
            "status": "failed", "failure": {**failure, "advice": advice},
            "steps": steps, "steps_per_epoch": steps_per_epoch,
        })
        runs.write_status(run_dir, "failed", reason=f"{reason}{where}", advice=advice,
                          failed=runs.now())
        shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    export_note = f" Nothing was exported to {config.export_dir}." if config.export_dir else ""
    raise runs.TrainingDiverged(
        f"Training diverged: {reason}{where}. The run in {run_dir} is marked failed "
        f"(status.json, metrics.json); no model.keras was saved.{export_note} {advice}",
        run_dir=run_dir,
        failure={**failure, "advice": advice},
    )


def _non_finite_weights(model, steps):
    for variable in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(variable))
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return {"reason": f"the weights became NaN or infinite ({variable.path})", "step": steps}
    return None


class StopOnDivergence(keras.callbacks.Callback):
    """Stop `fit` as soon as the training or validation loss is NaN or infinite.

    Like `keras.callbacks.TerminateOnNaN`, and it also watches the epoch's
    `val_loss`; `failure` says what happened (None while all is well), so
    the caller can mark the run failed instead of saving a broken model.
    """

    def __init__(self):
        super().__init__()
        self.failure = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _check(self, logs, keys, when):
        if self.failure is not None:
            return
        for key in keys:
            value = (logs or {}).get(key)
            if value is None:
                continue
            value = float(np.asarray(value))
            if not math.isfinite(value):
                self.failure = {
                    "reason": f"{key} is {value} ({when}, epoch {self._epoch + 1})",
                    "step": int(np.asarray(self.model.optimizer.iterations.numpy())),
                    "epoch": self._epoch + 1,
                }
                self.model.stop_training = True
                return

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, ("loss",), "training")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, ("loss", "val_loss"), "end of epoch")


class StepLog(keras.callbacks.Callback):
    """Append `step,epoch,loss,learning_rate` to a CSV file after every step.

    Keras reports the running mean of the loss over the epoch; the loss of
    each step (each `steps_per_execution` group of steps) is recovered from
    two successive means. Rows repeated by a resumed run are resolved by
    `read_steps` (the last row of a step wins).
    """

    FIELDS = runs.STEP_FIELDS

    def __init__(self, path):
        super().__init__()
        self.path = path
        self._file = None
        self._rate = None
        self._epoch = 0
        self._previous = (0, 0.0)  # (batches seen this epoch, their mean loss)

    def on_train_begin(self, logs=None):
        new = not os.path.isfile(self.path) or os.path.getsize(self.path) == 0
        self._file = open(self.path, "a", encoding="utf-8", newline="")
        if new:
            self._file.write(",".join(self.FIELDS) + "\n")
            self._file.flush()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._previous = (0, 0.0)

    def on_train_batch_begin(self, batch, logs=None):
        self._rate = current_learning_rate(self.model.optimizer)

    def on_train_batch_end(self, batch, logs=None):
        if self._file is None or "loss" not in (logs or {}):
            return
        mean = float(np.asarray(logs["loss"]))
        seen, previous_mean = self._previous
        count = batch + 1
        step_loss = (count * mean - seen * previous_mean) / max(count - seen, 1)
        self._previous = (count, mean)
        step = int(np.asarray(self.model.optimizer.iterations.numpy()))
        rate = "" if self._rate is None else repr(self._rate)
        self._file.write(f"{step},{self._epoch},{step_loss!r},{mean!r},{rate}\n")
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


def current_learning_rate(optimizer):
    """The learning rate the optimizer's next step uses, as a float (None if unknown)."""
    try:
        return float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate)))
    except Exception:  # noqa: BLE001  a custom optimizer without a readable rate
        return None


class EpochBackup(keras.callbacks.Callback):
    """Back the training state up at each epoch end, atomically, keeping the last two.

    Each backup is a folder `epoch-NNNN/` (`model.weights.h5`: weights and
    optimizer state; `state.json`: epoch, optimizer steps) written with
    `ktransfer.utils.atomic_directory`, so a crash mid-write leaves only a
    hidden staging folder behind and the previous backup intact. See
    `restore_backup`.
    """

    KEEP = 2

    def __init__(self, folder, steps_per_epoch, skip=None):
        super().__init__()
        self.folder = folder
        self.steps_per_epoch = steps_per_epoch
        self.skip = skip or (lambda: False)

    def on_epoch_end(self, epoch, logs=None):
        if self.skip():
            return
        state = {
            "epoch": epoch + 1,
            "steps": int(np.asarray(self.model.optimizer.iterations.numpy())),
            "steps_per_epoch": self.steps_per_epoch,
            "written": runs.now(),
        }
        target = os.path.join(self.folder, f"epoch-{epoch + 1:04d}")
        with atomic_directory(target, overwrite=True) as staging:
            self.model.save_weights(os.path.join(staging, "model.weights.h5"))
            with open(os.path.join(staging, "state.json"), "w", encoding="utf-8") as f:
                json.dump(state, f)
        for old in backup_snapshots(self.folder)[self.KEEP:]:
            shutil.rmtree(old, ignore_errors=True)


def backup_snapshots(folder):
    """The backup folders in `folder`, newest first (hidden staging folders ignored)."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        number = name[len("epoch-"):]
        if name.startswith("epoch-") and number.isdigit():
            found.append((int(number), os.path.join(folder, name)))
    return [path for _, path in sorted(found, reverse=True)]


def restore_backup(model, folder, steps_per_epoch):
    """Load the newest usable backup in `folder` into `model`; return its epoch (0: none).

    Call it inside the strategy scope, after `compile` and a first call
    (the model must be built). An unreadable backup (a truncated file, a
    disk error) is skipped with a warning and the previous one is used; if
    backups exist but none can be read, the error names the folder to
    delete to start over.
    """
    if not os.path.isdir(folder):
        return 0
    for name in os.listdir(folder):  # staging folders of a write that was killed
        if name.startswith("."):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    snapshots = backup_snapshots(folder)
    if not snapshots:
        return 0
    problems = []
    for snapshot in snapshots:
        try:
            with open(os.path.join(snapshot, "state.json"), encoding="utf-8") as f:
                state = json.load(f)
            if state.get("steps_per_epoch") != steps_per_epoch:
                raise ValueError(
                    f"it was written with {state.get('steps_per_epoch')} steps per epoch, "
                    f"the run now has {steps_per_epoch} (the training data changed)"
                )
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(os.path.join(snapshot, "model.weights.h5"))
            if int(np.asarray(model.optimizer.iterations.numpy())) != state["steps"]:
                raise ValueError("its optimizer step count does not match state.json")
        except Exception as error:  # noqa: BLE001  any unreadable backup: try the previous one
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            problems.append(f"{snapshot}: {first}")
            warnings.warn(
                f"The backup {snapshot} cannot be used ({first}); trying the previous one.",
                stacklevel=2,
            )
            continue
        return int(state["epoch"])
    listed = "\n".join(f"  {line}" for line in problems)
    raise RuntimeError(
        f"No usable backup to resume from in {folder}:\n{listed}\n"
        f"Delete {folder} to restart the run from epoch 1 (the rest of the run folder "
        "can stay), or put a readable backup back."
    )


def _repair_csv_tail(path):
    """Drop a half-written last line (a kill mid-write) so appended rows stay aligned."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        content = f.read()
        f.seek(0)
        f.truncate(content.rfind(b"\n") + 1)


def write_provenance(run_dir, config, datasets):
    """Record where the run's model and data come from (`provenance.json`)."""
    runs.write_json(os.path.join(run_dir, runs.PROVENANCE_FILE), provenance(config, datasets))


def provenance(config, datasets=None):
    """Base checkpoint (and sha256), data files (sha256, rows used), versions, date, licence."""
    import platform

    data = {}
    for split, fingerprint in runs.data_fingerprints(config).items():
        entry = dict(fingerprint)
        if datasets is not None and split in datasets:
            rows = int(datasets[split].cardinality())
            entry["rows_used"] = rows if rows >= 0 else None
        if split == "train" and config.data["limit"] is not None:
            entry["limit"] = config.data["limit"]
        data[split] = entry
    if config.data.get("tfds"):
        data["tfds"] = {"name": config.data["tfds"], "train_split": config.data["train_split"],
                        "validation_split": config.data["validation_split"],
                        "limit": config.data["limit"]}
    return {
        "created": runs.now(),
        "base_checkpoint": checkpoint_provenance(config.encoder),
        "data": data,
        "libraries": library_versions(),
        "python": platform.python_version(),
        "intended_use": intended_use(config),
    }


def library_versions():
    """Versions of ktransfer and the libraries a model depends on."""
    from importlib import metadata

    versions = {}
    for name in ("ktransfer", "tensorflow", "tensorflow-text", "keras", "keras-hub", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


_WEIGHT_FILES = (".safetensors", ".h5", ".weights.h5", ".npy")


def checkpoint_provenance(encoder):
    """The base checkpoint: name, folder, sha256 of its weight files, licence."""
    name = encoder["preset"] or encoder["vectors"]
    entry = {"preset": name, "path": None, "files": {}, "licence": None}
    folder = None
    try:
        if encoder["preset"] and os.path.isdir(encoder["preset"]):
            folder = encoder["preset"]  # the user's folder (resolve_preset may give a view of it)
        elif encoder["preset"]:
            from ktransfer.encoders.bert_presets import resolve_preset

            location, _ = resolve_preset(encoder["preset"])
            folder = location if os.path.isdir(location) else None
    except (OSError, ValueError):
        folder = None
    if folder is None:
        return entry
    entry["path"] = folder
    for file in sorted(os.listdir(folder)):
        if file.endswith(_WEIGHT_FILES) or file in ("vocab.txt", "config.json"):
            entry["files"][file] = runs.file_fingerprint(os.path.join(folder, file))["sha256"]
    entry["licence"] = _licence(folder)
    return entry


def _licence(folder):
    """The licence a checkpoint folder declares (Hugging Face model card front matter)."""
    readme = os.path.join(folder, "README.md")
    if not os.path.isfile(readme):
        return None
    with open(readme, encoding="utf-8", errors="replace") as f:
        text = f.read(20_000)
    if not text.startswith("---"):
        return None
    front = text[3:].split("\n---", 1)[0]
    for line in front.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("license", "licence") and value.strip():
            return value.strip()
    return None


def intended_use(config):
    """A plain statement of what the model is for, from the config."""
    names = ", ".join(config.class_names)
    kind = {"classification": "Classifies a text", "pair": "Classifies a pair of texts",
            "multilabel": "Tags a text with any of"}[config.task["type"]]
    source = config.data.get("train") or config.data.get("tfds")
    return (
        f"{kind} into: {names}. Trained on {source}; meant for texts like those. "
        "Measured only on the evaluation data listed here: check it on your own data before "
        "relying on it, and do not use it for decisions about people without a review."
    )


def misclassified(dataset, scores, labels, class_names, multi_label=False, split="validation",
                  limit=50, threshold=0.5):
    """The `limit` most confident mistakes on `dataset` (unbatched, in the order scored)."""
    texts = []
    for element in dataset.as_numpy_iterator():
        text = element[0]
        if isinstance(text, tuple):
            texts.append(" [SEP] ".join(_decode(t) for t in text))
        else:
            texts.append(_decode(text))
    names = [str(n) for n in class_names]
    rows = []
    if multi_label:
        probabilities = 1.0 / (1.0 + np.exp(-scores))
        predicted = probabilities > threshold
        gold = labels > 0.5
        for i in np.flatnonzero(~(predicted == gold).all(-1)):
            rows.append({
                "text": texts[i],
                "label": [names[j] for j in np.flatnonzero(gold[i])],
                "predicted": [names[j] for j in np.flatnonzero(predicted[i])],
                "confidence": float(np.abs(probabilities[i] - 0.5).max() + 0.5),
            })
    else:
        shifted = np.exp(scores - scores.max(-1, keepdims=True))
        probabilities = shifted / shifted.sum(-1, keepdims=True)
        predicted = probabilities.argmax(-1)
        labels = labels.astype("int64").reshape(-1)
        for i in np.flatnonzero(predicted != labels):
            rows.append({
                "text": texts[i],
                "label": names[labels[i]],
                "predicted": names[predicted[i]],
                "confidence": float(probabilities[i, predicted[i]]),
            })
    rows.sort(key=lambda row: -row["confidence"])
    return {"split": split, "examples": len(texts), "errors": len(rows), "shown": rows[:limit]}


def _decode(value):
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def require_run_files(run_dir, names):
    """The paths of `names` in `run_dir`; a clear error if one is missing."""
    return runs.require_finished(run_dir, names)


def load_run(run_dir):
    """Load a finished run: `(config, model)` from its config.yaml and model.keras."""
    config_file, model_file = require_run_files(run_dir, ["config.yaml", "model.keras"])
    config = config_lib.load(config_file)
    import ktransfer  # noqa: F401  registers the ktransfer layers for loading
    from ktransfer.predict import predict

    model = keras.saving.load_model(model_file)
    predict(model, ["a"], raw=True)  # builds the loaded preprocessor too (export needs it built)
    return config, model


def prepare_split(config, dataset, preprocessor, train=False, static=False):
    """Batch one split as `train` does (shuffled and sharded when `train`)."""
    from ktransfer import data as data_lib

    training = config.training
    bucket = training["bucket"] and not static
    sequence_length = getattr(preprocessor, "sequence_length", None)
    if bucket and training["jit_compile"] is True and sequence_length:
        # One XLA compilation per batch shape: the coarse buckets that
        # `prepare` picks where an accelerator is visible, on any device.
        bucket = data_lib.bucket_boundaries(
            sequence_length, step=data_lib.pipeline.COARSE_BUCKET_STEP
        )
    if train:
        return data_lib.prepare(
            dataset,
            preprocessor,
            batch_size=training["batch_size"],
            shuffle=True,
            seed=training["seed"],
            bucket=bucket,
            drop_remainder=static,
            cache=config.data["cache"],
            shard="data",
        )
    return data_lib.prepare(
        dataset,
        preprocessor,
        batch_size=training["eval_batch_size"],
        bucket=bucket,
        shard="data",
    )


def _prepare_all(config, datasets, preprocessor, static):
    return {
        name: prepare_split(config, dataset, preprocessor, train=name == "train", static=static)
        for name, dataset in datasets.items()
    }


def _accuracy_metric(config):
    if config.task["type"] == "multilabel":
        return keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def _callbacks(training, work_dir, extra, guard, steps_per_epoch):
    # The divergence guard first: it flags a NaN before the backup of that
    # epoch is written. CSVLogger before the backup: a crash between the two
    # repeats an epoch row (read_history keeps the last) rather than losing one.
    callbacks = [
        guard,
        keras.callbacks.CSVLogger(os.path.join(work_dir, "history.csv"), append=True),
        StepLog(os.path.join(work_dir, "steps.csv")),
    ]
    if training["backup"]:
        callbacks.append(
            EpochBackup(os.path.join(work_dir, "backup"), steps_per_epoch,
                        skip=lambda: guard.failure is not None)
        )
    if training["tensorboard"]:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(work_dir, "logs")))
    return callbacks + list(extra or [])


def save_model(model, path):
    """`model.save(path)` into a temp file beside it, then rename: never half-written."""
    with atomic_file(path, mode=None) as staging:
        model.save(staging)
    return path


def _build_from_plain_batch(model, strategy, batch):
    """Work around keras-team/keras#20329 (several replicas: dict or string inputs).

    Before training, Keras' TF trainer takes the first *distributed* batch and
    averages it across replicas with `strategy.reduce`, only to learn the
    input shapes for building the metrics and optimizer. The collective
    all-reduce strategy cannot reduce a dict of tensors (the BERT features),
    and no strategy can average strings (raw-text word-vector models), so
    fit fails. We build from a plain batch of the same dataset instead.
    """

    def build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=batch)

    model._maybe_symbolic_build = build


@contextlib.contextmanager
def _scalar_log_reduction():
    """Work around tensorflow/tensorflow#72388 (Keras 3 fit under multi-worker).

    Keras' TF trainer averages each step's logs over workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar loss
    and metric values ("Invalid reduction dimension 0 for input with 0
    dimensions"). While `fit` traces its step functions we reduce scalars
    with `axis=None` (a plain cross-worker mean) and leave the rest to Keras.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        def reduce(value):
            if (
                reduction in ("auto", "mean")
                and isinstance(value, tf.Tensor)
                and value.shape.rank == 0
            ):
                return strategy.reduce("MEAN", value, axis=None)
            return original(value, strategy, reduction)

        return tf.nest.map_structure(reduce, values)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original


def _make_strategy(training):
    from ktransfer.distribute import get_strategy

    return get_strategy(training["strategy"], tpu=training["tpu"])


def _role(strategy):
    """(is_chief, worker index): only the chief writes the run folder."""
    resolver = getattr(strategy, "cluster_resolver", None)
    chief = bool(getattr(strategy.extended, "should_checkpoint", True))
    worker = getattr(resolver, "task_id", 0) or 0
    return chief, worker


@contextlib.contextmanager
def _dtype_policy(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
