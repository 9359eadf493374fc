"""kt.config: load, defaults, every error at once with its key path, overrides."""

import os

import pytest

import ktransfer as kt
from conftest import REPO
from ktransfer.app.config import ConfigError

EXAMPLE = os.path.join(REPO, "examples", "configs", "sst2_minilm.yaml")


def _write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_the_shipped_example_is_valid_from_the_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)
    config = kt.config.load(EXAMPLE)
    assert config.training["learning_rate"] == 5e-5  # YAML reads `5e-5` as a string
    assert config.data["train"] == os.path.join(REPO, "examples", "data", "sst2_train_sample.tsv")
    assert config.training["output"] == os.path.join(REPO, "runs", "sst2_minilm")
    assert config.export_dir == os.path.join(REPO, "saved_models", "sst2_minilm", "1")
    assert config.class_names == ["negative", "positive"]
    assert config.training["backup"] == "epoch" and config.training["tensorboard"] is True


def test_every_error_is_reported_at_once_with_its_key_path(tmp_path):
    path = _write(tmp_path, """
encoder: {preset: minilm, trainable: "yes", pooling: max, sequence_lenght: 64}
task: {num_classes: 3, labels: [a, b]}
data: {train: missing.tsv, text: [a, b, c]}
training: {epochs: 0, learning_rate: fast, precision: float16, strategy: gpus}
exports: {path: saved_models/x}
""")
    with pytest.raises(ConfigError) as caught:
        kt.config.load(path, base_dir=str(tmp_path))
    errors = caught.value.errors
    assert 'encoder.trainable: expected bool or int, got "yes"' in errors
    assert 'encoder.pooling: expected one of "cls", "mean", "pooled", got "max"' in errors
    assert any(e.startswith("encoder.sequence_lenght: unknown key (did you mean 'sequence_length'?)")
               for e in errors)
    assert "task.labels: 2 names but task.num_classes is 3; give one name per class" in errors
    assert any(e.startswith("data.train: file not found: missing.tsv") for e in errors)
    assert any(e.startswith("data.text: expected a column name or a list of two") for e in errors)
    assert "training.epochs: expected a positive int, got 0" in errors
    assert 'training.learning_rate: expected a number > 0.0, got "fast"' in errors
    assert any(e.startswith('training.precision: expected one of "float32"') for e in errors)
    assert any(e.startswith('training.strategy: expected one of "auto"') for e in errors)
    assert any(e.startswith("exports: unknown section (did you mean 'export'?)") for e in errors)
    assert len(errors) == 11
    message = str(caught.value)
    assert message.startswith(f"Invalid config {path} (11 errors):")


def test_bools_are_not_ints_and_ints_are_not_bools(tmp_path):
    base = {"encoder": {"preset": "minilm"}, "task": {"num_classes": 2},
            "data": {"train": __file__}}
    config = kt.config.load({**base, "encoder": {"preset": "minilm", "trainable": 2}})
    assert config.encoder["trainable"] == 2
    errors = kt.config.validate({**base, "training": {"epochs": True, "tensorboard": 1}})
    assert errors == [
        "training.epochs: expected a positive int, got true",
        "training.tensorboard: expected true or false, got 1",
    ]


def test_cross_field_rules():
    errors = kt.config.validate({"encoder": {"preset": "minilm", "vectors": "glove50"},
                                 "task": {"type": "pair"}, "data": {"text": "sentence"}})
    assert errors == [
        "encoder: give exactly one of preset (BERT) or vectors (word vectors)",
        "task: give num_classes or labels (the class names, in index order)",
        'data.text: task.type pair needs two text columns, e.g. [premise, hypothesis], got "sentence"',
        "data: give train (a file) or tfds (a TFDS dataset name)",
    ]


