"""The run folder's state: new, interrupted (resume), finished or failed.

`kt.train` keeps `status.json` in its run folder (`training.output`):
`{"status": "running" | "finished" | "failed", ...}`. Before anything runs,
`plan_run(config)` decides what a new call may do with the folder, without
touching it (so `ktransfer train --check` can say it too):

- nothing there (or only a failed attempt): start a new run;
- an interrupted run (`status: running`): resume from its backup, but only
  under the same config and the same data files; otherwise `ConfigChanged`
  lists the keys (and files) that differ;
- a finished run: `RunExists`, unless `overwrite=True` (`--overwrite`).

This module imports no TensorFlow, so the CLI's checks stay fast.

```python
from ktransfer.app import config as config_lib, runs
config = config_lib.load({"encoder": {"preset": "minilm"}, "task": {"num_classes": 2},
                          "data": {"train": "examples/data/sst2_dev.tsv", "text": "sentence"},
                          "training": {"output": "runs/doc_example"}})
runs.plan_run(config).action   # "new": nothing in runs/doc_example yet
```
"""

import csv
import dataclasses
import datetime
import hashlib
import json
import math
import os
import shutil

from ktransfer.utils.files import atomic_file

STATUS_FILE = "status.json"
PROVENANCE_FILE = "provenance.json"

# What a run writes; `clear_run` removes these (and nothing else) before a new run.
RUN_FILES = (
    "config.yaml", "status.json", "provenance.json", "history.csv", "steps.csv",
    "metrics.json", "misclassified.json", "model.keras", "backup", "logs", "report",
)  # not `.workers/`: each worker clears its own folder there

# Keys that may change when an interrupted run is resumed: they do not touch
# what has been trained so far.
RESUME_SAFE_KEYS = ("training.tensorboard", "training.eval_batch_size", "data.test")
RESUME_SAFE_SECTIONS = ("export",)


class RunExists(FileExistsError):
    """`training.output` holds a finished run and `overwrite` was not given."""


class ConfigChanged(ValueError):
    """An interrupted run would resume under a different config or data."""

    def __init__(self, message, differences):
        super().__init__(message)
        self.differences = list(differences)


class TrainingDiverged(RuntimeError):
    """Training reached a non-finite loss; the run is marked failed, nothing saved."""

    def __init__(self, message, run_dir=None, failure=None):
        super().__init__(message)
        self.run_dir = run_dir
        self.failure = dict(failure or {})


@dataclasses.dataclass(frozen=True)
class Plan:
    """What `kt.train` will do with a run folder.

    `action`: `"new"` (empty folder), `"restart"` (files of an earlier run are
    cleared first: a failed run, or `overwrite=True`), or `"resume"`.
    """

    action: str
    run_dir: str
    message: str


def now():
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def read_json(path):
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path, value):
    """Write `value` as JSON atomically (temp file, then rename)."""
    with atomic_file(path) as f:
        json.dump(value, f, indent=2)
    return path


def read_status(run_dir):
    """The run folder's `status.json` as a dict (None if there is none).

    Runs written before `status.json` existed count as finished when they
    hold `model.keras` and `metrics.json`.
    """
    status = read_json(os.path.join(run_dir, STATUS_FILE))
    if isinstance(status, dict) and status.get("status"):
        return status
    if all(os.path.isfile(os.path.join(run_dir, name)) for name in ("model.keras", "metrics.json")):
        return {"status": "finished"}
    if os.path.isfile(os.path.join(run_dir, "config.yaml")):
        return {"status": "running"}
    return None


def write_status(run_dir, status, **fields):
    """Record the run's state (`running`, `finished`, `failed`) with `fields`."""
    previous = read_json(os.path.join(run_dir, STATUS_FILE)) or {}
    value = {**previous, **fields, "status": status, "updated": now()}
    return write_json(os.path.join(run_dir, STATUS_FILE), value)


def file_fingerprint(path, chunk=1 << 20):
    """`{"path", "bytes", "sha256"}` of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return {"path": path, "bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def data_fingerprints(config):
    """Fingerprints of the config's data files, by split."""
    return {
        split: file_fingerprint(config.data[split])
        for split in ("train", "validation", "test")
        if config.data.get(split) and os.path.isfile(config.data[split])
    }


def _flatten(config_dict):
    flat = {}
    for section, values in config_dict.items():
        for key, value in (values or {}).items():
            flat[f"{section}.{key}"] = value
    return flat


def config_differences(saved, current, ignore=RESUME_SAFE_KEYS, ignore_sections=RESUME_SAFE_SECTIONS):
    """`["key: saved -> now", ...]` for the keys that differ between two configs."""
    old, new = _flatten(saved.to_dict()), _flatten(current.to_dict())
    lines = []
    for key in sorted(set(old) | set(new)):
        if key in ignore or key.split(".")[0] in ignore_sections:
            continue
        if old.get(key) != new.get(key):
            lines.append(f"{key}: {json.dumps(old.get(key))} (saved) -> {json.dumps(new.get(key))} (now)")
    return lines


