"""The contracts every ktransfer block keeps, as reusable assertions.

In the manner of KerasHub's `TestCase.run_layer_test` /
`run_serialization_test` / `run_model_saving_test`
(`keras_hub/src/tests/test_case.py`). `tests/test_contracts.py` runs them
for every class registered under the `ktransfer>` package; a class's own
test file may call them too.

- `assert_strict_json(config)`: the config is JSON as it stands (no
  `default=str`: a NumPy number, a dtype object or a tuple-keyed dict there
  would not survive a `.keras` file); returns the canonical JSON text.
- `assert_config_round_trip(obj)`: the object is registered under
  `ktransfer>`, `from_config(json.loads(json.dumps(get_config())))` and
  `deserialize_keras_object(serialize_keras_object(obj))` (through strict
  JSON) rebuild the same class with an equal config. Layers, models,
  optimizers, schedules and losses alike.
- `assert_layer_contract(make, inputs, expected_output_shape, ...)`: symbolic
  call on `keras.Input`s (shape equals `compute_output_shape`), eager call,
  trainable / non-trainable weight counts, a training step that moves every
  trainable weight and no other, and the `.keras` round trip (the model
  itself, or a functional model around a layer).
- `assert_preprocessor_contract(make, inputs, expected_output_shape, ...)`:
  KerasHub's `run_preprocessing_layer_test`: direct call, the same outputs in
  tf.data (batched, and mapped per example), symbolic call, `.keras` round
  trip.
- `assert_keras_round_trip(model, inputs, tmp_path)`: a model saves to
  `.keras` and loads back (same class) with identical predictions (any
  output structure).
- `assert_optimizer_state_round_trip(make_optimizer, tmp_path)`: after training
  step, the optimizer (config, iterations, every slot variable, learning
  rate) comes back from a `.keras` file, and the next step matches.
- `serve_in_fresh_process(path, inputs, signature)` /
  `query_in_fresh_process(path, requests)`: a SavedModel answers in a new
  Python process that imports only `tensorflow` and `tensorflow_text`;
  `ServingProcess` keeps one such process for many exports (one TensorFlow
  import per test module instead of one per export).
- `assert_export_answers_in_fresh_process(model, texts, tmp_path, ...)`: a
  model exported with `kt.export.save` answers raw strings there with the
  in-memory model's numbers; `assert_task_export_answers_in_fresh_process`
  does the same for a task's own `export` and every serving signature.
- `assert_task_contract(make, x, y, ...)`: all of the above for a task
  (`kt.tasks.*`): layer contract on its features, raw-string `fit`, `.keras`
  round trip with identical `predict`, export answered in a fresh process.
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

PACKAGE = "ktransfer"


# ---------------------------------------------------------------------------
# Config and serialisation
# ---------------------------------------------------------------------------


def _non_json_paths(value, path="config"):
    """Where in `value` something is not plain JSON (for the error message)."""
    if value is None or isinstance(value, (bool, str)):
        return []
    if isinstance(value, (int, float)) and type(value) in (int, float):
        return []
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _non_json_paths(v, f"{path}[{i}]")]
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if not isinstance(key, str):
                found.append(f"{path} key {key!r} ({type(key).__name__})")
            found += _non_json_paths(item, f"{path}[{key!r}]")
        return found
    return [f"{path} = {value!r} ({type(value).__module__}.{type(value).__name__})"]


def assert_strict_json(config, what="config"):
    """`config` as canonical JSON text; fails naming every non-JSON value.

    Strict: no `default=str` fallback, so a value that `json` cannot write
    (NumPy scalars, dtype objects, sets, non-string keys) fails here rather
    than turning into a string that `from_config` cannot read back.
    """
    problems = _non_json_paths(config)
    assert not problems, f"{what} is not plain JSON: " + "; ".join(problems)
    return json.dumps(config, sort_keys=True)


def _json(config):
    return assert_strict_json(config)


def assert_config_round_trip(obj):
    """`get_config` / `from_config` and Keras (de)serialisation, through JSON.

    Works for any registered Keras object (layer, model, optimizer,
    learning-rate schedule, loss, metric). Returns the object revived by
    `keras.saving.deserialize_keras_object`.
    """
    cls = type(obj)
    registered = keras.saving.get_registered_name(cls)
    assert registered.startswith(f"{PACKAGE}>"), (
        f"{cls.__module__}.{cls.__qualname__} is not registered: decorate it with "
        f'@keras.saving.register_keras_serializable(package="{PACKAGE}")'
    )
    config_json = assert_strict_json(obj.get_config(), f"{cls.__name__}.get_config()")
    # What a .keras file holds is JSON: from_config must take lists for tuples.
    revived = cls.from_config(json.loads(config_json))
    assert type(revived) is cls
    assert _json(revived.get_config()) == config_json, (
        f"{cls.__name__}.from_config(get_config()) does not give the same config"
    )
    serialized_json = assert_strict_json(
        keras.saving.serialize_keras_object(obj), f"serialize_keras_object({cls.__name__})"
    )
    revived = keras.saving.deserialize_keras_object(json.loads(serialized_json))
    assert type(revived) is cls
    assert _json(revived.get_config()) == config_json
    return revived


# ---------------------------------------------------------------------------
# Layers: symbolic call, shapes, weights, a training step
# ---------------------------------------------------------------------------


def _numpy(x):
    if hasattr(x, "numpy"):
        x = x.numpy()
    return np.asarray(x)


def _symbolic(x, name=None):
    array = _numpy(x)
    dtype = "string" if array.dtype.kind in "SUO" else keras.backend.standardize_dtype(array.dtype)
    return keras.Input(shape=array.shape[1:], dtype=dtype, name=name)


def _symbolic_inputs(inputs, prefix=""):
    """`keras.Input`s like `inputs` (batch size unknown); dict entries named by key."""
    if isinstance(inputs, dict):
        return {
            key: _symbolic_inputs(value, f"{prefix}{key}_") if isinstance(value, dict)
            else _symbolic(value, name=f"{prefix}{key}")
            for key, value in inputs.items()
        }
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_symbolic_inputs(value, prefix) for value in inputs)
    return _symbolic(inputs)


def _is_shape(value):
    return isinstance(value, tuple) and all(d is None or isinstance(d, int) for d in value)


def _map_shapes(fn, shapes):
    """Apply `fn` to each shape (a tuple of ints / None) of a nested structure."""
    if _is_shape(shapes):
        return fn(shapes)
    if isinstance(shapes, dict):
        return {key: _map_shapes(fn, value) for key, value in shapes.items()}
    if isinstance(shapes, (list, tuple)):
        return type(shapes)(_map_shapes(fn, value) for value in shapes)
    raise TypeError(f"not a shape or a structure of shapes: {shapes!r}")


def _shapes_of(outputs):
    """The shapes of a (nested) output, in the same structure."""
    if isinstance(outputs, dict):
        return {key: _shapes_of(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_shapes_of(value) for value in outputs)
    return tuple(outputs.shape)


def _with_unknown_batch(shape):
    return (None,) + tuple(shape[1:])


def _overrides(cls, method):
    """Whether `cls` (or a ktransfer base) defines `method` itself."""
    for klass in cls.__mro__:
        if method in vars(klass):
            return klass.__module__.split(".")[0] == PACKAGE
    return False


def assert_layer_contract(
    make,
    inputs,
    expected_output_shape,
    num_trainable_weights,
    num_non_trainable_weights=0,
    expected_output_dtype="float32",
    symbolic_output_shape=None,
    tmp_path=None,
    run_training_check=True,
    train_data=None,
    compile_kwargs=None,
    atol=0.0,
):
    """KerasHub's `run_layer_test` + `run_model_saving_test`, for ktransfer layers.

    Args:
        make: builds a fresh layer (called several times: each check starts
            from an unbuilt layer).
        inputs: concrete inputs (array, or a dict / list / tuple of them).
        expected_output_shape: the output shape for `inputs` (a tuple, or the
            same structure as the output).
        num_trainable_weights, num_non_trainable_weights: `len(...)` once built.
        expected_output_dtype: the dtype of every output (None: not checked).
        symbolic_output_shape: the output shape of the symbolic call, where it
            differs from `expected_output_shape` with the batch size unknown
            (a length the layer pads each batch to, a number of classes an
            episode decides).
        tmp_path: where to write the `.keras` file (None: no file check).
        run_training_check: take one training step and check that every
            trainable weight moved and no other weight did: by default one
            SGD step on a random linear read-out of the (float) outputs; with
            `train_data`, one step of the model's own `fit` on it (for models
            with their own `train_step`), compiled with `compile_kwargs`
            (default `optimizer=SGD(0.1)`). `train_data` may be a function of
            the model returning the positional arguments of one epoch's
            `fit` (e.g. `(texts, labels)` for a task).
        atol: tolerance of the `.keras` round trip.

    Returns:
        The layer of the eager-call check (built, its outputs checked; the
        one saved to `.keras` when it is a model).
    """
    tree = keras.tree
    assert_config_round_trip(make())

    def check_weights(layer):
        assert layer.built, f"{type(layer).__name__} is not built after a call"
        assert len(layer.trainable_weights) == num_trainable_weights, (
            f"{type(layer).__name__}: {len(layer.trainable_weights)} trainable weights "
            f"{[w.path for w in layer.trainable_weights]}, expected {num_trainable_weights}"
        )
        assert len(layer.non_trainable_weights) == num_non_trainable_weights, (
            f"{type(layer).__name__}: {len(layer.non_trainable_weights)} non-trainable "
            f"weights {[w.path for w in layer.non_trainable_weights]}, expected "
            f"{num_non_trainable_weights}"
        )

    def check_dtypes(outputs):
        if expected_output_dtype is None:
            return
        for output in tree.flatten(outputs):
            assert keras.backend.standardize_dtype(output.dtype) == expected_output_dtype, (
                f"output dtype {output.dtype}, expected {expected_output_dtype}"
            )

    # Symbolic call: keras.Input (batch unknown) -> layer.
    symbolic_inputs = _symbolic_inputs(inputs)
    layer = make()
    symbolic_outputs = layer(symbolic_inputs)
    expected_symbolic = symbolic_output_shape or _map_shapes(_with_unknown_batch, expected_output_shape)
    assert _shapes_of(symbolic_outputs) == expected_symbolic, (
        f"symbolic output shape {_shapes_of(symbolic_outputs)}, expected {expected_symbolic}"
    )
    check_weights(layer)
    check_dtypes(symbolic_outputs)
    if not isinstance(layer, keras.Model) or _overrides(type(layer), "compute_output_shape"):
        assert _overrides(type(layer), "compute_output_shape"), (
            f"{type(layer).__name__} does not implement compute_output_shape"
        )
        input_shapes = keras.tree.map_structure(lambda t: tuple(t.shape), symbolic_inputs)
        computed = _map_shapes(tuple, _as_tuples(layer.compute_output_shape(input_shapes)))
        assert computed == expected_symbolic, (
            f"compute_output_shape({input_shapes}) = {computed}, but the symbolic call "
            f"gives {expected_symbolic}"
        )

    # Eager call on the concrete inputs.
    eager = make()
    outputs = eager(inputs)
    assert _shapes_of(outputs) == expected_output_shape, (
        f"eager output shape {_shapes_of(outputs)}, expected {expected_output_shape}"
    )
    check_weights(eager)
    check_dtypes(outputs)

    if run_training_check and num_trainable_weights:
        if train_data is not None:  # then the .keras check saves a trained, compiled model
            _assert_one_fit_step_moves_trainable_weights(eager, train_data, compile_kwargs)
        else:
            _assert_one_step_moves_trainable_weights(layer, symbolic_inputs, symbolic_outputs, inputs)

    if tmp_path is not None:
        if isinstance(eager, keras.Model):
            assert_keras_round_trip(eager, inputs, tmp_path, atol=atol)
        else:
            model = keras.Model(symbolic_inputs, layer(symbolic_inputs))
            assert_keras_round_trip(model, inputs, tmp_path, atol=atol)
    return eager


def _as_tuples(shapes):
    """compute_output_shape may answer lists: make every shape a tuple."""
    if isinstance(shapes, dict):
        return {key: _as_tuples(value) for key, value in shapes.items()}
    if isinstance(shapes, (list, tuple)) and all(d is None or isinstance(d, int) for d in shapes):
        return tuple(shapes)
    if isinstance(shapes, (list, tuple)):
        return type(shapes)(_as_tuples(value) for value in shapes)
    return shapes


def _assert_moved(layer, before):
    trainable = {w.path for w in layer.trainable_weights}
    for weight in layer.weights:
        moved = not np.array_equal(_numpy(weight), before[weight.path])
        if weight.path in trainable:
            assert moved, f"trainable weight {weight.path} did not move in a training step"
        else:
            assert not moved, f"non-trainable weight {weight.path} moved in a training step"


def _assert_one_fit_step_moves_trainable_weights(model, train_data, compile_kwargs):
    before = {w.path: _numpy(w).copy() for w in model.weights}
    if compile_kwargs is None:
        compile_kwargs = {"optimizer": keras.optimizers.SGD(0.1)}
    model.compile(**compile_kwargs)
    if callable(train_data):  # built from the model (e.g. its own preprocessor)
        model.fit(*train_data(model), epochs=1, verbose=0)
    else:
        model.fit(train_data, epochs=1, steps_per_epoch=1, verbose=0)
    _assert_moved(model, before)


def _assert_one_step_moves_trainable_weights(layer, symbolic_inputs, symbolic_outputs, inputs):
    import tensorflow as tf

    outputs = [o for o in keras.tree.flatten(symbolic_outputs) if "float" in str(o.dtype)]
    assert outputs, "no float output to train on"
    model = keras.Model(symbolic_inputs, outputs)
    before = {w.path: _numpy(w).copy() for w in layer.weights}
    x = keras.tree.map_structure(lambda v: tf.convert_to_tensor(_numpy(v)), inputs)
    with tf.GradientTape() as tape:
        ys = model(x, training=True)
        # A random linear read-out: no direction of the output is left out
        # (a constant target would be, e.g., after a final layer norm).
        loss = tf.add_n([
            tf.reduce_sum(tf.cast(y, "float32") * tf.random.stateless_normal(tf.shape(y), seed=(1, i)))
            for i, y in enumerate(ys)
        ])
    gradients = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, gradients) if g is None]
    assert not missing, f"no gradient reaches the trainable weights {missing}"
    keras.optimizers.SGD(0.1).apply(gradients, model.trainable_weights)
    _assert_moved(layer, before)


def assert_preprocessor_contract(
    make,
    inputs,
    expected_output_shape,
    expected_output_dtype=None,
    symbolic_output_shape=None,
    tmp_path=None,
    check_unbatched=True,
):
    """KerasHub's `run_preprocessing_layer_test`, for ktransfer preprocessors.

    A preprocessor runs in the tf.data pipeline (strings in, model inputs
    out) and has no weights of its own to train. Checks: config round trip;
    the direct call's output shapes (and dtypes); the same outputs from
    `ds.batch(n).map(layer)` and (with `check_unbatched`) from mapping single
    examples then batching; a symbolic call on `keras.Input`s; and (with
    `tmp_path`) the `.keras` round trip of a model that holds it as an
    attribute, as tasks do, with identical outputs (the vocabulary travels in
    the file).
    Unlike layers, preprocessors need not implement `compute_output_shape`
    (KerasHub's do not: their output spec is traced).

    Returns the layer of the direct call.
    """
    import tensorflow as tf

    assert_config_round_trip(make())
    layer = make()

    def call(*args):
        return layer(args[0] if len(args) == 1 else args)

    direct = layer(inputs)
    assert _shapes_of(direct) == expected_output_shape, (
        f"output shape {_shapes_of(direct)}, expected {expected_output_shape}"
    )
    if expected_output_dtype is not None:
        for output in keras.tree.flatten(direct):
            assert keras.backend.standardize_dtype(output.dtype) == expected_output_dtype
    assert layer.trainable_weights == []
    batch_size = len(keras.tree.flatten(inputs)[0])
    dataset = tf.data.Dataset.from_tensor_slices(inputs)
    _assert_outputs_close(next(iter(dataset.batch(batch_size).map(call))), direct, 0.0)
    if check_unbatched:
        unbatched = next(iter(dataset.map(call).batch(batch_size)))
        _assert_outputs_close(unbatched, direct, 0.0)

    symbolic_inputs = _symbolic_inputs(inputs)
    symbolic_outputs = make()(symbolic_inputs)
    expected_symbolic = symbolic_output_shape or _map_shapes(_with_unknown_batch, expected_output_shape)
    assert _shapes_of(symbolic_outputs) == expected_symbolic, (
        f"symbolic output shape {_shapes_of(symbolic_outputs)}, expected {expected_symbolic}"
    )
    if tmp_path is not None:
        # As a task holds it: an attribute of a model, not a node of its graph
        # (a graph node would be called before the vocabulary is restored).
        assert_keras_round_trip(PreprocessorHolder(layer), inputs, tmp_path)
    return layer


@keras.saving.register_keras_serializable(package="ktransfer_tests")
class PreprocessorHolder(keras.Model):
    """A model that keeps a preprocessor as an attribute, as a task does."""

    def __init__(self, preprocessor, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor = preprocessor

    def build(self, input_shape=None):
        self.built = True

    def call(self, inputs, training=None):
        return self.preprocessor(inputs)

    def get_config(self):
        return {"name": self.name, "preprocessor": keras.saving.serialize_keras_object(self.preprocessor)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)


# ---------------------------------------------------------------------------
# .keras files
# ---------------------------------------------------------------------------


def _assert_outputs_close(actual, expected, atol):
    import tensorflow as tf

    if isinstance(expected, tf.RaggedTensor) or isinstance(actual, tf.RaggedTensor):
        assert isinstance(actual, tf.RaggedTensor) and isinstance(expected, tf.RaggedTensor)
        assert actual.to_list() == expected.to_list()
        return
    if isinstance(expected, (tuple, list)) and any(isinstance(e, tf.RaggedTensor) for e in expected):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _assert_outputs_close(a, e, atol)
        return
    actual_leaves, expected_leaves = keras.tree.flatten(actual), keras.tree.flatten(expected)
    assert len(actual_leaves) == len(expected_leaves)
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected)
    for a, e in zip(actual_leaves, expected_leaves):
        a, e = _numpy(a), _numpy(e)
        if e.dtype.kind in "SUO":
            np.testing.assert_array_equal(a, e)
        else:
            np.testing.assert_allclose(a, e, atol=atol, rtol=0)


def assert_keras_round_trip(model, inputs, tmp_path, atol=0.0):
    """Save `model` to `.keras`, load it back: same class, same outputs."""
    expected = model(inputs, training=False)
    os.makedirs(str(tmp_path), exist_ok=True)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model), f"loaded a {type(loaded).__name__}, saved a {type(model).__name__}"
    _assert_outputs_close(loaded(inputs, training=False), expected, atol)
    return loaded


def _variable_values(optimizer):
    """The optimizer's variables in order (names follow the model's paths,
    which a loaded model spells differently; Keras restores them by position)."""
    return [(tuple(v.shape), _numpy(v).copy()) for v in optimizer.variables]


def assert_optimizer_state_round_trip(make_optimizer, tmp_path, make_model=None, steps=2):
    """An optimizer's state after training survives a `.keras` round trip.

    Compiles a tiny model with `make_optimizer()`, trains `steps` steps,
    saves and loads the model, then checks: the optimizer's class and
    config, its iterations and every variable (slots, moments, groups) and
    its current learning rate came back; one more step on the loaded model
    gives the same weights as on the original.

    Returns the loaded model.
    """
    if make_model is None:
        def make_model():
            keras.utils.set_random_seed(0)
            return keras.Sequential(
                [keras.Input((4,)), keras.layers.Dense(3, name="hidden"), keras.layers.Dense(2, name="out")]
            )
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4 * steps, 4)).astype("float32")
    y = rng.normal(size=(4 * steps, 2)).astype("float32")
    model = make_model()
    model.compile(optimizer=make_optimizer(), loss="mse")
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, verbose=0)
    optimizer = model.optimizer
    assert int(optimizer.iterations) == steps
    os.makedirs(str(tmp_path), exist_ok=True)
    path = os.path.join(str(tmp_path), "optimizer.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.optimizer
    assert type(restored) is type(optimizer)
    assert _json(restored.get_config()) == _json(optimizer.get_config())
    assert int(restored.iterations) == steps
    original, revived = _variable_values(optimizer), _variable_values(restored)
    assert [s for s, _ in revived] == [s for s, _ in original], (
        "the optimizer's variables differ after loading"
    )
    for i, ((_, value), (_, back)) in enumerate(zip(original, revived)):
        np.testing.assert_array_equal(back, value, err_msg=f"{optimizer.variables[i].path}")
    np.testing.assert_allclose(
        float(restored.learning_rate), float(optimizer.learning_rate), rtol=1e-7
    )
    # The next step continues from the restored state.
    batch = (tf.constant(x[:4]), tf.constant(y[:4]))
    model.train_on_batch(*batch)
    loaded.train_on_batch(*batch)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(_numpy(b), _numpy(a), atol=1e-7, err_msg=a.path)
    return loaded


# ---------------------------------------------------------------------------
# SavedModels in a fresh process
# ---------------------------------------------------------------------------

SERVE_SCRIPT = r"""
import json, sys, traceback
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  registers the tokenizer ops

