"""The contracts every ktransfer block keeps, as reusable assertions.

Every layer's tests call these:
- `assert_config_round_trip(layer)`: `from_config(get_config())` rebuilds an
  equal config (and the layer registers as serialisable).
- `assert_keras_round_trip(model, inputs, tmp_path)`: a model holding the
  block saves to `.keras` and loads back with identical predictions.
- `assert_export_answers_in_fresh_process(model, texts, tmp_path, ...)`: the
  raw-string SavedModel answers in a new Python process that imports only
  `tensorflow` and `tensorflow_text`, with the in-memory model's numbers.
- `train_on_one_and_two_devices(train_code)`: training under MirroredStrategy
  over 2 logical CPUs ends with the weights of single-device training.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import keras


def _json(config):
    return json.dumps(config, sort_keys=True, default=str)


def assert_config_round_trip(layer):
    config = layer.get_config()
    registered = keras.saving.get_registered_name(type(layer))
    assert registered.startswith("ktransfer>"), f"{type(layer)} is not registered"
    serialized = keras.saving.serialize_keras_object(layer)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(layer)
    assert _json(revived.get_config()) == _json(config)
    return revived


def assert_keras_round_trip(model, inputs, tmp_path, atol=0.0):
    expected = np.asarray(model(inputs, training=False))
    os.makedirs(str(tmp_path), exist_ok=True)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    actual = np.asarray(loaded(inputs, training=False))
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)
    return loaded


SERVE_SCRIPT = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  registers the tokenizer ops
path, texts = sys.argv[1], json.loads(sys.argv[2])
model = tf.saved_model.load(path)
serve = model.signatures["serving_default"]
out = serve(text=tf.constant(texts, tf.string))
print(json.dumps({
    "probabilities": out["probabilities"].numpy().tolist(),
    "label": [s.decode("utf-8") for s in out["label"].numpy()],
    "outputs": sorted(out),
    "foreign_modules": sorted(m for m in ("keras_hub", "ktransfer") if m in sys.modules),
}))
"""


def serve_in_fresh_process(path, texts):
    """Load a SavedModel in a new interpreter (tf + tf_text only) and query it."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, str(path), json.dumps(list(texts))],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",  # so the repo's ktransfer/ is not importable by accident
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_export_answers_in_fresh_process(
    model, texts, tmp_path, labels=None, expected_probabilities=None, atol=1e-5, **save_kwargs
):
    from ktransfer import export

    path = export.save(
        model, os.path.join(str(tmp_path), "saved_models", "m", "1"), labels=labels, **save_kwargs
    )
    answer = serve_in_fresh_process(path, texts)
    assert answer["foreign_modules"] == []
    assert answer["outputs"] == ["label", "probabilities"]
    probabilities = np.asarray(answer["probabilities"])
    assert probabilities.shape[0] == len(texts)
    if expected_probabilities is not None:
        np.testing.assert_allclose(probabilities, expected_probabilities, atol=atol)
        names = labels or [str(i) for i in range(probabilities.shape[-1])]
        assert answer["label"] == [names[i] for i in np.argmax(expected_probabilities, -1)]
    return path, answer


TWO_CPU_PRELUDE = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, ktransfer as kt
"""

TWO_CPU_EPILOGUE = """
mirrored = kt.distribute.get_strategy("mirrored")
assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
(start, one), (_, two) = train(tf.distribute.get_strategy()), train(mirrored)
print("CHANGED", max(float(np.abs(a - b).max()) for a, b in zip(start, one)))
print("MAXDIFF", max(float(np.abs(a - b).max()) for a, b in zip(one, two)))
"""


def train_on_one_and_two_devices(train_code, timeout=600):
    """Train on 1 device and under MirroredStrategy over 2 logical CPUs; compare.

    `train_code` (Python source) defines `train(strategy)`, which builds,
    compiles and fits a model inside `strategy.scope()` from a fixed seed and
    returns `(initial_weights, final_weights)` as lists of arrays. It runs in
    a fresh process (logical devices must be set before TensorFlow starts)
    with `np`, `tf`, `keras` and `kt` imported.

    Returns:
        `(max_difference, max_change)`: the largest absolute difference
        between the two runs' final weights, and how far single-device
        training moved the weights (to check that training did something).
    """
    script = TWO_CPU_PRELUDE + textwrap.dedent(train_code) + TWO_CPU_EPILOGUE
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    difference = float(result.stdout.split("MAXDIFF")[1].split()[0])
    change = float(result.stdout.split("CHANGED")[1].split()[0])
    return difference, change