def plan_run(config, overwrite=False):
    """Decide what `kt.train(config)` may do with its run folder (writes nothing).

    Returns a `Plan`; raises `RunExists` (finished run, no `overwrite`) or
    `ConfigChanged` (an interrupted run under another config or data, no
    `overwrite`).
    """
    from ktransfer.app import config as config_lib

    run_dir = config.training["output"]
    status = read_status(run_dir) if os.path.isdir(run_dir) else None
    if status is None:
        return Plan("new", run_dir, f"a new run in {run_dir}")
    state = status["status"]
    if state == "failed":
        return Plan("restart", run_dir,
                    f"a new run in {run_dir} (replacing a failed attempt: {status.get('reason', 'failed')})")
    if state == "finished":
        if overwrite:
            return Plan("restart", run_dir, f"a new run in {run_dir}, replacing the finished run there")
        export = status.get("export")
        kept = (
            f" Its export {export} is kept: raise export.version or set export.overwrite "
            "to replace that too."
            if export else ""
        )
        raise RunExists(
            f"{run_dir} holds a finished run (model.keras, metrics.json"
            f"{', finished ' + status['updated'] if status.get('updated') else ''}). "
            "Train again and replace it with `ktransfer train ... --overwrite` "
            "(kt.train(..., overwrite=True)), or set training.output to a new folder "
            f"(--set training.output=runs/NEW).{kept}"
        )
    differences = []
    saved_file = os.path.join(run_dir, "config.yaml")
    try:
        saved = config_lib.load(saved_file)
    except (config_lib.ConfigError, OSError) as error:
        differences.append(f"config.yaml: cannot be read back ({str(error).splitlines()[0]})")
    else:
        differences += config_differences(saved, config)
    provenance = read_json(os.path.join(run_dir, PROVENANCE_FILE)) or {}
    recorded = provenance.get("data") or {}
    for split, now_print in data_fingerprints(config).items():
        if split == "test":  # evaluated at the end only: changing it is harmless
            continue
        before = recorded.get(split)
        if before and before.get("sha256") and before.get("path") == now_print["path"] \
                and before["sha256"] != now_print["sha256"]:
            differences.append(
                f"data.{split}: {now_print['path']} changed since the run started "
                f"(sha256 {before['sha256'][:12]}... -> {now_print['sha256'][:12]}...)"
            )
    if not differences:
        return Plan("resume", run_dir, f"resume the interrupted run in {run_dir} from its last backup")
    if overwrite:
        return Plan("restart", run_dir,
                    f"a new run in {run_dir}, discarding the interrupted run there")
    listed = "\n".join(f"  {line}" for line in differences)
    raise ConfigChanged(
        f"{run_dir} holds an interrupted run that was started with a different config or "
        f"data; resuming it now would mix the two:\n{listed}\n"
        "Run again with the saved settings to resume it (drop the --set that changed them), "
        "pass --overwrite (kt.train(..., overwrite=True)) to discard it and start over, or "
        "set training.output to a new folder.",
        differences,
    )


def export_conflict(config, plan):
    """Why the config's export version cannot be written (None when it can).

    An existing version is refused before training unless `export.overwrite`;
    a resumed run that already wrote it (recorded in `status.json`) is fine.
    """
    export_dir = config.export_dir
    if not export_dir or not os.path.exists(export_dir) or config.export["overwrite"]:
        return None
    if plan.action == "resume" and (read_status(plan.run_dir) or {}).get("export") == export_dir:
        return None
    return (
        f"{export_dir} already exists (checked before training). Export to a new "
        "version (export.version; --set export.version=N), or replace it with "
        "export.overwrite: true (--set export.overwrite=true)."
    )


def clear_run(run_dir):
    """Remove what an earlier run wrote to `run_dir` (only ktransfer's own files)."""
    for name in RUN_FILES:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


def require_finished(run_dir, names):
    """The paths of `names` in a finished run; a clear error otherwise."""
    paths = [os.path.join(run_dir, name) for name in names]
    missing = [path for path in paths if not os.path.isfile(path)]
    if not missing:
        return paths
    status = read_status(run_dir) if os.path.isdir(run_dir) else None
    if status and status.get("status") == "failed":
        raise FileNotFoundError(
            f"{run_dir} is a failed run ({status.get('reason', 'training failed')}); it "
            f"saved no model. {status.get('advice', '')}".rstrip()
        )
    if status and status.get("status") == "running":
        raise FileNotFoundError(
            f"{missing[0]} not found: the run in {run_dir!r} has not finished (interrupted?). "
            "Run the same `ktransfer train` command again to resume it."
        )
    raise FileNotFoundError(
        f"{missing[0]} not found: {run_dir!r} is not a finished ktransfer run "
        f"(`ktransfer train CONFIG.yaml` writes {' and '.join(names)})."
    )


STEP_FIELDS = ("step", "epoch", "loss", "mean_loss", "learning_rate")


def read_history(run_dir):
    """`history.csv` as `{metric: [one value per epoch]}` (last row per epoch wins)."""
    path = os.path.join(run_dir, "history.csv")
    if not os.path.isfile(path):
        return {}
    rows = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if (row.get("epoch") or "").strip().isdigit():
                rows[int(row["epoch"])] = row
    history = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            if key == "epoch" or key is None:
                continue
            try:
                history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                history.setdefault(key, []).append(float("nan"))
    history["epoch"] = sorted(rows)
    return history


def read_steps(run_dir):
    """`steps.csv` as `{column: [values]}`, one entry per step (last row wins)."""
    path = os.path.join(run_dir, "steps.csv")
    if not os.path.isfile(path):
        return {}
    rows = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if (row.get("step") or "").strip().isdigit():
                rows[int(row["step"])] = row
    table = {}
    for step in sorted(rows):
        for key in STEP_FIELDS:
            value = rows[step].get(key)
            try:
                table.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                table.setdefault(key, []).append(float("nan"))
    if "step" in table:
        table["step"] = [int(s) for s in table["step"]]
        table["epoch"] = [int(e) if math.isfinite(e) else 0 for e in table["epoch"]]
    return table
