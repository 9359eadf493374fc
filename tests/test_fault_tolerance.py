"""A training process SIGKILLed mid-epoch resumes from its backup when run again."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO
from conftest import make_tiny_preset
from test_train import write_tiny_project

# Trains from a config; with a step number, stops dead (sleeps) once that many
# optimizer steps are done and tells the test, which then SIGKILLs it.
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import keras, ktransfer as kt

    config, marker, stop_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Hang(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if stop_at and int(self.model.optimizer.iterations) == stop_at:
                with open(marker, "w") as f:
                    f.write("reached")
                time.sleep(600)

    class CountSteps(keras.callbacks.Callback):
        steps = 0
        def on_train_batch_end(self, batch, logs=None):
            CountSteps.steps += 1

    run = kt.train(config, callbacks=[Hang(), CountSteps()], verbose=0)
    print("RESULT", json.dumps({"steps": run.steps, "here": CountSteps.steps,
                                "epochs": run.history["epoch"], "export": run.export_path}))
    """
)


def _start(config, marker, stop_at):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, config, marker, str(stop_at)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


def test_sigkill_mid_epoch_then_rerun_resumes_with_the_same_total_steps(tmp_path):
    preset = make_tiny_preset(tmp_path / "preset", dropout=0.0)
    config = write_tiny_project(
        tmp_path / "project", preset, validation=False, epochs=2, tensorboard=False
    )
    run_dir = tmp_path / "project" / "run"
    saved_models = tmp_path / "project" / "saved_models"
    marker = str(tmp_path / "reached")
    steps_per_epoch, epochs = 8, 2
    stop_at = steps_per_epoch + 3  # in the middle of the second epoch

    child = _start(config, marker, stop_at)
    try:
        deadline = time.time() + 240
        while not os.path.exists(marker):
            assert child.poll() is None, child.communicate()[1][-3000:]
            assert time.time() < deadline, "the child never reached the kill point"
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    # Killed mid-run: a backup of the first epoch, no model, nothing exported.
    # Written atomically: only whole backups, no staging folder left by the kill.
    assert sorted(os.listdir(run_dir / "backup")) == ["epoch-0001"]
    assert sorted(os.listdir(run_dir / "backup" / "epoch-0001")) == ["model.weights.h5", "state.json"]
    with open(run_dir / "backup" / "epoch-0001" / "state.json") as f:
        state = json.load(f)
    assert state["epoch"] == 1 and state["steps"] == steps_per_epoch
    with open(run_dir / "status.json") as f:
        assert json.load(f)["status"] == "running"  # interrupted, not finished
    assert not os.path.exists(run_dir / "model.keras")
    assert not os.path.exists(saved_models) or os.listdir(saved_models) == []

    again = _start(config, marker + ".unused", 0)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    result = json.loads(out.split("RESULT", 1)[1])
    assert result["steps"] == epochs * steps_per_epoch  # same total as an unbroken run
    assert result["here"] == (epochs - 1) * steps_per_epoch  # resumed, not restarted
    assert result["epochs"] == [0, 1]  # history.csv kept across the restart
    assert not os.path.exists(run_dir / "backup")  # removed once training finished
    export = saved_models / "tiny" / "1"
    assert result["export"] == str(export)
    assert sorted(os.listdir(saved_models / "tiny")) == ["1"]  # no staging leftovers
    assert os.path.isfile(export / "saved_model.pb")


def _dense_model():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def test_backups_are_atomic_and_a_killed_write_leaves_nothing_that_is_read(tmp_path):
    """What `kill -9` during a backup leaves (a hidden staging folder) is ignored and removed."""
    import numpy as np

    from ktransfer.app.train import EpochBackup
    from ktransfer.app.train import restore_backup

    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    model = _dense_model()
    folder = tmp_path / "backup"
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False,
              callbacks=[EpochBackup(str(folder), steps_per_epoch=2)])
    assert sorted(os.listdir(folder)) == ["epoch-0002", "epoch-0003"]  # the last two only
    staging = folder / ".epoch-0004.tmp-killed"
    os.makedirs(staging)
    (staging / "model.weights.h5").write_bytes(b"half")
    fresh = _dense_model()
    fresh(x[:1])
    assert restore_backup(fresh, str(folder), steps_per_epoch=2) == 3
    assert int(fresh.optimizer.iterations.numpy()) == 6
    np.testing.assert_array_equal(fresh.get_weights()[0], model.get_weights()[0])
    assert sorted(os.listdir(folder)) == ["epoch-0002", "epoch-0003"]  # staging removed

    # A backup of another batch size (the data changed under the same config) is refused.
    other = _dense_model()
    other(x[:1])
    with pytest.warns(UserWarning, match="steps per epoch"), \
            pytest.raises(RuntimeError, match=f"Delete {folder}"):
        restore_backup(other, str(folder), steps_per_epoch=4)


def test_a_half_written_csv_row_is_dropped_before_appending(tmp_path):
    from ktransfer.app.train import _repair_csv_tail

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,0.5\n1,0.4")  # killed mid-row
    _repair_csv_tail(str(path))
    assert path.read_text() == "epoch,loss\n0,0.5\n"


def test_resuming_after_the_data_file_changed_is_refused(tmp_path):
    """Same config, other rows in the same file: the backup would not fit the new data."""
    from ktransfer.app import config as config_lib
    from ktransfer.app import runs

    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\na great film\tpos\n")
    config = config_lib.load({
        "encoder": {"preset": "minilm"}, "task": {"labels": ["neg", "pos"]},
        "data": {"train": str(data), "text": "sentence"},
        "training": {"output": str(tmp_path / "run")},
    })
    os.makedirs(tmp_path / "run")
    config.save(tmp_path / "run" / "config.yaml")
    runs.write_json(str(tmp_path / "run" / "provenance.json"),
                    {"data": runs.data_fingerprints(config)})
    runs.write_status(str(tmp_path / "run"), "running")
    assert runs.plan_run(config).action == "resume"
    data.write_text("sentence\tlabel\na dull film\tneg\n")
    with pytest.raises(runs.ConfigChanged) as caught:
        runs.plan_run(config)
    assert caught.value.differences[0].startswith(f"data.train: {data} changed since the run started")
    assert runs.plan_run(config, overwrite=True).action == "restart"
