"""A training process SIGKILLed mid-epoch resumes from its backup when run again."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

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
    assert sorted(os.listdir(run_dir / "backup")) == ["latest.weights.h5", "training_metadata.json"]
    with open(run_dir / "backup" / "training_metadata.json") as f:
        assert json.load(f)["epoch"] == 1
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
