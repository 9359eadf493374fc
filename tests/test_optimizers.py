"""kt.optimizers.layerwise: per-block learning rates, exact per-variable updates."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from conftest import REPO
from conftest import make_tiny_preset

TEXTS = ["a great film", "a good movie", "the plot is dull", "awful and boring"]
DECAY = 0.5  # far from 1, so a wrong exponent shows


def make_model(preset, trainable=True):
    encoder = kt.encoders.BertEncoder.from_preset(
        preset, sequence_length=16, pooling="mean", trainable=trainable
    )
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    features = encoder.preprocessor(tf.constant(TEXTS))
    model(features)
    return encoder, model, features


def expected_multiplier(path, num_blocks=2):
    """Block i (1 = lowest) gets decay**(L - i); embeddings are block 0; the rest 1."""
    if path.split("/")[0] in (
        "token_embedding",
        "position_embedding",
        "segment_embedding",
        "embeddings_layer_norm",
    ):
        return DECAY**num_blocks
    if path.startswith("transformer_layer_"):
        i = int(path.split("/")[0].rsplit("_", 1)[1]) + 1
        return DECAY ** (num_blocks - i)
    return 1.0


def snapshot(variables):
    return [np.array(v) for v in variables]


def test_sgd_update_of_each_variable_is_lr_times_its_multiplier(tiny_preset):
    encoder, model, _ = make_model(tiny_preset)
    optimizer = kt.optimizers.layerwise(keras.optimizers.SGD(0.1), encoder, decay=DECAY)
    variables = model.trainable_variables
    before = snapshot(variables)
    optimizer.apply([tf.ones_like(v) for v in variables], variables)
    seen = set()
    for variable, old in zip(variables, before):
        multiplier = expected_multiplier(variable.path)
        assert optimizer.learning_rate_multiplier(variable) == pytest.approx(multiplier)
        np.testing.assert_allclose(
            old - np.array(variable), 0.1 * multiplier, rtol=1e-5, err_msg=variable.path
        )
        seen.add(multiplier)
    assert seen == {0.25, 0.5, 1.0}


@pytest.mark.parametrize("adamw", [keras.optimizers.AdamW, kt.optimizers.FusedAdamW])
def test_adamw_matches_one_adamw_per_rate_weight_decay_included(tiny_preset, adamw):
    """Two real training steps: each variable moves exactly as under AdamW(lr * multiplier).

    Also with ktransfer's `FusedAdamW` (its fused kernel and per-step scalars
    inside each group), which `benchmarks/finetune.py --layer-decay` uses.
    """
    encoder, model, features = make_model(tiny_preset)
    lr, weight_decay = 1e-2, 0.1
    optimizer = kt.optimizers.layerwise(adamw(lr, weight_decay=weight_decay), encoder, decay=DECAY)
    variables = model.trainable_variables
    labels = tf.constant([1, 1, 0, 0])
    loss_fn = model.layers[1].default_loss()
    copies = [keras.Variable(np.array(v)) for v in variables]
    references = {}
    for step in range(2):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(features, training=False))
        grads = tape.gradient(loss, variables)
        before = snapshot(variables)
        optimizer.apply(grads, variables)
        for variable, copy, grad, old in zip(variables, copies, grads, before):
            multiplier = expected_multiplier(variable.path)
            reference = references.setdefault(
                variable.path, adamw(lr * multiplier, weight_decay=weight_decay)
            )
            reference.apply([grad], [copy])
            np.testing.assert_allclose(np.array(variable), np.array(copy), rtol=0, atol=1e-7)
            if step == 0 and not isinstance(grad, tf.IndexedSlices):
                # First Adam step: update = lr * multiplier * (g / (|g| + eps) + wd * w).
                # (Sparse embedding gradients with repeated ids take Keras' sparse
                # path; the reference comparison above covers them.)
                dense = np.asarray(grad)
                big = np.abs(dense) > 1e-2  # Keras Adam: eps acts as eps / sqrt(1 - beta_2)
                if big.any():
                    update = (old - np.array(variable))[big]
                    expected = lr * multiplier * (np.sign(dense[big]) + weight_decay * old[big])
                    np.testing.assert_allclose(update, expected, rtol=1e-3, atol=1e-8)


def test_fits_with_a_schedule_and_saves_its_state(tiny_preset, tmp_path):
    encoder, model, features = make_model(tiny_preset)
    schedule = kt.schedules.OneCycle(1e-2, total_steps=8)
    model.compile(
        optimizer=kt.optimizers.layerwise(keras.optimizers.AdamW(schedule), encoder, decay=0.9),
        loss=model.layers[1].default_loss(),
    )
    data = kt.data.prepare(
        kt.data.from_lists(TEXTS * 4, [1, 1, 0, 0] * 4), encoder.preprocessor, batch_size=4
    )
    model.fit(data, epochs=1, verbose=0)
    optimizer = model.optimizer
    assert int(optimizer.iterations) == 4
    for multiplier, group in optimizer.groups:  # every group follows the one schedule
        assert float(group.learning_rate) == pytest.approx(
            float(schedule(4)) * multiplier, rel=1e-6
        )

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer, kt.optimizers.LayerwiseOptimizer)
    assert loaded.optimizer.multipliers == optimizer.multipliers
    for saved, restored in zip(optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.array(saved), np.array(restored))
    loaded.fit(data, epochs=1, verbose=0)  # training resumes
    assert int(loaded.optimizer.iterations) == 8


def test_a_float_rate_is_settable_and_the_groups_follow(tiny_preset):
    """What keras.callbacks.LearningRateScheduler / ReduceLROnPlateau do."""
    encoder, model, _ = make_model(tiny_preset)
    optimizer = kt.optimizers.layerwise(keras.optimizers.Adam(1e-3), encoder, DECAY)
    optimizer.build(model.trainable_variables)
    optimizer.learning_rate = 5e-4
    assert float(optimizer.learning_rate) == pytest.approx(5e-4)
    rates = {multiplier: float(group.learning_rate) for multiplier, group in optimizer.groups}
    assert rates == pytest.approx({1.0: 5e-4, 0.5: 2.5e-4, 0.25: 1.25e-4})
    assert optimizer.get_config()["optimizer"]["config"]["learning_rate"] == pytest.approx(5e-4)


def test_global_clipnorm_clips_all_groups_together(tiny_preset):
    encoder, model, _ = make_model(tiny_preset)
    optimizer = kt.optimizers.layerwise(
        keras.optimizers.SGD(1.0, global_clipnorm=1.0), encoder, DECAY
    )
    variables = model.trainable_variables
    before = snapshot(variables)
    optimizer.apply([tf.ones_like(v) for v in variables], variables)
    norm = np.sqrt(sum(np.prod(v.shape) for v in variables))  # the global norm of all-ones
    for variable, old in zip(variables, before):
        expected = expected_multiplier(variable.path) / norm
        np.testing.assert_allclose(old - np.array(variable), expected, rtol=1e-4)


def test_frozen_variables_and_gradual_subsets_are_accepted(tiny_preset):
    encoder, model, _ = make_model(tiny_preset)
    optimizer = kt.optimizers.layerwise(keras.optimizers.SGD(0.1), encoder, DECAY)
    optimizer.build(model.trainable_variables)
    encoder.set_trainable(1)  # only the top block + head now
    variables = model.trainable_variables
    before = snapshot(variables)
    optimizer.apply([tf.ones_like(v) for v in variables], variables)
    for variable, old in zip(variables, before):
        np.testing.assert_allclose(
            old - np.array(variable), 0.1 * expected_multiplier(variable.path), rtol=1e-5
        )
    with pytest.raises(ValueError, match="Unknown variable"):
        stranger = keras.Variable(np.zeros(3, "float32"))
        optimizer.apply([tf.ones(3)], [stranger])


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda e: kt.optimizers.layerwise(keras.optimizers.Adam(), e, decay=0.0),
            ValueError,
            r"\(0, 1\]",
        ),
        (
            lambda e: kt.optimizers.layerwise(keras.optimizers.Adam(), e, decay=1.5),
            ValueError,
            r"\(0, 1\]",
        ),
        (lambda e: kt.optimizers.layerwise("adam", e), TypeError, "Keras optimizer"),
        (
            lambda e: kt.optimizers.layerwise(keras.optimizers.Adam(), keras.layers.Dense(2)),
            TypeError,
            "BertEncoder",
        ),
        (
            lambda e: kt.optimizers.layerwise(
                keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()), e
            ),
            TypeError,
            "wrap the other way",
        ),
        (
            lambda e: kt.optimizers.LayerwiseOptimizer(keras.optimizers.Adam(), [("x/", -1.0)]),
            ValueError,
            "positive number",
        ),
    ],
)
def test_bad_arguments_name_the_problem(tiny_preset, make, error, match):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16)
    with pytest.raises(error, match=match):
        make(encoder)


def test_built_optimizer_is_refused(tiny_preset):
    encoder, model, _ = make_model(tiny_preset)
    adam = keras.optimizers.Adam()
    adam.build(model.trainable_variables)
    with pytest.raises(ValueError, match="already built"):
        kt.optimizers.layerwise(adam, encoder)


def test_mirrored_over_two_cpu_devices(tmp_path):
    """Under MirroredStrategy: the same weights as on one device, and per-variable rates."""
    preset = make_tiny_preset(tmp_path / "preset", dropout=0.0)
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, ktransfer as kt

        def train(strategy):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                encoder = kt.encoders.BertEncoder.from_preset({preset!r}, sequence_length=16, pooling="mean")
                model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
                optimizer = kt.optimizers.layerwise(keras.optimizers.AdamW(1e-2, weight_decay=0.0),
                                                    encoder, decay={DECAY})
                model.compile(optimizer=optimizer, loss=model.layers[1].default_loss())
                texts = ["a great film", "a good movie", "the plot is dull", "awful and boring"] * 2
                data = kt.data.prepare(kt.data.from_lists(texts, [1, 1, 0, 0] * 2), encoder.preprocessor,
                                       batch_size=8, bucket=False, drop_remainder=True)
                model(next(iter(data))[0])
            start = {{v.path: np.array(v) for v in model.trainable_variables}}
            model.fit(data, epochs=1, verbose=0)  # one step
            ratios = {{}}
            for v in model.trainable_variables:
                step = np.abs(start[v.path] - np.array(v))
                moved = step[step > 1e-6]
                if moved.size:
                    multiplier = optimizer.learning_rate_multiplier(v)
                    ratios.setdefault(multiplier, []).append(float(np.median(moved)) / 1e-2)
            return [np.array(w) for w in model.get_weights()], ratios

        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert mirrored.num_replicas_in_sync == 2
        one, _ = train(tf.distribute.get_strategy())
        two, ratios = train(mirrored)
        print("MAXDIFF", max(float(np.abs(a - b).max()) for a, b in zip(one, two)))
        for multiplier, values in sorted(ratios.items()):
            print("RATIO", multiplier, float(np.median(values)))
        """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split("MAXDIFF")[1].split()[0]) < 1e-4
    ratios = {
        float(line.split()[1]): float(line.split()[2])
        for line in result.stdout.splitlines()
        if line.startswith("RATIO")
    }
    assert sorted(ratios) == [0.25, 0.5, 1.0]
    for multiplier, ratio in ratios.items():  # first Adam step: |update| ~= lr * multiplier
        assert ratio == pytest.approx(multiplier, rel=0.02)


