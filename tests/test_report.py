"""ktransfer report: HTML page, PNG plots and a model card from a run folder."""

import json
import os

import pytest
import yaml

from ktransfer.app.report import write_report

METRICS = {
    "validation": {
        "examples": 10,
        "accuracy": 0.7,
        "macro_f1": 0.6944,
        "confusion_matrix": [[4, 1], [2, 3]],
        "class_names": ["negative", "positive"],
        "per_class": {
            "negative": {"precision": 0.6667, "recall": 0.8, "f1": 0.7273, "support": 5},
            "positive": {"precision": 0.75, "recall": 0.6, "f1": 0.6667, "support": 5},
        },
    },
    "steps": 24,
    "steps_per_epoch": 8,
}


def _fake_run(folder):
    """The files `kt.train` leaves, written by hand (no training needed)."""
    os.makedirs(folder)
    config = {
        "encoder": {"preset": "minilm", "sequence_length": 64, "pooling": "mean", "trainable": True},
        "task": {"type": "classification", "num_classes": 2, "labels": ["negative", "positive"]},
        "data": {"train": "/data/train.tsv", "validation": "/data/dev.tsv"},
        "training": {"epochs": 3, "batch_size": 8, "optimizer": "adamw", "learning_rate": 5e-5,
                     "schedule": "slanted_triangular", "precision": "float32",
                     "strategy": "auto", "output": str(folder)},
    }
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(METRICS, f)
    # A restart repeated epoch 1: the last row of an epoch wins.
    with open(os.path.join(folder, "history.csv"), "w") as f:
        f.write("epoch,accuracy,loss,val_accuracy,val_loss\n"
                "0,0.5,0.9,0.6,0.8\n1,0.6,0.8,0.6,0.7\n1,0.65,0.7,0.65,0.66\n2,0.8,0.5,0.7,0.6\n")
    return folder


def test_report_writes_html_plots_and_model_card(tmp_path):
    run_dir = _fake_run(str(tmp_path / "run"))
    index = write_report(run_dir)
    report = os.path.dirname(index)
    assert index == os.path.join(run_dir, "report", "index.html")
    assert sorted(os.listdir(report)) == [
        "confusion_matrix.png", "curves.png", "index.html", "model_card.md", "per_class.png"
    ]
    for png in ("confusion_matrix.png", "curves.png", "per_class.png"):
        with open(os.path.join(report, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    page = open(index, encoding="utf-8").read()
    assert '<img src="confusion_matrix.png"' in page and "0.7000" in page
    card = open(os.path.join(report, "model_card.md"), encoding="utf-8").read()
    assert "| positive | 0.7500 | 0.6000 | 0.6667 | 5 |" in card
    assert "minilm" in card and "/data/dev.tsv" in card and "Optimizer steps: 24" in card
    # Writing again replaces the report and leaves no staging folders behind.
    write_report(run_dir)
    assert sorted(os.listdir(run_dir)) == ["config.yaml", "history.csv", "metrics.json", "report"]


def test_history_keeps_the_last_row_of_a_repeated_epoch(tmp_path):
    from ktransfer.app.train import read_history

    history = read_history(_fake_run(str(tmp_path / "run")))
    assert history["epoch"] == [0, 1, 2]
    assert history["loss"] == [0.9, 0.7, 0.5]


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished ktransfer run"):
        write_report(str(tmp_path))
