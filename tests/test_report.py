"""ktransfer report: HTML page, PNG plots and a model card from a run folder."""

import json
import os
import re

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
    with open(os.path.join(folder, "steps.csv"), "w") as f:
        f.write("step,epoch,loss,mean_loss,learning_rate\n" + "".join(
            f"{s},{(s - 1) // 8},{1 / s},{1 / s},{5e-5 * min(s, 4) / 4}\n" for s in range(1, 25)))
    with open(os.path.join(folder, "provenance.json"), "w") as f:
        json.dump(PROVENANCE, f)
    with open(os.path.join(folder, "misclassified.json"), "w") as f:
        json.dump({"split": "validation", "examples": 10, "errors": 3, "shown": [
            {"text": "not <b>bad</b> at all", "label": "positive", "predicted": "negative",
             "confidence": 0.91}]}, f)
    return folder


PROVENANCE = {
    "created": "2026-01-02T03:04:05+00:00",
    "base_checkpoint": {"preset": "minilm", "path": "/cache/minilm", "licence": "apache-2.0",
                        "files": {"model.safetensors": "ab" * 32}},
    "data": {"train": {"path": "/data/train.tsv", "bytes": 10, "sha256": "cd" * 32,
                       "rows_used": 500, "limit": 500},
             "validation": {"path": "/data/dev.tsv", "bytes": 5, "sha256": "ef" * 32,
                            "rows_used": 10}},
    "libraries": {"ktransfer": "0.1.0", "tensorflow": "2.21.0", "keras": "3.15.1"},
    "python": "3.11.9",
    "intended_use": "Classifies a text into: negative, positive.",
}


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
    # Provenance: checkpoint + sha256, data files + rows used, versions, date, licence, use.
    assert f"`model.safetensors` sha256 `{'ab' * 32}`" in card
    assert "- train: `/data/train.tsv` (500 rows used, limit 500, sha256 `cdcdcdcdcdcdcdcd…`)" in card
    assert "tensorflow 2.21.0" in card and "2026-01-02T03:04:05+00:00" in card
    assert "apache-2.0" in card and "## Intended use\nClassifies a text into" in card

    # The card is rendered, not pasted as Markdown; each section has one title.
    assert "<pre>" not in page and "| positive |" not in page
    assert "<td>positive</td><td>0.7500</td>" in page and "<h2>Model card: run</h2>" in page
    titles = re.findall(r"<h[1-3]>(.*?)</h[1-3]>", page)
    assert len(titles) == len(set(titles)), titles
    assert "Model card" not in " ".join(t for t in titles if not t.startswith("Model card:"))
    # The most confident mistakes, escaped.
    assert "<h2>Misclassified examples</h2>" in page and "3 of 10 validation examples" in page
    assert "not &lt;b&gt;bad&lt;/b&gt; at all" in page
    # Writing again replaces the report and leaves no staging folders behind.
    write_report(run_dir)
    assert sorted(os.listdir(run_dir)) == [
        "config.yaml", "history.csv", "metrics.json", "misclassified.json", "provenance.json",
        "report", "steps.csv"]


def test_curves_show_every_step_and_the_learning_rate(tmp_path, monkeypatch):
    """Issue 22: a 1-epoch run plotted two dots; now loss and learning rate per step."""
    import matplotlib.axes

    run_dir = _fake_run(str(tmp_path / "run"))
    plotted = []
    original = matplotlib.axes.Axes.plot

    def record(axis, *args, **kwargs):
        plotted.append((axis.get_title(), list(args[0]), kwargs.get("label")))
        return original(axis, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    write_report(run_dir)
    steps = list(range(1, 25))
    assert ("", steps, "training (each step)") in plotted  # titles are set after plotting
    assert ("", [8, 16, 24], "validation (epoch end)") in plotted
    assert sum(1 for _, x, label in plotted if x == steps and label is None) == 1  # learning rate


def test_report_of_a_failed_run_says_why(tmp_path):
    run_dir = _fake_run(str(tmp_path / "run"))
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump({"status": "failed", "steps": 3, "steps_per_epoch": 8, "failure": {
            "reason": "loss is nan", "advice": "Lower training.learning_rate."}}, f)
    page = open(write_report(run_dir), encoding="utf-8").read()
    assert "<b>Training failed</b>: loss is nan. Lower training.learning_rate." in page


def test_history_keeps_the_last_row_of_a_repeated_epoch(tmp_path):
    from ktransfer.app.train import read_history

    history = read_history(_fake_run(str(tmp_path / "run")))
    assert history["epoch"] == [0, 1, 2]
    assert history["loss"] == [0.9, 0.7, 0.5]


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished ktransfer run"):
        write_report(str(tmp_path))