def plain(value):
    value = value.numpy()
    if value.dtype.kind in "SO":
        if not value.ndim:
            return value.decode("utf-8")
        return np.vectorize(lambda s: s.decode("utf-8"), otypes=[object])(value).tolist()
    return value.tolist()

def answer(path, requests):
    model = tf.saved_model.load(path)
    answers = {}
    for signature, inputs in requests.items():
        serve = model.signatures[signature]
        specs = serve.structured_input_signature[1]
        feed = {name: tf.constant(value, specs[name].dtype) for name, value in inputs.items()}
        answers[signature] = {name: plain(value) for name, value in serve(**feed).items()}
    return {
        "answers": answers,
        "signatures": sorted(model.signatures),
        "foreign_modules": sorted(m for m in ("keras_hub", "ktransfer") if m in sys.modules),
    }

if len(sys.argv) > 1:  # one query: path, requests
    print(json.dumps(answer(sys.argv[1], json.loads(sys.argv[2]))))
else:  # a server: one JSON query per line on stdin, one JSON reply per line
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        query = json.loads(line)
        try:
            reply = answer(query["path"], query["requests"])
        except Exception:
            reply = {"error": traceback.format_exc()}
        print(json.dumps(reply), flush=True)
"""


def _requests(inputs):
    if isinstance(inputs, dict):
        return {name: list(values) for name, values in inputs.items()}
    return {"text": list(inputs)}


def _fresh_env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


class ServingProcess:
    """One new interpreter (tensorflow + tensorflow_text only) that answers many exports.

    Importing TensorFlow costs seconds per process; a test module with an
    export per task class starts this once and sends each SavedModel to it
    (`query(path, requests)`), instead of one interpreter per export. The
    process never imports keras_hub or ktransfer (each reply says whether it
    had to: `foreign_modules`), and runs with `cwd="/"` so that the repo's
    `ktransfer/` is not importable by accident. Use it as a context manager
    or call `close()`.
    """

    def __init__(self, timeout=300):
        self.timeout = timeout
        self._process = None
        self._stderr = None

    def _start(self):
        import tempfile

        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._process = subprocess.Popen(
            [sys.executable, "-c", SERVE_SCRIPT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            text=True, env=_fresh_env(), cwd="/",
        )
        assert self._read() == {"ready": True}

    def _read(self):
        import select

        ready, _, _ = select.select([self._process.stdout], [], [], self.timeout)
        line = self._process.stdout.readline() if ready else ""
        if not line:
            self._stderr.seek(0)
            raise AssertionError(
                "the serving process did not answer (exited or timed out): "
                + self._stderr.read()[-3000:]
            )
        return json.loads(line)

    def query(self, path, requests):
        """Like `query_in_fresh_process`, in this process."""
        if self._process is None:
            self._start()
        payload = {name: _requests(inputs) for name, inputs in requests.items()}
        self._process.stdin.write(json.dumps({"path": str(path), "requests": payload}) + "\n")
        self._process.stdin.flush()
        reply = self._read()
        assert "error" not in reply, reply.get("error")
        return reply

    def close(self):
        if self._process is not None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._stderr.close()
            self._process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def query_in_fresh_process(path, requests, process=None):
    """Query several signatures of a SavedModel in a new interpreter.

    Args:
        path: the SavedModel folder.
        requests: `{signature_name: inputs}`; `inputs` is a list of strings
            (fed as `text`) or a dict `{input_name: list}`.
        process: a `ServingProcess` to ask (None: start a one-off interpreter).

    Returns:
        `{"answers": {signature: {output: value}}, "signatures": [...],
        "foreign_modules": [...]}`: values as plain lists (bytes decoded);
        `foreign_modules` lists which of keras_hub / ktransfer the
        process had to import (should be none).
    """
    if process is not None:
        return process.query(path, requests)
    payload = {name: _requests(inputs) for name, inputs in requests.items()}
    result = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, str(path), json.dumps(payload)],
        capture_output=True,
        text=True,
        env=_fresh_env(),
        cwd="/",  # so the repo's ktransfer/ is not importable by accident
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def serve_in_fresh_process(path, inputs, signature="serving_default"):
    """Load a SavedModel in a new interpreter (tf + tf_text only) and query it.

    `inputs`: a list of strings (the `text` input) or `{input_name: list}`.
    Returns the signature's outputs by name (plain lists, strings decoded),
    plus `"outputs"` (their sorted names), `"signatures"` (all signature
    names) and `"foreign_modules"` (keras_hub / ktransfer if the
    process imported them: it should not).
    """
    reply = query_in_fresh_process(path, {signature: inputs})
    answer = dict(reply["answers"][signature])
    clash = {"outputs", "signatures", "foreign_modules"} & set(answer)
    assert not clash, f"output names {sorted(clash)} clash with the answer's own keys"
    answer["outputs"] = sorted(reply["answers"][signature])
    answer["signatures"] = reply["signatures"]
    answer["foreign_modules"] = reply["foreign_modules"]
    return answer


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


def _in_memory_answer(fn, specs, inputs):
    """Call a serving function in this process with the request's values."""
    import tensorflow as tf

    values = _requests(inputs)
    names = [spec.name for spec in specs]
    if all(names) and set(names) == set(values):
        tensors = [tf.constant(values[spec.name], spec.dtype) for spec in specs]
    else:
        assert len(specs) == len(values) == 1, (
            f"cannot match the request's inputs {sorted(values)} to the specs {specs}"
        )
        tensors = [tf.constant(next(iter(values.values())), specs[0].dtype)]
    outputs = fn(*tensors)
    return {name: _numpy(value) for name, value in outputs.items()}


