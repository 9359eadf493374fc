"""kt.export.save: TF Serving layout, signature, atomic writes, errors."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_export_answers_in_fresh_process


@pytest.fixture(scope="module")
def model(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=24, pooling="cls")
    return keras.Sequential([encoder, kt.heads.ClassificationHead(3)])


def test_signature_is_listed_by_saved_model_cli(model, tmp_path):
    path = kt.export.save(model, tmp_path / "m" / "7", labels=["a", "b", "c"])
    cli = shutil.which("saved_model_cli") or os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "signature_def['serving_default']" in shown.stdout
    assert "dtype: DT_STRING" in shown.stdout and "shape: (-1)" in shown.stdout
    assert "outputs['probabilities']" in shown.stdout and "outputs['label']" in shown.stdout
    with open(os.path.join(path, "assets.extra", "labels.txt"), encoding="utf-8") as f:
        assert f.read().split() == ["a", "b", "c"]


def test_multi_label_export_returns_every_label_above_threshold(tiny_preset, tmp_path):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16)
    head = kt.heads.ClassificationHead(3, multi_label=True)
    model = keras.Sequential([encoder, head])
    model(encoder.preprocessor(tf.constant(["a"])))
    head.output_dense.set_weights([np.zeros((16, 3), "float32"), np.array([3.0, -3.0, 2.0], "float32")])
    _, answer = assert_export_answers_in_fresh_process(
        model, ["a film"], tmp_path, labels=["x", "y", "z"], threshold=0.5
    )
    assert answer["label"] == ["x,z"]


def test_refuses_to_overwrite_and_needs_a_version_folder(model, tmp_path):
    kt.export.save(model, tmp_path / "m" / "1")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kt.export.save(model, tmp_path / "m" / "1")
    kt.export.save(model, tmp_path / "m" / "1", overwrite=True)
    with pytest.raises(ValueError, match="integer version folder"):
        kt.export.save(model, tmp_path / "m" / "latest")
    with pytest.raises(ValueError, match="one name per class"):
        kt.export.save(model, tmp_path / "m" / "2", labels=["x", "y"])
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]


def test_failed_export_leaves_nothing_behind(model, tmp_path):
    real_preprocessor = model.layers[0].preprocessor
    calls = []

    staged = []

    def breaks_while_writing(texts):
        # The export's own checks call (and trace) it first; it breaks once the
        # archive is being written, i.e. once the staging folder exists.
        calls.append(texts)
        if os.path.isdir(tmp_path / "m") and os.listdir(tmp_path / "m"):
            staged.extend(os.listdir(tmp_path / "m"))
            raise RuntimeError("tokenizer exploded")
        return real_preprocessor(texts)

    breaks_while_writing.sequence_length = 24
    with pytest.raises(RuntimeError, match="exploded"):
        kt.export.save(model, tmp_path / "m" / "1", preprocessor=breaks_while_writing)
    assert staged, "it broke inside the writer, with a staging folder on disk"
    assert os.listdir(tmp_path / "m") == []  # the staging folder was removed


def test_large_batches_run_in_length_groups_and_keep_input_order(tiny_preset, tmp_path):
    """A served batch of >= 16 mixed-length texts answers as each text alone."""
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=64, pooling="mean")
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(3)])
    words = "the film is great but the plot was very dull and boring".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=n)) for n in rng.permutation(np.arange(1, 41, 2))]
    assert len(texts) >= kt.export.MIN_GROUPED_BATCH
    alone = np.concatenate([
        keras.ops.softmax(model(encoder.preprocessor([text]))).numpy() for text in texts
    ])
    assert_export_answers_in_fresh_process(
        model, texts, tmp_path, expected_probabilities=alone, atol=1e-5
    )