def test_overrides_as_dotted_strings_and_as_sections(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = kt.config.load(EXAMPLE, overrides=["training.epochs=4", "encoder.trainable=false",
                                                "training.learning_rate=1e-4"])
    assert config.training["epochs"] == 4 and config.encoder["trainable"] is False
    assert config.training["learning_rate"] == 1e-4
    config = kt.config.load(config, overrides={"training": {"batch_size": 16}, "export": None})
    assert config.training["batch_size"] == 16 and config.training["epochs"] == 4
    assert config.export_dir is None
    with pytest.raises(ConfigError, match="expected section.key=value"):
        kt.config.load(EXAMPLE, overrides=["epochs=4"])


def test_saved_config_loads_back_identically(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = kt.config.load(EXAMPLE)
    saved = config.save(tmp_path / "config.yaml")
    monkeypatch.chdir(tmp_path)  # absolute paths: works from anywhere
    again = kt.config.load(saved)
    assert again.to_dict() == config.to_dict()


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        kt.config.load(_write(tmp_path, "encoder: [unclosed"))
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        kt.config.load(_write(tmp_path, "- a list"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        kt.config.load(str(tmp_path / "nope.yaml"))


def test_describe_lists_every_key_with_its_default():
    text = kt.config.describe()
    for section, fields in kt.config.SCHEMA.items():
        assert f"{section}:" in text
        for key in fields:
            assert f"  {key}: " in text
    assert "precision: float32 | mixed_bfloat16 | mixed_float16" in text


@pytest.mark.parametrize("rate", [".nan", ".inf", "-.inf", "nan", "inf", "1e999", "0", "-1e-5"])
def test_learning_rate_must_be_a_finite_positive_number(tmp_path, rate):
    """Issue 22, defect 1: `learning_rate: nan` / `inf` passed the check."""
    base = {"encoder": {"preset": "minilm"}, "task": {"num_classes": 2},
            "data": {"train": __file__}}
    errors = kt.config.validate(base, overrides=[f"training.learning_rate={rate}"])
    assert len(errors) == 1 and errors[0].startswith("training.learning_rate: expected a ")
    assert "number > 0.0" in errors[0]
    if rate not in ("0", "-1e-5"):
        assert "finite" in errors[0]


def _hf_folder(folder, layers=6, positions=512):
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(f'{{"model_type": "bert", "num_hidden_layers": {layers}, '
                f'"max_position_embeddings": {positions}}}')
    return str(folder)


def test_trainable_and_sequence_length_are_checked_against_the_checkpoint(tmp_path, tiny_preset):
    """Issue 22, item 8: `train --check` passed `trainable: 100` and `sequence_length: 100000`."""
    hf = _hf_folder(tmp_path / "hf")
    for preset, blocks, positions in ((tiny_preset, 2, 64), (hf, 6, 512)):
        config = {"encoder": {"preset": preset, "trainable": 100, "sequence_length": 100000},
                  "task": {"num_classes": 2}, "data": {"train": __file__}}
        errors = kt.config.validate(config)
        path = os.path.join(preset, "config.json")
        assert errors == [
            f"encoder.trainable: 100 blocks, but the checkpoint has {blocks} transformer blocks "
            f"({path}); give true, false, or an int in [0, {blocks}]",
            f"encoder.sequence_length: 100000 tokens, but the checkpoint has {positions} "
            f"positions ({path}); give at most {positions}",
        ]
        config["encoder"].update(trainable=blocks, sequence_length=positions)
        assert kt.config.validate(config) == []


def test_output_folders_through_a_file_are_refused(tmp_path):
    """Issue 22, item 8: an export.path inside a file failed only after training."""
    blocker = tmp_path / "model.txt"
    blocker.write_text("a file")
    errors = kt.config.validate({
        "encoder": {"preset": "minilm"}, "task": {"num_classes": 2}, "data": {"train": __file__},
        "training": {"output": str(blocker)},
        "export": {"path": str(blocker / "saved" / "sst2")},
    })
    assert errors == [
        f"training.output: {blocker} is a file, not a folder; choose another path",
        f"export.path: {blocker / 'saved' / 'sst2'} cannot be created: {blocker} is a file, "
        "not a folder; choose another path",
    ]


def test_yaml_yes_is_true_and_pooling_defaults_to_mean(tmp_path):
    path = _write(tmp_path, "encoder: {preset: minilm, trainable: yes}\ntask: {num_classes: 2}\n"
                            f"data: {{train: {__file__}}}\n")
    config = kt.config.load(path)
    assert config.encoder["trainable"] is True  # YAML 1.1 reads `yes` as true
    assert config.encoder["pooling"] == "mean"  # what the docs and examples use
    assert 'pooling: cls | mean | pooled (default "mean")' in kt.config.describe()
