"""kt.train: run folder, learning, evaluation numbers, schedule, up-front checks."""

import json
import os

import keras
import numpy as np
import pytest
import yaml

import ktransfer as kt
from conftest import make_tiny_preset
from ktransfer.app.train import ConfigChanged
from ktransfer.app.train import RunExists
from ktransfer.app.train import TrainingDiverged
from ktransfer.app.train import evaluate
from ktransfer.app.train import load_run

POSITIVE = ["a great film", "a good movie", "it is very good", "love the acting"]
NEGATIVE = ["the plot is dull", "awful and boring", "a bad film", "hate the movie"]


def write_tiny_project(folder, preset, repeat=8, validation=True, **training):
    """A separable two-class TSV project and its config.yaml; returns the path."""
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    rows = [(t, "pos") for t in POSITIVE] + [(t, "neg") for t in NEGATIVE]
    with open(os.path.join(folder, "train.tsv"), "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows * repeat))
    with open(os.path.join(folder, "dev.tsv"), "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows))
    config = {
        "encoder": {"preset": str(preset), "sequence_length": 16, "pooling": "mean"},
        "task": {"labels": ["neg", "pos"], "dropout": 0.0},
        "data": {
            "train": os.path.join(folder, "train.tsv"),
            "validation": os.path.join(folder, "dev.tsv") if validation else None,
            "text": "sentence",
        },
        "training": {
            "epochs": 3,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "output": os.path.join(folder, "run"),
            **training,
        },
        "export": {"path": os.path.join(folder, "saved_models", "tiny")},
    }
    path = os.path.join(folder, "config.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    return path


@pytest.fixture(scope="module")
def exact_preset(tmp_path_factory):
    """The tiny BERT without dropout: runs are reproducible to the last bit."""
    return make_tiny_preset(tmp_path_factory.mktemp("exact_bert"), dropout=0.0)


def test_train_writes_a_complete_run_and_learns(exact_preset, tmp_path):
    path = write_tiny_project(tmp_path, exact_preset)
    run = kt.train(path, verbose=0)

    assert sorted(os.listdir(run.run_dir)) == [
        "config.yaml", "history.csv", "logs", "metrics.json", "misclassified.json",
        "model.keras", "provenance.json", "status.json", "steps.csv",
    ]
    assert not os.path.exists(os.path.join(run.run_dir, "backup"))  # deleted when done
    assert os.listdir(os.path.join(run.run_dir, "logs"))  # TensorBoard event files
    steps_per_epoch = 64 // 8
    assert run.steps == 3 * steps_per_epoch
    assert run.history["epoch"] == [0, 1, 2] and len(run.history["val_loss"]) == 3
    assert run.history["loss"][2] < run.history["loss"][0]
    validation = run.metrics["validation"]
    assert validation["accuracy"] == 1.0  # separable data, learnt
    assert np.array(validation["confusion_matrix"]).tolist() == [[4, 0], [0, 4]]
    with open(os.path.join(run.run_dir, "metrics.json")) as f:
        assert json.load(f)["validation"] == validation
    with open(os.path.join(run.run_dir, "status.json")) as f:
        status = json.load(f)
    assert status["status"] == "finished" and status["export"] == run.export_path
    with open(os.path.join(run.run_dir, "misclassified.json")) as f:
        assert json.load(f) == {"split": "validation", "examples": 8, "errors": 0, "shown": []}
    with open(os.path.join(run.run_dir, "provenance.json")) as f:
        provenance = json.load(f)
    assert provenance["data"]["train"]["rows_used"] == 64
    assert len(provenance["data"]["train"]["sha256"]) == 64
    assert provenance["base_checkpoint"]["path"] == exact_preset
    assert set(provenance["base_checkpoint"]["files"]) >= {"model.weights.h5", "config.json"}
    assert provenance["libraries"]["keras"] == keras.__version__

    # The saved model, the saved config and the export all agree with the run.
    config, loaded = load_run(run.run_dir)
    assert config.task["labels"] == ["neg", "pos"]
    features = run.model.layers[0].preprocessor(["a great film", "awful and boring"])
    np.testing.assert_allclose(
        loaded(features, training=False), run.model(features, training=False), atol=1e-6
    )
    assert run.export_path.endswith(os.path.join("tiny", "1"))
    with open(os.path.join(run.export_path, "assets.extra", "labels.txt")) as f:
        assert f.read().split() == ["neg", "pos"]


def test_an_existing_export_is_refused_before_training(exact_preset, tmp_path):
    path = write_tiny_project(tmp_path, exact_preset)
    os.makedirs(tmp_path / "saved_models" / "tiny" / "1")
    with pytest.raises(FileExistsError, match="export.overwrite"):
        kt.train(path, verbose=0)
    assert not os.path.exists(tmp_path / "run")  # nothing trained, nothing written


def test_invalid_config_reports_every_error_before_anything_runs(tmp_path):
    with pytest.raises(kt.config.ConfigError) as error:
        kt.train(
            encoder={"preset": "minilm", "trainable": "yes"},
            task={"num_classes": 2},
            data={"train": str(tmp_path / "missing.tsv")},
            training={"epochs": 0, "output": str(tmp_path / "run")},
        )
    assert len(error.value.errors) == 3
    assert not os.path.exists(tmp_path / "run")


class _FixedScores:
    """A stand-in model returning given scores batch by batch."""

    def __init__(self, scores):
        self.scores = iter(scores)

    def __call__(self, features, training=False):
        return next(self.scores)


def test_evaluate_numbers_match_a_hand_count():
    labels = [np.array([0, 0, 1, 1, 2]), np.array([2, 2])]
    predicted = [[0, 1, 1, 1, 0], [2, 1]]
    scores = [np.eye(3)[p] for p in predicted]
    dataset = [(None, y) for y in labels]
    result = evaluate(_FixedScores(scores), dataset, ["a", "b", "c"])
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 1, 1]]
    assert result["accuracy"] == pytest.approx(4 / 7)
    assert result["per_class"]["b"] == {
        "precision": pytest.approx(2 / 4), "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 2
    }
    assert result["per_class"]["c"]["recall"] == pytest.approx(1 / 3)
    assert result["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)


def test_jit_compile_true_trains_on_coarse_buckets(tiny_preset, tmp_path):
    """XLA compiles once per batch shape, so `jit_compile: true` keeps steps of 8 on any device."""
    from ktransfer.app.train import prepare_split

    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=32)
    texts = ["film " * n for n in (1, 3, 9, 13)]  # 3, 5, 11 and 15 tokens
    widths = {}
    for jit_compile in ("auto", True):
        path = write_tiny_project(tmp_path / str(jit_compile), tiny_preset,
                                  jit_compile=jit_compile, eval_batch_size=1)
        config = kt.config.load(path)
        batches = prepare_split(config, kt.data.from_lists(texts, [0, 1, 0, 1]),
                                encoder.preprocessor, train=False)
        widths[jit_compile] = sorted({int(f["token_ids"].shape[1]) for f, _ in batches})
    step = kt.data.default_bucket_step()
    expected_auto = sorted({-(-n // step) * step for n in (3, 5, 11, 15)})
    assert widths["auto"] == expected_auto
    assert widths[True] == [8, 16]


# --------------------------------------------------------------------------
# Issue 22: never silently worse, never lose work.
# --------------------------------------------------------------------------


def test_diverged_training_is_marked_failed_and_nothing_is_saved_or_exported(exact_preset, tmp_path):
    """Defect 1: learning_rate 1e6 used to train on, save and export a model serving NaN."""
    path = write_tiny_project(tmp_path, exact_preset, epochs=2, tensorboard=False,
                              learning_rate=1e6, optimizer="sgd", schedule="constant")
    with pytest.raises(TrainingDiverged) as caught:
        kt.train(path, verbose=0)
    message = str(caught.value)
    assert "loss is nan" in message and "marked failed" in message
    assert "training.learning_rate" in message and "--set training.learning_rate=" in message
    run_dir = tmp_path / "run"
    assert not os.path.exists(run_dir / "model.keras")
    assert not os.path.exists(tmp_path / "saved_models")  # nothing exported
    assert not os.path.exists(run_dir / "backup")
    with open(run_dir / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["status"] == "failed" and "learning_rate" in metrics["failure"]["advice"]
    assert metrics["steps"] < 8  # stopped at once, inside the first epoch
    with open(run_dir / "status.json") as f:
        assert json.load(f)["status"] == "failed"
    with pytest.raises(FileNotFoundError, match="failed run"):
        load_run(str(run_dir))

    # The fix it names works, and replaces the failed attempt without --overwrite.
    run = kt.train(path, verbose=0, overrides=["training.learning_rate=3e-3", "training.epochs=1"])
    assert run.metrics["status"] == "finished" and run.steps == 8
    assert os.path.isfile(os.path.join(run.export_path, "saved_model.pb"))


class _CrashAtEpoch(keras.callbacks.Callback):
    """Raise at the start of epoch `epoch` (0-based): a crash after `epoch` backups."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


class _CountSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


def test_a_torn_backup_falls_back_to_the_previous_one(exact_preset, tmp_path):
    """Defect 2: a truncated latest backup made the run impossible to resume."""
    path = write_tiny_project(tmp_path, exact_preset, validation=False, tensorboard=False)
    with pytest.raises(KeyboardInterrupt):
        kt.train(path, verbose=0, callbacks=[_CrashAtEpoch(2)])
    backup = tmp_path / "run" / "backup"
    assert sorted(os.listdir(backup)) == ["epoch-0001", "epoch-0002"]  # the last two
    assert sorted(os.listdir(backup / "epoch-0002")) == ["model.weights.h5", "state.json"]

    # Defect 3: resuming under a changed config is refused, naming the keys.
    with pytest.raises(ConfigChanged) as caught:
        kt.train(path, verbose=0, overrides=["training.batch_size=4"])
    assert caught.value.differences == ["training.batch_size: 8 (saved) -> 4 (now)"]
    assert "--overwrite" in str(caught.value)
    assert sorted(os.listdir(backup)) == ["epoch-0001", "epoch-0002"]  # untouched

    weights = backup / "epoch-0002" / "model.weights.h5"
    with open(weights, "r+b") as f:  # what a kill mid-write used to leave
        f.truncate(os.path.getsize(weights) // 2)
    counter = _CountSteps()
    with pytest.warns(UserWarning, match="epoch-0002 cannot be used"):
        run = kt.train(path, verbose=0, callbacks=[counter])
    assert run.resumed_from_epoch == 1  # the previous backup
    assert counter.steps == 2 * 8 and run.steps == 3 * 8  # the same total as an unbroken run
    assert run.history["epoch"] == [0, 1, 2]
    assert not os.path.exists(backup)  # removed once the model was saved


def test_no_usable_backup_names_the_folder_to_delete(exact_preset, tmp_path):
    path = write_tiny_project(tmp_path, exact_preset, validation=False, tensorboard=False,
                              epochs=2)
    with pytest.raises(KeyboardInterrupt):
        kt.train(path, verbose=0, callbacks=[_CrashAtEpoch(1)])
    backup = tmp_path / "run" / "backup"
    (backup / "epoch-0001" / "model.weights.h5").write_bytes(b"\x89HDF\r\n")  # torn first backup
    with pytest.warns(UserWarning), pytest.raises(RuntimeError) as caught:
        kt.train(path, verbose=0)
    assert f"Delete {backup} to restart the run from epoch 1" in str(caught.value)


def test_a_finished_run_is_not_overwritten_without_overwrite(exact_preset, tmp_path):
    """Defect 3: running kt.train twice retrained from scratch over the finished run."""
    path = write_tiny_project(tmp_path, exact_preset, validation=False, tensorboard=False,
                              epochs=1)
    first = kt.train(path, verbose=0, export=None)
    model_file = os.path.join(first.run_dir, "model.keras")
    stamp = os.stat(model_file).st_mtime_ns
    with pytest.raises(RunExists, match="--overwrite"):
        kt.train(path, verbose=0, export=None)
    assert os.stat(model_file).st_mtime_ns == stamp
    again = kt.train(path, verbose=0, export=None, overwrite=True)
    assert again.steps == 8 and os.stat(model_file).st_mtime_ns != stamp


def test_export_path_inside_a_file_fails_before_training(exact_preset, tmp_path):
    path = write_tiny_project(tmp_path, exact_preset)
    (tmp_path / "model.txt").write_text("not a folder")
    with pytest.raises(kt.config.ConfigError, match="model.txt is a file"):
        kt.train(path, verbose=0, export={"path": str(tmp_path / "model.txt" / "saved")})
    assert not os.path.exists(tmp_path / "run")


def test_steps_csv_logs_every_step_with_its_learning_rate(exact_preset, tmp_path):
    from ktransfer.app.train import read_steps

    path = write_tiny_project(tmp_path, exact_preset, validation=False, tensorboard=False,
                              epochs=1, schedule="linear")
    run = kt.train(path, verbose=0, export=None)
    steps = read_steps(run.run_dir)
    assert steps["step"] == list(range(1, 9)) and steps["epoch"] == [0] * 8
    rates = steps["learning_rate"]
    assert rates[0] == pytest.approx(3e-3) and rates == sorted(rates, reverse=True)
    # The per-step losses average to Keras' epoch loss.
    assert np.mean(steps["loss"]) == pytest.approx(run.history["loss"][0], rel=1e-4)
    assert steps["mean_loss"][-1] == pytest.approx(run.history["loss"][0], rel=1e-5)
