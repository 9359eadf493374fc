"""kt.train: run folder, learning, evaluation numbers, schedule, up-front checks."""

import json
import os

import numpy as np
import pytest
import yaml

import ktransfer as kt
from conftest import make_tiny_preset
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
        "config.yaml", "history.csv", "logs", "metrics.json", "model.keras"
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
