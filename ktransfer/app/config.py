"""Training configs: load a YAML file (or a dict), validate it, fill defaults.

A config has five top-level sections:

```yaml
encoder:  {preset: minilm, sequence_length: 128, trainable: true, pooling: mean}
task:     {type: classification, num_classes: 2, labels: [negative, positive]}
data:     {train: train.tsv, validation: dev.tsv, text: sentence, label: label}
training: {epochs: 3, batch_size: 32, optimizer: adamw, learning_rate: 5e-5,
           schedule: slanted_triangular, strategy: auto, precision: float32,
           output: runs/sst2}
export:   {path: saved_models/sst2, version: 1}
```

`load` checks everything up front and reports *every* problem at once, each
with its key path (`encoder.trainable: expected bool or int, got "yes"`), so a
long run does not die on the last typo after an hour of training. Relative
file paths are read from the current directory and stored absolute, so the
copy saved in the run folder works from anywhere. `describe()` lists every key
with its default (it is the epilog of `ktransfer train --help`).

The validator is a small table of fields rather than pydantic or jsonschema:
it needs the exact YAML-flavoured messages above, numbers written as `5e-5`
(which PyYAML reads as a string), and cross-field checks (label count vs.
`num_classes`, files that exist), which those libraries would need custom
hooks for anyway; it keeps the install free of another dependency.

Example:

```python
import ktransfer as kt
config = kt.config.load({
    "encoder": {"preset": "minilm", "pooling": "mean"},
    "task": {"num_classes": 2},
    "data": {"train": "examples/data/sst2_train_sample.tsv", "text": "sentence"},
}, overrides=["training.epochs=1"])
config.training["epochs"]   # 1
```
"""

import copy
import dataclasses
import difflib
import json
import math
import numbers
import os

import yaml

SECTIONS = ("encoder", "task", "data", "training", "export")
TASK_TYPES = ("classification", "pair", "multilabel")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "linear", "slanted_triangular")
DATA_FORMATS = ("auto", "tsv", "csv", "jsonl")


class ConfigError(ValueError):
    """An invalid config; `errors` lists every problem as `key.path: message`."""

    def __init__(self, errors, source=None):
        self.errors = list(errors)
        self.source = source
        where = f" {source}" if source else ""
        count = len(self.errors)
        lines = "\n".join(f"  {error}" for error in self.errors)
        super().__init__(
            f"Invalid config{where} ({count} error{'s' if count != 1 else ''}):\n{lines}"
        )


# --------------------------------------------------------------------------
# Value checkers: each returns (value, None) or (None, "expected ..., got ...").
# --------------------------------------------------------------------------


def _show(value):
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _expected(what, value):
    return None, f"expected {what}, got {_show(value)}"


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int(minimum=None, maximum=None):
    if minimum == 1 and maximum is None:
        what = "a positive int"
    elif maximum is None:
        what = f"an int >= {minimum}"
    else:
        what = f"an int in [{minimum}, {maximum}]"

    def check(value):
        if not _is_int(value):
            return _expected(what, value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            return _expected(what, value)
        return int(value), None

    check.what = what
    return check


def _float(minimum=None, maximum=None, exclusive_minimum=False, exclusive_maximum=False):
    low = "(" if exclusive_minimum else "["
    high = ")" if exclusive_maximum else "]"
    what = "a number"
    if minimum is not None and maximum is not None:
        what = f"a number in {low}{minimum}, {maximum}{high}"
    elif minimum is not None:
        what = f"a number {'>' if exclusive_minimum else '>='} {minimum}"

    def check(value):
        if isinstance(value, str):  # PyYAML reads `5e-5` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                return _expected(what, value)
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return _expected(what, value)
        value = float(value)
        if not math.isfinite(value):  # `.nan`, `.inf`, "nan", "inf", 1e999
            return _expected(what.replace("a number", "a finite number"), value)
        if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
            return _expected(what, value)
        if maximum is not None and (value >= maximum if exclusive_maximum else value > maximum):
            return _expected(what, value)
        return value, None

    check.what = what
    return check


def _string(value):
    if not isinstance(value, str) or not value:
        return _expected("a non-empty string", value)
    return value, None


_string.what = "string"


def _boolean(value):
    if not isinstance(value, bool):
        return _expected("true or false", value)
    return value, None


_boolean.what = "bool"


def _choice(*options):
    shown = ", ".join(_show(option) for option in options)

    def check(value):
        if any(type(value) is type(option) and value == option for option in options):
            return value, None
        return _expected(f"one of {shown}", value)

    check.what = " | ".join(str(option) for option in options)
    return check


def _bool_or_int(value):
    if isinstance(value, bool) or (_is_int(value) and value >= 0):
        return value, None
    return _expected("bool or int", value)


_bool_or_int.what = "bool or int k (top k blocks)"


def _auto_or(checker, what):
    def check(value):
        if value == "auto":
            return value, None
        result, error = checker(value)
        if error:
            return _expected(f'"auto" or {what}', value)
        return result, None

    check.what = f"auto | {what}"
    return check


def _text_columns(value):
    if isinstance(value, str) and value:
        return value, None
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, str) and v for v in value)
    ):
        return list(value), None
    return _expected("a column name or a list of two column names", value)


