"""`train`: config-driven fine-tuning into a run folder, fault-tolerant by default.

`kt.train(config)` reads and validates a config (see `ktransfer.config`),
builds the encoder and head under the configured `tf.distribute` strategy and
dtype policy, trains with `model.fit`, evaluates, and exports. Everything it
writes goes to the run folder `training.output`:

| file            | what                                                         |
|-----------------|--------------------------------------------------------------|
| `config.yaml`   | the validated config, defaults filled in, paths absolute     |
| `backup/`       | `keras.callbacks.BackupAndRestore` state while training runs |
| `logs/`         | TensorBoard logs (`tensorboard --logdir runs/sst2/logs`)     |
| `history.csv`   | one row of metrics per epoch (kept across restarts)          |
| `model.keras`   | the trained model (written to a temp file, then renamed)     |
| `metrics.json`  | validation (and test) accuracy, confusion matrix, per class  |

Fault tolerance: `BackupAndRestore` backs up weights, optimizer state and the
epoch number at the end of every epoch. Run the same command again after a
crash (or a preempted VM) and training resumes from the last backup: the
interrupted epoch is run again from its start, so the run ends with exactly
`epochs * steps_per_epoch` optimizer steps. The export and `model.keras`
are only written once training has finished, each atomically.

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
import csv
import dataclasses
import json
import os
import shutil
import tempfile

from ktransfer._keras import keras

import numpy as np
import tensorflow as tf

from ktransfer.app import config as config_lib

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
    scores, labels = [], []
    for features, label in dataset:
        scores.append(np.asarray(model(features, training=False), dtype="float32"))
        labels.append(np.asarray(label))
    scores, labels = np.concatenate(scores), np.concatenate(labels)
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


def train(
    config=None, *, overrides=None, callbacks=None, strategy=None, verbose="auto", **sections
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
        **sections: whole sections merged over `config`, e.g.
            `training={"epochs": 1}`.

    Returns:
        A `Run` (model, config, run_dir, history, metrics, export_path, steps).
        Run it again after an interruption: it resumes from the last backup.

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
    export_dir = config.export_dir
    if export_dir and os.path.exists(export_dir) and not config.export["overwrite"]:
        raise FileExistsError(
            f"{export_dir} already exists. Raise export.version, or set "
            "export.overwrite: true to replace it (checked before training)."
        )
    if strategy is None:
        strategy = _make_strategy(training)  # first: multi-worker needs a fresh runtime
    chief, worker = _role(strategy)
    run_dir = training["output"]
    work_dir = run_dir if chief else os.path.join(run_dir, ".workers", str(worker))
    os.makedirs(work_dir, exist_ok=True)
    if chief:
        config.save(os.path.join(run_dir, "config.yaml"))

    keras.utils.set_random_seed(training["seed"])
    on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    static = training["static_shapes"] if training["static_shapes"] != "auto" else on_tpu
    with _dtype_policy(training["precision"]):
        datasets = read_data(config)
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
            model(sample[0])  # build the head's variables here; BackupAndRestore needs them
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        if multi_worker or strategy.num_replicas_in_sync > 1:
            _build_from_plain_batch(model, strategy, sample)
        fit_callbacks = _callbacks(training, work_dir, callbacks)
        with _scalar_log_reduction() if multi_worker else contextlib.nullcontext():
            model.fit(
                batches["train"],
                validation_data=batches.get("validation"),
                epochs=training["epochs"],
                callbacks=fit_callbacks,
                shuffle=False,  # `prepare` shuffles (seeded, identically on every worker)
                verbose=verbose,
            )
    steps = int(np.asarray(model.optimizer.iterations.numpy()))
    metrics = {}
    multi_label = config.task["type"] == "multilabel"
    for split in ("validation", "test"):
        if split in batches:
            metrics[split] = evaluate(model, batches[split], config.class_names, multi_label)
    metrics["steps"] = steps
    metrics["steps_per_epoch"] = steps_per_epoch
    history = read_history(run_dir if chief else work_dir)
    export_path = None
    if chief:
        _atomic_write_json(os.path.join(run_dir, "metrics.json"), metrics)
        save_model(model, os.path.join(run_dir, "model.keras"))
        if export_dir:
            from ktransfer import export

            export_path = export.save(
                model, export_dir, labels=config.class_names, overwrite=config.export["overwrite"]
            )
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
    )


def require_run_files(run_dir, names):
    """The paths of `names` in `run_dir`; a clear error if one is missing."""
    paths = [os.path.join(run_dir, name) for name in names]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: {run_dir!r} is not a finished ktransfer run "
                f"(`ktransfer train CONFIG.yaml` writes {' and '.join(names)})."
            )
    return paths


def load_run(run_dir):
    """Load a finished run: `(config, model)` from its config.yaml and model.keras."""
    config_file, model_file = require_run_files(run_dir, ["config.yaml", "model.keras"])
    config = config_lib.load(config_file)
    import ktransfer  # noqa: F401  registers the ktransfer layers for loading
    from ktransfer.predict import predict

    model = keras.saving.load_model(model_file)
    predict(model, ["a"])  # builds the loaded preprocessor too (export needs it built)
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


def _callbacks(training, work_dir, extra):
    # CSVLogger before BackupAndRestore: a crash between the two repeats an
    # epoch row (read_history keeps the last) rather than losing one.
    callbacks = [keras.callbacks.CSVLogger(os.path.join(work_dir, "history.csv"), append=True)]
    if training["backup"]:
        callbacks.append(
            keras.callbacks.BackupAndRestore(
                os.path.join(work_dir, "backup"), save_freq="epoch", double_checkpoint=True
            )
        )
    if training["tensorboard"]:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(work_dir, "logs")))
    return callbacks + list(extra or [])


def read_history(run_dir):
    """`history.csv` as `{metric: [one value per epoch]}` (last row per epoch wins)."""
    path = os.path.join(run_dir, "history.csv")
    if not os.path.isfile(path):
        return {}
    rows = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("epoch", "").strip().isdigit():
                rows[int(row["epoch"])] = row
    history = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            if key == "epoch":
                continue
            try:
                history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                history.setdefault(key, []).append(float("nan"))
    history["epoch"] = sorted(rows)
    return history


def save_model(model, path):
    """`model.save(path)` into a temp file beside it, then rename: never half-written."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=folder, prefix=".model-", suffix=".keras")
    os.close(handle)
    try:
        model.save(staging)
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise
    return path


def _atomic_write_json(path, value):
    staging = f"{path}.tmp-{os.getpid()}"
    with open(staging, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
    os.replace(staging, path)


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
