"""The `ktransfer` command: train, evaluate, export, predict, report; help; errors."""

import json
import os

import pytest

from conftest import make_tiny_preset
from ktransfer.app.cli import COMMANDS
from ktransfer.app.cli import main
from test_train import write_tiny_project


def test_help_lists_every_command_and_every_config_key(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "export", "predict", "report", "assets", "demo"):
        assert command in COMMANDS and f"  {command} " in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--set KEY=VALUE" in out and "BackupAndRestore" in out
    assert "trainable: bool or int k" in out and "precision: float32 | mixed_bfloat16" in out
    for command in ("evaluate", "export", "predict", "report"):
        with pytest.raises(SystemExit) as caught:
            main([command, "--help"])
        assert caught.value.code == 0 and "usage: ktransfer " + command in capsys.readouterr().out
    assert main(["assets", "list"]) == 0  # the existing commands still work
    with pytest.raises(SystemExit) as caught:
        main(["demo", "--help"])
    assert caught.value.code == 0


def test_train_rejects_a_bad_config_listing_every_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text('encoder: {preset: minilm, trainable: "yes"}\ntraining: {epochs: -1}\n')
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"Invalid config {path} (4 errors):" in err
    assert '  encoder.trainable: expected bool or int, got "yes"' in err
    assert "  training.epochs: expected a positive int, got -1" in err
    assert "  task: give num_classes or labels" in err
    assert "  data: give train (a file) or tfds" in err


def test_train_evaluate_export_predict_report(tmp_path, capsys):
    preset = make_tiny_preset(tmp_path / "preset", dropout=0.0)
    config = write_tiny_project(tmp_path / "project", preset)
    assert main(["train", config, "--check"]) == 0
    assert capsys.readouterr().out.strip() == f"{config}: valid"

    assert main(["train", config, "--quiet", "--set", "training.tensorboard=false"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run_dir = summary["run_dir"]
    assert summary["steps"] == 24 and summary["validation_accuracy"] == 1.0
    assert "logs" not in os.listdir(run_dir)  # --set reached the run
    exported = summary["export"]
    assert exported == str(tmp_path / "project" / "saved_models" / "tiny" / "1")

    assert main(["evaluate", run_dir]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == 1.0 and metrics["confusion_matrix"] == [[4, 0], [0, 4]]
    other = tmp_path / "other.tsv"
    other.write_text("sentence\tlabel\na great film\tpos\nawful and boring\tpos\n")
    assert main(["evaluate", run_dir, "--data", str(other)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 0.5

    assert main(["export", run_dir]) == 2  # version 1 exists: refused, not replaced
    assert "already exists" in capsys.readouterr().err
    assert main(["export", run_dir, "--version", "2"]) == 0
    assert capsys.readouterr().out.strip().endswith(os.path.join("tiny", "2"))

    texts = ["a great film", "awful and boring"]
    assert main(["predict", "--model", exported, *texts]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"]
    assert [line.split("\t")[2] for line in lines] == texts
    assert main(["predict", "--model", run_dir, "--json", *texts]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["label"] for r in records] == ["pos", "neg"]
    assert records[0]["classes"] == ["neg", "pos"]
    assert sum(records[0]["probabilities"]) == pytest.approx(1.0, abs=1e-5)

    assert main(["report", run_dir]) == 0
    index = capsys.readouterr().out.strip()
    assert os.path.isfile(index) and os.path.isfile(os.path.join(run_dir, "report", "model_card.md"))
    assert main(["report", str(tmp_path)]) == 2

