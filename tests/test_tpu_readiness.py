"""TPU readiness without a TPU: static shapes, XLA, steps_per_execution, no host ops."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
import ktransfer as kt
from conftest import REPO
from conftest import make_tiny_preset
from ktransfer.app.train import check_tpu_ready

TEXTS = ["a great film", "the plot is dull and boring", "love it", "awful"] * 4


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return make_tiny_preset(tmp_path_factory.mktemp("tpu_bert"), dropout=0.0)


def _model(preset, pooling, steps_per_execution=32, jit_compile=True):
    encoder = kt.encoders.BertEncoder.from_preset(preset, sequence_length=16, pooling=pooling)
    head = kt.heads.ClassificationHead(2)
    model = keras.Sequential([encoder, head])
    model.compile(keras.optimizers.Adam(1e-2), head.default_loss(),
                  steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    return model, encoder


def test_every_bert_classifier_is_tpu_ready_with_static_batches(preset):
    data = kt.data.from_lists(TEXTS, [1, 0, 1, 0] * 4)
    for pooling in ("cls", "pooled", "mean"):
        model, encoder = _model(preset, pooling)
        batches = kt.data.prepare(data, encoder.preprocessor, batch_size=4, bucket=False,
                                  drop_remainder=True)
        for features in batches.element_spec[0].values():
            assert features.shape.as_list() == [4, 16]
        # The graph checks for every pooling; the XLA compile (slow on CPU) once.
        assert check_tpu_ready(model, batches, check_jit=pooling == "mean") == []
    # It really trains with XLA and many steps per call, and learns the same
    # as a plain eager-graph run from the same weights (one step per call, no
    # XLA): the TPU settings change where the steps run, not what they compute.
    reference, _ = _model(preset, "mean", steps_per_execution=1, jit_compile=False)
    reference(next(iter(batches))[0])  # build the head
    reference.set_weights(model.get_weights())
    history = model.fit(batches, epochs=3, verbose=0).history["loss"]
    expected = reference.fit(batches, epochs=3, verbose=0).history["loss"]
    assert model.jit_compile is True and model.steps_per_execution == 32
    assert int(model.optimizer.iterations) == 3 * 4  # 16 texts in static batches of 4
    assert history[-1] < 0.8 * history[0], history  # it learns
    np.testing.assert_allclose(history, expected, rtol=1e-3)
    for trained, plain in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(trained, plain, atol=1e-4)


def test_what_stops_a_tpu_is_named(preset):
    model, encoder = _model(preset, "mean", steps_per_execution=1)
    data = kt.data.from_lists(TEXTS, [1, 0, 1, 0] * 4)
    bucketed = kt.data.prepare(data, encoder.preprocessor, batch_size=3)
    problems = check_tpu_ready(model, bucketed, check_jit=False)
    assert any("TPUs need static shapes" in p for p in problems)
    assert any("steps_per_execution is 1" in p for p in problems)

    inputs = keras.Input(shape=(), dtype="string")
    lengths = keras.layers.Lambda(
        lambda t: tf.cast(tf.strings.length(t), "float32")[:, None], output_shape=(1,)
    )(inputs)
    stringy = keras.Model(inputs, keras.layers.Dense(2)(lengths))
    strings = tf.data.Dataset.from_tensor_slices(["a", "b"]).batch(2, drop_remainder=True)
    assert any("string ops" in p for p in check_tpu_ready(stringy, strings))

    numbers = keras.Input(shape=(3,))
    host = keras.layers.Lambda(
        lambda x: tf.py_function(lambda v: v * 2, [x], tf.float32), output_shape=(3,)
    )(numbers)
    python = keras.Model(numbers, host)
    floats = tf.data.Dataset.from_tensor_slices(tf.zeros((4, 3))).batch(2, drop_remainder=True)
    assert any("tf.py_function" in p for p in check_tpu_ready(python, floats))


def _notebook_code(path):
    with open(path, encoding="utf-8") as f:
        notebook = json.load(f)
    assert notebook["nbformat"] == 4 and notebook["cells"]
    lines = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in "".join(cell["source"]).splitlines():
            # Shell and magic lines (`!pip install ...`) are Colab-only.
            lines.append("# " + line if line.lstrip().startswith(("!", "%")) else line)
    return "\n".join(lines) + "\n"


def test_the_colab_tpu_notebook_runs_as_a_script_on_cpu(tmp_path):
    code = _notebook_code(os.path.join(REPO, "examples", "colab_tpu.ipynb"))
    script = tmp_path / "colab_tpu.py"
    script.write_text(code)
    preset = make_tiny_preset(tmp_path / "preset", dropout=0.0)
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "KTRANSFER_PRESET": preset,
        "KTRANSFER_TRAIN_LIMIT": "64",
        "KTRANSFER_SEQUENCE_LENGTH": "16",
        "KTRANSFER_OUTPUT": str(tmp_path / "out"),
    }
    result = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TPU-ready: yes" in result.stdout
    assert os.path.isfile(tmp_path / "out" / "saved_models" / "sst2" / "1" / "saved_model.pb")