# --------------------------------------------------------------------------
# FusedAdamW
# --------------------------------------------------------------------------


def _adamw_run(optimizer, steps=5):
    """A few steps on an embedding (sparse gradients) and a dense layer."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((3,), dtype="int32"),
        keras.layers.Embedding(16, 4),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(2),
    ])
    model.compile(optimizer=optimizer, loss="mse")
    # No id twice in a batch: with repeated ids Keras squares each
    # occurrence's gradient before summing them, where Adam (and the fused
    # kernel) squares the summed gradient. Rows 0 and 13-15 are never looked up.
    x = np.arange(1, 13, dtype="int32").reshape(4, 3)[[0, 1, 2, 3, 0, 1, 2, 3]]
    y = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
    start = [w.copy() for w in model.get_weights()]
    model.fit(x, y, batch_size=4, epochs=steps // 2 + 1, verbose=0, shuffle=False)
    return start, model.get_weights()


@pytest.mark.parametrize("schedule", [False, True])
def test_fused_adamw_equals_keras_adamw(schedule):
    import keras

    learning_rate = 0.05
    if schedule:  # evaluated once per step for all variables, as Keras does per variable
        learning_rate = keras.optimizers.schedules.PolynomialDecay(0.05, 10, 0.001)
    settings = dict(learning_rate=learning_rate, weight_decay=0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-6)
    start, expected = _adamw_run(keras.optimizers.AdamW(**settings))
    _, fused = _adamw_run(kt.optimizers.FusedAdamW(**settings))
    for a, b in zip(expected, fused):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Exact (not lazy) Adam: embedding rows never looked up still move
    # (weight decay; the momentum of rows seen earlier).
    assert np.abs(fused[0][0] - start[0][0]).max() > 0


def test_fused_adamw_config_round_trip():
    import keras

    optimizer = kt.optimizers.FusedAdamW(learning_rate=1e-3, weight_decay=0.02)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, kt.optimizers.FusedAdamW)
    assert restored.get_config() == optimizer.get_config()


def test_fused_adamw_under_mirrored_strategy_matches_single_device():
    from harness import train_on_one_and_two_devices

    difference, change = train_on_one_and_two_devices(
        """
        def train(strategy):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(10, 4),
                                          keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
                model.compile(optimizer=kt.optimizers.FusedAdamW(0.05, weight_decay=0.01), loss="mse")
            x = np.array([[1, 2, 3], [4, 5, 1]] * 4, "int32")
            y = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
            data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
            start = [np.array(w) for w in model.get_weights()]
            model.fit(data, epochs=3, verbose=0)
            return start, [np.array(w) for w in model.get_weights()]
        """
    )
    assert difference < 1e-5
    assert change > 1e-2


# --------------------------------------------------------------------------
# FusedAdamW(sparse_embeddings=True): lazy Adam(W) on the rows a batch looks up
# --------------------------------------------------------------------------

SPARSE = dict(learning_rate=0.05, weight_decay=0.1, beta_1=0.8, beta_2=0.95, epsilon=1e-6)


def _lazy_adamw_reference(table, steps, settings=SPARSE):
    """numpy lazy AdamW: decay then Adam on the touched rows, global-step bias correction."""
    lr, wd = settings["learning_rate"], settings["weight_decay"]
    b1, b2, eps = settings["beta_1"], settings["beta_2"], settings["epsilon"]
    w = table.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, (indices, values) in enumerate(steps, start=1):
        rows = np.unique(indices)
        g = np.zeros((len(rows), w.shape[1]))
        for i, row in enumerate(rows):  # repeated ids: summed, then squared
            g[i] = values[indices == row].sum(0)
        w[rows] -= w[rows] * wd * lr
        m[rows] += (g - m[rows]) * (1 - b1)
        v[rows] += (g**2 - v[rows]) * (1 - b2)
        w[rows] -= lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m[rows] / (np.sqrt(v[rows]) + eps)
    return w, m, v


def _sparse_steps():
    rng = np.random.default_rng(1)
    ids = [np.array([1, 4, 4, 7]), np.array([4, 9, 1]), np.array([2, 2, 2])]  # 0, 3, 5, 6, 8 never
    return [(i, rng.normal(size=(len(i), 3)).astype("float32")) for i in ids]


def _apply_sparse(sparse_embeddings, steps, exclude_table=False):
    keras.utils.set_random_seed(0)
    table = keras.Variable(np.random.default_rng(0).normal(size=(10, 3)).astype("float32"))
    dense = keras.Variable(np.random.default_rng(2).normal(size=(3, 2)).astype("float32"))
    optimizer = kt.optimizers.FusedAdamW(sparse_embeddings=sparse_embeddings, **SPARSE)
    if exclude_table:
        optimizer.exclude_from_weight_decay(var_list=[table])
    start = np.array(table)
    for step, (indices, values) in enumerate(steps):
        grads = [
            tf.IndexedSlices(tf.constant(values), tf.constant(indices), tf.constant([10, 3])),
            tf.constant(np.full((3, 2), 0.1 * (step + 1), "float32")),
        ]
        optimizer.apply(grads, [table, dense])
    index = optimizer._get_variable_index(table)
    m, v = (np.array(x[index]) for x in (optimizer._momentums, optimizer._velocities))
    return start, np.array(table), m, v, np.array(dense)


def test_sparse_embeddings_leave_untouched_rows_bit_unchanged():
    steps = _sparse_steps()
    start, table, m, v, _ = _apply_sparse(True, steps)
    never = [0, 3, 5, 6, 8]
    np.testing.assert_array_equal(table[never], start[never])  # no momentum, no weight decay
    np.testing.assert_array_equal(m[never], 0)
    np.testing.assert_array_equal(v[never], 0)
    # Row 7 is touched at step 1 only: after it, its weight and moments stay put.
    keras.utils.set_random_seed(0)
    after_one = _apply_sparse(True, steps[:1])
    np.testing.assert_array_equal(table[7], after_one[1][7])
    np.testing.assert_array_equal(m[7], after_one[2][7])
    np.testing.assert_array_equal(v[7], after_one[3][7])
    # Dense Adam moves every row that has momentum or weight decay.
    dense_start, dense_table, *_ = _apply_sparse(False, steps)
    assert np.abs(dense_table[never] - dense_start[never]).min() > 0


def test_sparse_embeddings_touched_rows_equal_lazy_adamw_reference():
    steps = _sparse_steps()
    start, table, m, v, _ = _apply_sparse(True, steps)
    w_ref, m_ref, v_ref = _lazy_adamw_reference(start, steps)
    np.testing.assert_allclose(table, w_ref, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(m, m_ref, rtol=2e-6, atol=1e-8)
    np.testing.assert_allclose(v, v_ref, rtol=2e-6, atol=1e-9)
    # `exclude_from_weight_decay` holds for the touched rows too.
    start, table, *_ = _apply_sparse(True, steps, exclude_table=True)
    w_ref, _, _ = _lazy_adamw_reference(start, steps, dict(SPARSE, weight_decay=0.0))
    np.testing.assert_allclose(table, w_ref, rtol=2e-6, atol=1e-7)


def test_sparse_embeddings_leave_dense_variables_bit_identical_and_off_is_dense():
    steps = _sparse_steps()
    on = _apply_sparse(True, steps)
    off = _apply_sparse(False, steps)
    np.testing.assert_array_equal(on[4], off[4])  # a dense gradient: the same fused update
    # Off: exactly today's dense update, i.e. the same as without the argument
    # and equal to Keras's AdamW on the densified gradient.
    keras.utils.set_random_seed(0)
    table = keras.Variable(off[0])
    dense = keras.Variable(np.random.default_rng(2).normal(size=(3, 2)).astype("float32"))
    reference = keras.optimizers.AdamW(**SPARSE)
    for step, (indices, values) in enumerate(steps):
        grad = tf.math.unsorted_segment_sum(values, indices, 10)
        reference.apply([grad, tf.constant(np.full((3, 2), 0.1 * (step + 1), "float32"))], [table, dense])
    np.testing.assert_allclose(off[1], np.array(table), rtol=1e-5, atol=1e-6)
    plain = kt.optimizers.FusedAdamW(**SPARSE)
    assert plain.sparse_embeddings is False


@pytest.mark.parametrize("sparse_embeddings", [False, True])
def test_sparse_embeddings_through_fit_keras_passes_indexed_slices(sparse_embeddings):
    """Keras 3's trainer hands the optimizer the embedding's tf.IndexedSlices as they are."""
    start, after = _adamw_run(kt.optimizers.FusedAdamW(sparse_embeddings=sparse_embeddings, **SPARSE))
    never = [0, 13, 14, 15]
    moved = np.abs(after[0][never] - start[0][never]).max()
    assert (moved == 0) if sparse_embeddings else (moved > 0)
    assert np.abs(after[0][1:13] - start[0][1:13]).min() > 0


def test_sparse_embeddings_tiny_bert_trains_and_keeps_unused_rows(tiny_preset):
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="mean")
    clf = kt.tasks.TextClassifier(encoder=encoder, num_classes=2)
    clf.compile(optimizer=kt.optimizers.FusedAdamW(1e-2, sparse_embeddings=True))
    features = encoder.preprocessor(tf.constant(TEXTS))
    used = np.unique(np.asarray(features["token_ids"]))
    table = next(v for v in clf.trainable_variables if v.path.endswith("token_embedding/embeddings"))
    before = np.array(table)
    unused = np.setdiff1d(np.arange(before.shape[0]), used)
    assert len(unused) > 5
    history = clf.fit(x=TEXTS * 4, y=[1, 1, 0, 0] * 4, batch_size=4, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses
    after = np.array(table)
    np.testing.assert_array_equal(after[unused], before[unused])
    assert np.abs(after[used] - before[used]).min() > 0


def test_sparse_embeddings_config_round_trip_and_bad_arguments():
    from harness import assert_config_round_trip

    optimizer = kt.optimizers.FusedAdamW(1e-3, weight_decay=0.02, sparse_embeddings=True)
    assert optimizer.get_config()["sparse_embeddings"] is True
    revived = assert_config_round_trip(optimizer)
    assert revived.sparse_embeddings is True
    assert kt.optimizers.FusedAdamW.from_config(
        kt.optimizers.FusedAdamW(1e-3).get_config()
    ).sparse_embeddings is False
    with pytest.raises(TypeError, match="sparse_embeddings"):
        kt.optimizers.FusedAdamW(sparse_embeddings="yes")
    with pytest.raises(ValueError, match="amsgrad"):
        kt.optimizers.FusedAdamW(sparse_embeddings=True, amsgrad=True)


def test_sparse_embeddings_under_mirrored_strategy_matches_single_device():
    from harness import train_on_one_and_two_devices

    difference, change = train_on_one_and_two_devices(
        """
        def train(strategy):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(10, 4),
                                          keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
                model.compile(optimizer=kt.optimizers.FusedAdamW(0.05, weight_decay=0.01,
                                                                 sparse_embeddings=True), loss="mse")
            # id 1 in both replicas' halves of a batch: the all-reduced slices repeat it
            x = np.array([[1, 2, 3], [4, 5, 1]] * 4, "int32")
            y = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
            data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
            start = [np.array(w) for w in model.get_weights()]
            model.fit(data, epochs=3, verbose=0)
            after = [np.array(w) for w in model.get_weights()]
            for row in (0, 6, 7, 8, 9):  # never looked up
                assert (after[0][row] == start[0][row]).all(), row
            return start, after
        """
    )
    assert difference < 1e-5
    assert change > 1e-2