def assert_task_export_answers_in_fresh_process(
    task, inputs, tmp_path, atol=1e-5, signatures=None, process=None
):
    """`task.export(path)` answers every serving signature in a fresh process.

    Exports with the task's own `export`, queries each signature of
    `task.serving_signatures()` (or the names in `signatures`) in one new
    interpreter that imports only tensorflow and tensorflow_text, and checks
    the answers against the in-memory serving functions: the same output
    names, numbers within `atol`, identical strings.

    Args:
        inputs: a list of strings / `{input_name: list}` for every signature,
            or `{signature_name: inputs}` when `signatures` is given.
        process: a `ServingProcess` to ask (None: a one-off interpreter).

    Returns:
        `(path, reply)`, reply as from `query_in_fresh_process`.
    """
    served = task.serving_signatures()
    names = list(signatures or served)
    if signatures is None:
        requests = {name: inputs for name in names}
    else:
        requests = {name: inputs[name] for name in names}
    path = task.export(os.path.join(str(tmp_path), "saved_models", "task", "1"))
    assert os.path.isabs(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))
    reply = query_in_fresh_process(path, requests, process=process)
    assert reply["foreign_modules"] == [], reply["foreign_modules"]
    assert "serving_default" in reply["signatures"]
    for name in names:
        assert name in reply["signatures"], f"signature {name!r} missing from {reply['signatures']}"
        fn, specs = served[name]
        expected = _in_memory_answer(fn, specs, requests[name])
        answer = reply["answers"][name]
        assert sorted(answer) == sorted(expected), (name, sorted(answer), sorted(expected))
        for output, value in expected.items():
            if value.dtype.kind in "SO":
                decoded = np.vectorize(lambda s: s.decode("utf-8"), otypes=[object])(value)
                assert answer[output] == decoded.tolist(), (name, output)
            else:
                np.testing.assert_allclose(
                    np.asarray(answer[output], value.dtype), value, atol=atol, rtol=0,
                    err_msg=f"{name}/{output}",
                )
    return path, reply