_text_columns.what = "column | [column_a, column_b]"


def _string_list(value):
    if isinstance(value, (list, tuple)) and value and all(
        isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
    ):
        names = [str(v) for v in value]
        if len(set(names)) != len(names):
            return _expected("a list of distinct names", value)
        return names, None
    return _expected("a non-empty list of names", value)


_string_list.what = "[name, ...]"


def _int_list(value):
    if isinstance(value, (list, tuple)) and all(_is_int(v) and v > 0 for v in value):
        return [int(v) for v in value], None
    return _expected("a list of positive ints", value)


_int_list.what = "[int, ...]"


def _backup_frequency(value):
    if value == "epoch" or value is False:
        return value, None
    return _expected('"epoch" or false', value)


_backup_frequency.what = "epoch | false"


@dataclasses.dataclass(frozen=True)
class Field:
    check: object
    default: object = None
    help: str = ""
    path: bool = False  # a file or folder path: made absolute (and must exist if `exists`)
    exists: bool = False


REQUIRED = object()

SCHEMA = {
    "encoder": {
        "preset": Field(_string, None, "BERT: KerasHub preset, local folder, or asset name (minilm)"),
        "vectors": Field(_string, None, "word vectors instead of BERT: file or asset name (glove50)"),
        "sequence_length": Field(_int(2), 128, "tokens per text (truncated and padded)"),
        "trainable": Field(_bool_or_int, True, "true, false, or k: train only the top k blocks"),
        "pooling": Field(
            _choice("cls", "mean", "pooled"), "mean",
            "how token vectors become one vector (mean: right for MiniLM / sentence-transformers; "
            "cls or pooled: the original BERT recipe)",
        ),
    },
    "task": {
        "type": Field(_choice(*TASK_TYPES), "classification", "classification | pair (two text columns) | multilabel"),
        "num_classes": Field(_int(1), None, "number of classes (default: len(labels))"),
        "labels": Field(_string_list, None, "class names in index order (used by export and report)"),
        "dropout": Field(_float(0.0, 1.0, exclusive_maximum=True), 0.1, "head dropout"),
        "hidden_dims": Field(_int_list, [], "sizes of hidden layers in the head"),
    },
    "data": {
        "train": Field(_string, None, "training file (.tsv, .csv, .jsonl)", path=True, exists=True),
        "validation": Field(_string, None, "validation file", path=True, exists=True),
        "test": Field(_string, None, "test file (evaluated at the end)", path=True, exists=True),
        "tfds": Field(_string, None, "a TFDS dataset instead of files, e.g. glue/sst2"),
        "train_split": Field(_string, "train", "TFDS split for training"),
        "validation_split": Field(_string, "validation", "TFDS split for validation"),
        "text": Field(_text_columns, "text", "text column (or two, for pairs)"),
        "label": Field(_string, "label", "label column"),
        "format": Field(_choice(*DATA_FORMATS), "auto", "file format (auto: from the extension)"),
        "quoting": Field(_choice("auto", "none", "minimal"), "auto", "TSV quote handling"),
        "label_separator": Field(_string, ",", "multilabel: separator inside the label column"),
        "limit": Field(_int(1), None, "use only the first N training rows"),
        "cache": Field(_boolean, False, "keep tokenised examples in memory after epoch 1"),
    },
    "training": {
        "epochs": Field(_int(1), 3, "passes over the training data"),
        "batch_size": Field(_int(1), 32, "global batch size (split across replicas)"),
        "optimizer": Field(_choice(*OPTIMIZERS), "adamw", ""),
        "learning_rate": Field(_float(0.0, exclusive_minimum=True), 5e-5, "peak learning rate"),
        "weight_decay": Field(_float(0.0), 0.01, "AdamW weight decay"),
        "schedule": Field(_choice(*SCHEDULES), "slanted_triangular", "learning-rate schedule"),
        "warmup": Field(_float(0.0, 1.0, exclusive_maximum=True), 0.1, "fraction of steps warming up"),
        "strategy": Field(
            _choice("auto", "cpu", "default", "mirrored", "multiworker", "tpu"),
            "auto",
            "tf.distribute strategy (multiworker reads TF_CONFIG)",
        ),
        "tpu": Field(_string, None, "TPU name for strategy tpu ('' on Colab)"),
        "precision": Field(_choice(*PRECISIONS), "float32", "Keras dtype policy"),
        "output": Field(_string, None, "run folder (default: runs/<config name>)", path=True),
        "seed": Field(_int(0), 0, "random seed (weights, dropout, shuffling)"),
        "steps_per_execution": Field(_auto_or(_int(1), "a positive int"), "auto", "batches per compiled call (auto: 32 on TPU, else 1)"),
        "jit_compile": Field(_auto_or(_boolean, "true or false"), "auto", "XLA-compile the train step"),
        "static_shapes": Field(_auto_or(_boolean, "true or false"), "auto", "pad to sequence_length, drop the last short batch (auto: on TPU)"),
        "bucket": Field(_boolean, True, "trim batches to length buckets (when shapes are not static)"),
        "backup": Field(_backup_frequency, "epoch", "BackupAndRestore: back up at each epoch end, or false"),
        "tensorboard": Field(_boolean, True, "write TensorBoard logs to <output>/logs"),
        "eval_batch_size": Field(_int(1), 64, "batch size for evaluation"),
    },
    "export": {
        "path": Field(_string, None, "SavedModel base folder, e.g. saved_models/sst2", path=True),
        "version": Field(_int(1), 1, "version sub-folder (TF Serving serves the highest)"),
        "overwrite": Field(_boolean, False, "replace an existing version"),
    },
}


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated config: one dict per section, every default filled in."""

    encoder: dict
    task: dict
    data: dict
    training: dict
    export: dict  # empty when there is no export section
    source: str = None

    def to_dict(self):
        return {
            name: copy.deepcopy(getattr(self, name))
            for name in SECTIONS
            if getattr(self, name)
        }

    def to_yaml(self):
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def save(self, path):
        """Write the config as YAML (atomically: temp file, then rename)."""
        path = os.fspath(path)
        staging = f"{path}.tmp-{os.getpid()}"
        with open(staging, "w", encoding="utf-8") as f:
            f.write(self.to_yaml())
        os.replace(staging, path)
        return path

    @property
    def class_names(self):
        labels = self.task.get("labels")
        if labels:
            return list(labels)
        return [str(i) for i in range(self.task["num_classes"])]

    @property
    def export_dir(self):
        """`export.path/version`, or None without an export section."""
        if not self.export or not self.export.get("path"):
            return None
        return os.path.join(self.export["path"], str(self.export["version"]))


def load(source, overrides=None, base_dir=None):
    """Read, merge and validate a config.

    Args:
        source: a YAML file path, a dict, or a `Config`.
        overrides: a dict of sections merged over `source` (e.g.
            `{"training": {"epochs": 1}}`), or a list of `"key.path=value"`
            strings (the value is read as YAML: `training.epochs=1`).
        base_dir: folder that relative paths are read from (default: the
            current directory).

    Returns:
        A `Config`. Raises `ConfigError` listing every problem.
    """
    name = None
    if isinstance(source, Config):
        raw, name = source.to_dict(), source.source
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        raw = _read_yaml(name)
    else:
        raise TypeError(
            "A config is a YAML file path, a dict or a ktransfer.config.Config. "
            f"Received: {type(source).__name__}"
        )
    errors = []
    if overrides:
        raw = _apply_overrides(raw, overrides, errors)
    config = _validate(raw, errors, base_dir, name)
    if errors:
        raise ConfigError(errors, name)
    return config


def validate(source, overrides=None, base_dir=None):
    """Return the list of problems in a config (empty when it is valid)."""
    try:
        load(source, overrides=overrides, base_dir=base_dir)
    except ConfigError as error:
        return error.errors
    return []


def describe():
    """Every config key with its accepted values and default, as text."""
    lines = []
    for section, fields in SCHEMA.items():
        lines.append(f"{section}:")
        for key, field in fields.items():
            what = getattr(field.check, "what", "")
            default = "" if field.default is None else f" (default {_show(field.default)})"
            lines.append(f"  {key}: {what}{default}  {field.help}".rstrip())
    return "\n".join(lines)


def _read_yaml(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file {path!r} does not exist.")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise ConfigError([f"not valid YAML: {error}"], path) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"expected a mapping of sections {SECTIONS}, got {_show(raw)}"], path)
    return raw


def _apply_overrides(raw, overrides, errors):
    raw = copy.deepcopy(raw)
    if isinstance(overrides, dict):
        for section, values in overrides.items():
            if isinstance(values, dict) and isinstance(raw.get(section), dict):
                raw[section] = {**raw[section], **values}
            else:
                raw[section] = copy.deepcopy(values)
        return raw
    for item in overrides:
        key, sep, text = str(item).partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            errors.append(f"override {item!r}: expected section.key=value, e.g. training.epochs=1")
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        section = raw.setdefault(parts[0], {})
        if not isinstance(section, dict):
            errors.append(f"override {item!r}: {parts[0]} is not a mapping")
            continue
        section[parts[1]] = value
    return raw


def _suggest(name, options):
    close = difflib.get_close_matches(str(name), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _validate(raw, errors, base_dir, source):
    base_dir = os.path.abspath(base_dir or os.getcwd())
    for name in raw:
        if name not in SCHEMA:
            errors.append(
                f"{name}: unknown section{_suggest(name, SCHEMA)}; sections are {', '.join(SECTIONS)}"
            )
    sections, invalid = {}, set()
    for section, fields in SCHEMA.items():
        given = raw.get(section)
        if given is None:
            given = {}
        if not isinstance(given, dict):
            errors.append(f"{section}: expected a mapping of keys, got {_show(given)}")
            given = {}
        values = {}
        for key in given:
            if key not in fields:
                errors.append(
                    f"{section}.{key}: unknown key{_suggest(key, fields)}; "
                    f"{section} keys are {', '.join(fields)}"
                )
        for key, field in fields.items():
            if key not in given or given[key] is None:
                values[key] = copy.deepcopy(field.default)
                continue
            value, problem = field.check(given[key])
            if problem:
                errors.append(f"{section}.{key}: {problem}")
                values[key] = copy.deepcopy(field.default)
                invalid.add(f"{section}.{key}")
                continue
            if field.path:
                value = os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
                if field.exists and not os.path.exists(value):
                    errors.append(f"{section}.{key}: file not found: {given[key]} (looked for {value})")
            values[key] = value
        sections[section] = values
    _check_together(raw, sections, errors, base_dir, source, invalid)
    return Config(
        encoder=sections["encoder"],
        task=sections["task"],
        data=sections["data"],
        training=sections["training"],
        export=sections["export"] if raw.get("export") else {},
        source=source,
    )


def _check_together(raw, s, errors, base_dir, source, invalid):
    """Rules across keys; a rule is skipped when a key it reads was invalid."""
    encoder, task, data, training = s["encoder"], s["task"], s["data"], s["training"]

    def valid(*keys):
        return not invalid.intersection(keys)

    if valid("encoder.preset", "encoder.vectors") and (
        (encoder["preset"] is None) == (encoder["vectors"] is None)
    ):
        errors.append("encoder: give exactly one of preset (BERT) or vectors (word vectors)")
    preset = encoder["preset"]
    if preset and (os.sep in preset or preset.startswith(".")):
        folder = os.path.normpath(os.path.join(base_dir, os.path.expanduser(preset)))
        if not os.path.isdir(folder):
            errors.append(f"encoder.preset: folder not found: {preset} (looked for {folder})")
        encoder["preset"] = folder
    if valid("encoder.preset"):
        _check_checkpoint(encoder, errors, check_trainable=valid("encoder.trainable"),
                          check_length=valid("encoder.sequence_length"))
    labels, num_classes = task["labels"], task["num_classes"]
    if not valid("task.labels", "task.num_classes"):
        pass
    elif labels is None and num_classes is None:
        errors.append("task: give num_classes or labels (the class names, in index order)")
    elif labels is not None and num_classes is None:
        task["num_classes"] = len(labels)
    elif labels is not None and len(labels) != num_classes:
        errors.append(
            f"task.labels: {len(labels)} names but task.num_classes is {num_classes}; "
            "give one name per class"
        )
    if task["num_classes"] is not None and task["num_classes"] < 2 and task["type"] != "multilabel":
        errors.append(f"task.num_classes: expected an int >= 2 for {task['type']}, got {task['num_classes']}")
    if valid("data.text") and task["type"] == "pair" and not isinstance(data["text"], list):
        errors.append(
            f"data.text: task.type pair needs two text columns, e.g. [premise, hypothesis], got {_show(data['text'])}"
        )
    if task["type"] != "pair" and isinstance(data["text"], list):
        errors.append("data.text: two text columns need task.type: pair")
    if valid("data.train", "data.tfds") and data["tfds"] is None and data["train"] is None:
        errors.append("data: give train (a file) or tfds (a TFDS dataset name)")
    if data["tfds"] is not None and any(data[k] for k in ("train", "validation", "test")):
        errors.append("data: give either files (train/validation/test) or tfds, not both")
    if training["output"] is None:
        stem = os.path.splitext(os.path.basename(source))[0] if source else "ktransfer"
        training["output"] = os.path.join(base_dir, "runs", stem)
    if training["strategy"] == "tpu" and training["precision"] == "mixed_float16":
        errors.append("training.precision: TPUs use mixed_bfloat16, not mixed_float16")
    if "export" in raw and raw["export"] is not None and s["export"]["path"] is None:
        errors.append("export.path: required in an export section, e.g. saved_models/sst2")
    for key, folder in (("training.output", training["output"]), ("export.path", s["export"]["path"])):
        if folder and valid(key):
            problem = folder_problem(folder)
            if problem:
                errors.append(f"{key}: {problem}")


def folder_problem(folder):
    """Why `folder` cannot be created or written (None when it can).

    Checked before training, so a run does not fail at its very end: a
    path through an existing file (`model.txt/saved`), or a parent folder
    that is not writable.
    """
    current = os.path.abspath(folder)
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
    if not os.path.isdir(current):
        if current == os.path.abspath(folder):
            return f"{folder} is a file, not a folder; choose another path"
        return f"{folder} cannot be created: {current} is a file, not a folder; choose another path"
    if not os.access(current, os.W_OK | os.X_OK):
        return f"{folder} cannot be created: {current} is not writable"
    return None


def checkpoint_limits(preset):
    """`(blocks, positions, file)` of a local BERT checkpoint, read from its config.json.

    `preset` is a folder (Hugging Face or KerasHub preset) or a ktransfer asset
    name that is already fetched; anything else (a KerasHub preset name, an
    asset not fetched yet) gives None: it is checked when the encoder is built.
    """
    folder = preset
    if not os.path.isdir(folder):
        from ktransfer import assets

        if preset not in assets.ASSETS or not assets.is_cached(preset):
            return None
        folder = assets.path(preset)
    path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError):
        return None  # the build says what is wrong with the folder
    if not isinstance(raw, dict):
        return None
    if "model_type" in raw:  # Hugging Face
        blocks, positions = raw.get("num_hidden_layers"), raw.get("max_position_embeddings")
    elif isinstance(raw.get("config"), dict):  # KerasHub preset
        blocks, positions = raw["config"].get("num_layers"), raw["config"].get("max_sequence_length")
    else:
        return None
    blocks = blocks if _is_int(blocks) else None
    positions = positions if _is_int(positions) else None
    return blocks, positions, path


def _check_checkpoint(encoder, errors, check_trainable=True, check_length=True):
    preset = encoder["preset"]
    if not preset:
        return
    limits = checkpoint_limits(preset)
    if limits is None:
        return
    blocks, positions, path = limits
    trainable, length = encoder["trainable"], encoder["sequence_length"]
    if check_trainable and blocks is not None and _is_int(trainable) and trainable > blocks:
        errors.append(
            f"encoder.trainable: {trainable} blocks, but the checkpoint has {blocks} "
            f"transformer blocks ({path}); give true, false, or an int in [0, {blocks}]"
        )
    if check_length and positions is not None and length > positions:
        errors.append(
            f"encoder.sequence_length: {length} tokens, but the checkpoint has {positions} "
            f"positions ({path}); give at most {positions}"
        )
