"""The `ktransfer` command: train, evaluate, export, predict, report; help; errors."""

import json
import os
import subprocess
import sys

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
    for command in ("train", "evaluate", "export", "predict", "serve", "report", "assets", "demo"):
        assert command in COMMANDS and f"  {command} " in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--set KEY=VALUE" in out and "BackupAndRestore" in out
    assert "trainable: bool or int k" in out and "precision: float32 | mixed_bfloat16" in out
    for command in ("evaluate", "export", "predict", "serve", "report"):
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


def test_train_evaluate_export_predict_report(tmp_path, capsys, monkeypatch):
    preset = make_tiny_preset(tmp_path / "preset", dropout=0.0)
    project = tmp_path / "project"
    config = write_tiny_project(project, preset)
    run_dir = str(project / "runs" / "tiny")
    output = ["--set", f"training.output={run_dir}", "--set", "training.tensorboard=false"]
    assert main(["train", config, "--check", *output]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{config}: valid; training would start a new run in {run_dir}")

    assert main(["train", config, "--quiet", *output]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["run_dir"] == run_dir
    assert summary["steps"] == 24 and summary["validation_accuracy"] == 1.0
    assert "logs" not in os.listdir(run_dir)  # --set reached the run
    exported = summary["export"]
    assert exported == str(project / "saved_models" / "tiny" / "1")

    # Issue 22, defect 3: the finished run is not retrained over without --overwrite.
    for extra in (["--check"], ["--quiet"]):
        assert main(["train", config, *extra, *output]) == 2
        err = capsys.readouterr().err
        assert "holds a finished run" in err and "--overwrite" in err

    assert main(["evaluate", run_dir]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == 1.0 and metrics["confusion_matrix"] == [[4, 0], [0, 4]]
    other = tmp_path / "other.tsv"
    other.write_text("sentence\tlabel\na great film\tpos\nawful and boring\tpos\n")
    assert main(["evaluate", run_dir, "--data", str(other)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 0.5

    # Right after train (which exported version 1), export writes the next version.
    assert main(["export", run_dir]) == 0
    assert capsys.readouterr().out.strip() == str(project / "saved_models" / "tiny" / "2")
    assert main(["export", run_dir, "--version", "2"]) == 2  # exists: refused, naming CLI flags
    err = capsys.readouterr().err
    assert "already exists. Pass --overwrite to replace it, or --version 3" in err
    assert "overwrite=True" not in err

    texts = ["a great film", "awful and boring"]
    assert main(["predict", "--model", exported, *texts]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"]
    assert [line.split("\t")[2] for line in lines] == texts
    monkeypatch.chdir(project)  # one run in ./runs: no --model needed
    assert main(["predict", "--json", *texts]) == 0
    captured = capsys.readouterr()
    assert f"Using {os.path.join('.', 'runs', 'tiny')}" in captured.err
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [r["label"] for r in records] == ["pos", "neg"]
    assert records[0]["classes"] == ["neg", "pos"]
    assert sum(records[0]["probabilities"]) == pytest.approx(1.0, abs=1e-5)

    assert main(["report", run_dir]) == 0
    index = capsys.readouterr().out.strip()
    assert os.path.isfile(index) and os.path.isfile(os.path.join(run_dir, "report", "model_card.md"))
    assert main(["report", str(tmp_path)]) == 2


def test_train_exits_3_when_training_diverges(tiny_preset, tmp_path, capsys):
    """Issue 22, defect 1, from the command line: a failed run is a failed command."""
    config = write_tiny_project(tmp_path / "project", tiny_preset, validation=False, epochs=1,
                                tensorboard=False)
    code = main(["train", config, "--quiet", "--set", "training.learning_rate=1e6",
                 "--set", "training.optimizer=sgd", "--set", "training.schedule=constant"])
    assert code == 3
    err = capsys.readouterr().err
    assert "Training diverged: loss is" in err and "--set training.learning_rate=" in err
    assert not os.path.exists(tmp_path / "project" / "saved_models")


def test_check_rejects_what_the_checkpoint_cannot_do(tiny_preset, tmp_path, capsys):
    """Issue 22, item 8: `--check` passed `trainable: 100` and `sequence_length: 100000`."""
    config = write_tiny_project(tmp_path / "project", tiny_preset)
    assert main(["train", config, "--check", "--set", "encoder.trainable=100",
                 "--set", "encoder.sequence_length=100000"]) == 2
    err = capsys.readouterr().err
    assert "encoder.trainable: 100 blocks, but the checkpoint has 2 transformer blocks" in err
    assert "encoder.sequence_length: 100000 tokens, but the checkpoint has 64 positions" in err
    (tmp_path / "file.txt").write_text("x")
    assert main(["train", config, "--check", "--set",
                 f"export.path={tmp_path / 'file.txt' / 'models'}"]) == 2
    assert "file.txt is a file, not a folder" in capsys.readouterr().err


def test_find_model_picks_the_only_run_or_export(tmp_path):
    from ktransfer.app.cli import find_model

    with pytest.raises(FileNotFoundError, match="No finished run"):
        find_model(str(tmp_path))
    export = tmp_path / "saved_models" / "sst2"
    for version in ("1", "2"):
        os.makedirs(export / version)
        (export / version / "saved_model.pb").write_bytes(b"")
    assert find_model(str(tmp_path)) == str(export / "2")  # the highest version
    for name in ("a", "b"):
        os.makedirs(tmp_path / "runs" / name)
        (tmp_path / "runs" / name / "model.keras").write_bytes(b"")
        (tmp_path / "runs" / name / "status.json").write_text('{"status": "finished"}')
    with pytest.raises(FileNotFoundError, match="Several models here"):
        find_model(str(tmp_path))
    (tmp_path / "runs" / "b" / "status.json").write_text('{"status": "failed"}')
    assert find_model(str(tmp_path)) == str(tmp_path / "runs" / "a")


def test_cli_module_imports_only_the_standard_library():
    """`ktransfer --help` must not wait for TensorFlow: cli.py imports it in the commands only."""
    import ast

    import ktransfer.app.cli as cli

    with open(cli.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"argparse", "json", "os", "sys"}, imported


def test_help_answers_without_importing_tensorflow():
    """The console script (ktransfer_cli.main) lists the commands without `import ktransfer`."""
    code = (
        "import sys, ktransfer_cli\n"
        "try:\n    ktransfer_cli.main(['--help'])\nexcept SystemExit as e:\n    code = e.code\n"
        "print(code, 'ktransfer' in sys.modules, 'tensorflow' in sys.modules)"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "demo" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "0 False False", out.stdout


def test_demo_defaults_point_at_the_shipped_sample():
    from ktransfer.app.demo import build_parser

    args = build_parser().parse_args([])
    assert os.path.isfile(args.train) and os.path.isfile(args.dev)


def test_start_up_noise_is_dropped_and_everything_else_kept(capfd):
    """What TensorFlow's C++ writes to fd 2 at start-up is filtered, line by line."""
    from ktransfer.app.quiet import filtered_stderr

    with filtered_stderr():
        os.write(2, b"E0000 00:00:1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
                    b"CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
        os.write(2, b"I0000 00:00:1 port.cc:153] oneDNN custom operations are on. You may see\n")
        os.write(2, b"a real error the user must see\n")
    assert capfd.readouterr().err == "a real error the user must see\n"


def test_noise_logged_while_a_command_runs_is_dropped_as_it_comes(capfd):
    from ktransfer.app.quiet import live_filtered_stderr

    with live_filtered_stderr():
        os.write(2, b"E0000 util.cc:131] oneDNN supports DT_INT64 only on platforms with AVX-512.\n")
        os.write(2, b"Epoch 1: a warning\npartial")
        os.write(2, b" line\n")
    assert capfd.readouterr().err == "Epoch 1: a warning\npartial line\n"