def assert_task_contract(
    make,
    x,
    y,
    expected_output_shape,
    num_trainable_weights,
    num_non_trainable_weights=0,
    tmp_path=None,
    symbolic_output_shape=None,
    expected_output_dtype="float32",
    export=True,
    serving_process=None,
    atol=1e-6,
    export_atol=1e-5,
):
    """The contracts of a `kt.tasks.Task`, raw strings in.

    - the layer contract (`assert_layer_contract`) on its preprocessed
      inputs: config round trip through strict JSON, symbolic and eager call,
      weight counts, and one epoch of `task.fit(x, y)` on raw strings with
      `compile()`'s defaults moving every trainable weight and no other;
    - the `.keras` round trip: the same class back, identical outputs on the
      features and identical `predict(x)` on the raw strings;
    - with `export`: `task.export(path)` answered in a fresh process (only
      tensorflow and tensorflow_text imported) with the in-memory serving
      functions' outputs, for every serving signature.

    Args:
        make: builds a fresh task (called several times).
        x, y: a few raw texts (or a `(texts_a, texts_b)` pair) and labels.
        expected_output_shape: the shape of `task(features)` for `x`.
        serving_process: a `ServingProcess` to answer the export (None: a
            one-off interpreter).

    Returns:
        `(task, loaded)`: the task the `.keras` check saved and the one it
        loaded.
    """
    import tensorflow as tf

    from ktransfer.tasks.serving import preprocess_texts

    probe = make()
    texts = tf.constant(x) if not isinstance(x, tuple) else tuple(tf.constant(t) for t in x)
    features = {k: _numpy(v) for k, v in preprocess_texts(probe.preprocessor, texts).items()}
    task = assert_layer_contract(
        make, features, expected_output_shape,
        num_trainable_weights=num_trainable_weights,
        num_non_trainable_weights=num_non_trainable_weights,
        expected_output_dtype=expected_output_dtype,
        symbolic_output_shape=symbolic_output_shape,
        train_data=lambda task: (x, y), compile_kwargs={},
    )
    loaded = None
    if tmp_path is not None:
        loaded = assert_keras_round_trip(task, features, os.path.join(str(tmp_path), "keras"), atol=atol)
        _assert_outputs_close(loaded.predict(x, verbose=0), task.predict(x, verbose=0), atol)
    if export:
        assert tmp_path is not None, "the export check writes under tmp_path"
        requests = x if not isinstance(x, tuple) else None
        if requests is None:  # a pair: the signature's two inputs
            fn, specs = task.serving_signatures()["serving_default"]
            requests = {spec.name: list(texts) for spec, texts in zip(specs, x)}
        assert_task_export_answers_in_fresh_process(
            task, requests, tmp_path, atol=export_atol, process=serving_process
        )
    return task, loaded


# ---------------------------------------------------------------------------
# Two logical devices
# ---------------------------------------------------------------------------

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
