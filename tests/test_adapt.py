"""kt.adapt (DANN, CORAL, MMD), kt.layers.GradientReversal, kt.data.zip_domains."""

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
from harness import assert_config_round_trip
from harness import assert_export_answers_in_fresh_process
from harness import assert_keras_round_trip

TEXTS = ["a great film", "a good movie", "the plot is dull", "awful and boring"]
LABELS = [1, 1, 0, 0]
TARGET_TEXTS = ["it was very fine", "not good acting", "love the plot !", "hate it"]


def vectors(n, dim=5, seed=0, shift=0.0):
    return (np.random.default_rng(seed).normal(size=(n, dim)) + shift).astype("float32")


def dense_encoder(units=4):
    return keras.Sequential([keras.layers.Dense(units, activation="tanh")], name="encoder")


# --------------------------------------------------------------------------
# GradientReversal
# --------------------------------------------------------------------------


def test_gradient_reversal_is_identity_forward_and_scales_gradient_by_minus_lambda():
    layer = kt.layers.GradientReversal(lambda_=0.7)
    x = tf.constant(vectors(3, 4))
    upstream = tf.constant(vectors(3, 4, seed=1))

    @tf.function
    def forward_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return y, tape.gradient(y, x, output_gradients=upstream)

    y, gradient = forward_and_gradient(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(gradient.numpy(), -0.7 * upstream.numpy(), rtol=1e-6)
    layer.lambda_.assign(0.25)  # read by the same traced function: no retracing
    _, gradient = forward_and_gradient(x)
    np.testing.assert_allclose(gradient.numpy(), -0.25 * upstream.numpy(), rtol=1e-6)
    assert forward_and_gradient.experimental_get_tracing_count() == 1
    assert layer.trainable_weights == []


def test_gradient_reversal_config_and_validation():
    layer = kt.layers.GradientReversal(lambda_=0.3, name="reverse")
    layer.lambda_.assign(0.6)
    revived = assert_config_round_trip(layer)
    assert revived.get_config()["lambda_"] == pytest.approx(0.6)
    for bad in (-1.0, "big", None, True):
        with pytest.raises(ValueError, match="lambda_"):
            kt.layers.GradientReversal(lambda_=bad)


def test_ganin_schedule_values():
    assert kt.adapt.ganin_lambda(0.0) == 0.0
    assert kt.adapt.ganin_lambda(0.5) == pytest.approx(2 / (1 + np.exp(-5)) - 1)
    assert kt.adapt.ganin_lambda(1.0) == pytest.approx(2 / (1 + np.exp(-10)) - 1)


# --------------------------------------------------------------------------
# The alignment losses against numpy
# --------------------------------------------------------------------------


def numpy_coral(s, t):
    d = s.shape[1]
    cs, ct = np.cov(s, rowvar=False), np.cov(t, rowvar=False)  # unbiased, n - 1
    return np.sum((cs - ct) ** 2) / (4 * d * d)


def numpy_mmd(s, t, multipliers):
    z = np.concatenate([s, t]).astype("float64")
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    sigma2 = d2.mean()
    k = sum(np.exp(-d2 / (2 * m * sigma2)) for m in multipliers)
    n = len(s)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def test_coral_and_mmd_losses_equal_numpy_references():
    s, t = vectors(7, 3, seed=2), vectors(5, 3, seed=3, shift=0.5)
    np.testing.assert_allclose(kt.adapt.coral_loss(s, t).numpy(), numpy_coral(s, t), rtol=1e-5)
    multipliers = kt.adapt.DEFAULT_KERNEL_MULTIPLIERS
    np.testing.assert_allclose(
        kt.adapt.mmd_loss(s, t).numpy(), numpy_mmd(s, t, multipliers), rtol=1e-4
    )
    np.testing.assert_allclose(
        kt.adapt.mmd_loss(s, t, (1.0,)).numpy(), numpy_mmd(s, t, (1.0,)), rtol=1e-4
    )
    assert abs(float(kt.adapt.mmd_loss(s, s))) < 1e-6  # same distribution: 0
    assert float(kt.adapt.coral_loss(s, s)) == 0.0


# --------------------------------------------------------------------------
# zip_domains
# --------------------------------------------------------------------------


def test_zip_domains_pairs_batches_repeats_the_target_and_drops_its_labels():
    source = tf.data.Dataset.from_tensor_slices((vectors(10), np.arange(10) % 2)).batch(4)
    target = tf.data.Dataset.from_tensor_slices((vectors(3, seed=1), np.ones(3))).batch(2)
    source.class_names = ["neg", "pos"]
    zipped = kt.data.zip_domains(source, target)
    batches = list(zipped.as_numpy_iterator())
    assert len(batches) == 3  # one pass over the source
    assert zipped.class_names == ["neg", "pos"]
    (x, y) = batches[0]
    assert sorted(x) == ["source", "target"] and y.tolist() == [0, 1, 0, 1]
    target_sizes = [len(x["target"]) for x, _ in batches]
    assert target_sizes == [2, 1, 2]  # the 3 target examples, repeated
    np.testing.assert_array_equal(batches[2][0]["target"], vectors(3, seed=1)[:2])


def test_zip_domains_rejects_what_it_cannot_pair():
    labelled = tf.data.Dataset.from_tensor_slices((vectors(4), [0, 1, 0, 1])).batch(2)
    unlabelled = tf.data.Dataset.from_tensor_slices(vectors(4)).batch(2)
    with pytest.raises(ValueError, match="labelled batches"):
        kt.data.zip_domains(unlabelled, unlabelled)
    with pytest.raises(ValueError, match="batches of model inputs"):
        kt.data.zip_domains(labelled, tf.data.Dataset.from_tensor_slices(["a", "b"]))
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        kt.data.zip_domains(labelled, [1, 2])


# --------------------------------------------------------------------------
# The train steps, against gradients computed by hand
# --------------------------------------------------------------------------


def one_batch():
    xs, ys = vectors(8, seed=4), np.array([0, 1] * 4, "int32")
    xt = vectors(6, seed=5, shift=1.0)
    source = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(8)
    target = tf.data.Dataset.from_tensor_slices(xt).batch(6)
    return xs, ys, xt, kt.data.zip_domains(source, target)


def built(model, xs):
    features = model.encoder(xs)
    model.task_head(features)
    model.build_adaptation(features)  # the domain head, if any
    return model


def gradients(tape, loss, variables):
    return [
        np.zeros(v.shape, "float32") if g is None else g.numpy()
        for v, g in zip(variables, tape.gradient(loss, variables))
    ]


def weights_by_path(model):
    return {w.path: np.array(w) for w in model.trainable_weights}


def test_dann_step_trains_the_domain_head_and_reverses_its_gradient_into_the_encoder():
    xs, ys, xt, data = one_batch()
    domain_head = keras.layers.Dense(1, name="domain_logit")
    model = built(
        kt.adapt.DANN(
            dense_encoder(), kt.heads.ClassificationHead(2), domain_head=domain_head,
            lambda_=0.5, domain_loss_weight=2.0, ramp=False, fallback=False,
        ),
        xs,
    )
    scce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape(persistent=True) as tape:
        fs, ft = model.encoder(xs), model.encoder(xt)
        task = scce(ys, model.task_head(fs))
        logits = tf.concat([domain_head(fs)[:, 0], domain_head(ft)[:, 0]], 0)
        domains = tf.constant([0.0] * 8 + [1.0] * 6)
        domain = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=domains, logits=logits)
        )
    variables = model.trainable_weights
    task_grads = gradients(tape, task, variables)
    domain_grads = gradients(tape, domain, variables)
    encoder_paths = {w.path for w in model.encoder.trainable_weights}
    before = weights_by_path(model)

    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=scce, metrics=["accuracy"])
    history = model.fit(data, epochs=1, verbose=0)

    after = weights_by_path(model)
    for w, g_task, g_domain in zip(variables, task_grads, domain_grads):
        sign = -0.5 if w.path in encoder_paths else 1.0  # reversed, times lambda
        expected = before[w.path] - 0.1 * (g_task + sign * 2.0 * g_domain)
        np.testing.assert_allclose(after[w.path], expected, atol=1e-6, err_msg=w.path)
    kernel = domain_head.kernel.path
    assert np.abs(after[kernel] - before[kernel]).max() > 1e-4  # the domain head learned
    assert history.history["domain_loss"][0] == pytest.approx(float(domain), rel=1e-5)
    assert history.history["loss"][0] == pytest.approx(float(task), rel=1e-5)
    assert 0.0 <= history.history["domain_accuracy"][0] <= 1.0


@pytest.mark.parametrize("name", ["CORAL", "MMD"])
def test_alignment_step_adds_the_weighted_loss_to_the_task_loss(name):
    xs, ys, xt, data = one_batch()
    model = built(
        getattr(kt.adapt, name)(
            dense_encoder(), kt.heads.ClassificationHead(2), alignment_weight=3.0,
            ramp=False, fallback=False,
        ),
        xs,
    )
    align = kt.adapt.coral_loss if name == "CORAL" else kt.adapt.mmd_loss
    scce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        fs, ft = model.encoder(xs), model.encoder(xt)
        task = scce(ys, model.task_head(fs))
        alignment = align(fs, ft)
        total = task + 3.0 * alignment
    variables = model.trainable_weights
    grads = gradients(tape, total, variables)
    before = weights_by_path(model)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=scce)
    history = model.fit(data, epochs=1, verbose=0)
    after = weights_by_path(model)
    for w, g in zip(variables, grads):
        np.testing.assert_allclose(after[w.path], before[w.path] - 0.5 * g, atol=1e-6)
    assert history.history[f"{name.lower()}_loss"][0] == pytest.approx(float(alignment), rel=1e-4)
    assert float(alignment) > 0


def test_evaluate_and_predict_use_the_task_path_only():
    xs, ys, _, data = one_batch()
    encoder, head = dense_encoder(), kt.heads.ClassificationHead(2)
    model = kt.adapt.DANN(encoder, head, fallback=False)
    model.compile(optimizer="sgd", loss=head.default_loss(), metrics=["accuracy"])
    model.fit(data, epochs=1, verbose=0)
    plain = keras.Sequential([encoder, head])  # the same layers, no domain head
    plain.compile(loss=head.default_loss(), metrics=["accuracy"])
    results = model.evaluate(xs, ys, verbose=0, return_dict=True)
    assert sorted(results) == ["accuracy", "loss"]
    expected = plain.evaluate(xs, ys, verbose=0, return_dict=True)
    assert results == pytest.approx(expected)
    np.testing.assert_allclose(model.predict(xs, verbose=0), plain.predict(xs, verbose=0))
    with pytest.raises(ValueError, match="zip_domains"):
        model.evaluate(data, verbose=0)
    with pytest.raises(ValueError, match="zip_domains"):
        model.fit(tf.data.Dataset.from_tensor_slices((xs, ys)).batch(4), verbose=0)


def test_schedule_follows_ganin_and_needs_a_known_length():
    xs, ys = vectors(12, seed=6), np.array([0, 1] * 6, "int32")
    source = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(4)  # 3 steps per epoch
    target = tf.data.Dataset.from_tensor_slices(vectors(4, seed=7)).batch(4)
    head = kt.heads.ClassificationHead(2)
    model = kt.adapt.DANN(dense_encoder(), head, lambda_=1.0, fallback=False)
    model.compile(optimizer="sgd", loss=head.default_loss())
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(float(model.gradient_reversal.lambda_))
    )
    schedule = kt.adapt.GradientReversalSchedule()
    history = model.fit(
        kt.data.zip_domains(source, target), epochs=2, verbose=0, callbacks=[schedule, record]
    )
    expected = [kt.adapt.ganin_lambda(step / 6) for step in range(6)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    assert history.history["gradient_reversal_lambda"] == pytest.approx(expected[2::3])
    unknown = kt.data.zip_domains(source.filter(lambda x, y: True), target)
    with pytest.raises(ValueError, match="total_steps"):
        model.fit(unknown, epochs=1, verbose=0, callbacks=[kt.adapt.GradientReversalSchedule()])
    with pytest.raises(ValueError, match="no kt.layers.GradientReversal"):
        plain = kt.adapt.CORAL(dense_encoder(), kt.heads.ClassificationHead(2), fallback=False)
        plain.compile(optimizer="sgd", loss=head.default_loss())
        plain.fit(kt.data.zip_domains(source, target), verbose=0,
                  callbacks=[kt.adapt.GradientReversalSchedule()])


def test_alignment_schedule_ramps_the_alignment_term_in():
    xs, ys = vectors(12, seed=8), np.array([0, 1] * 6, "int32")
    source = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(4)  # 3 steps per epoch
    target = tf.data.Dataset.from_tensor_slices(vectors(4, seed=9, shift=3.0)).batch(4)
    head = kt.heads.ClassificationHead(2, dropout=0.0)
    encoder = dense_encoder()
    model = kt.adapt.MMD(encoder, head, alignment_weight=5.0, fallback=False)
    model.compile(optimizer="sgd", loss=head.default_loss())
    model(kt.data.zip_domains(source, target).take(1).get_single_element()[0])
    plain = keras.Sequential([dense_encoder(), kt.heads.ClassificationHead(2, dropout=0.0)])
    plain(xs[:4])
    plain.set_weights([w.numpy() for w in encoder.weights + head.weights])
    plain.compile(optimizer="sgd", loss=head.default_loss())

    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(float(model.alignment_scale))
    )
    schedule = kt.adapt.AlignmentWeightSchedule(total_steps=6)
    model.fit(kt.data.zip_domains(source, target).take(1), epochs=1, verbose=0,
              callbacks=[schedule, record])
    # Step 0 has scale 0: the update is the source-only one, alignment or not.
    plain.fit(source.take(1), epochs=1, verbose=0)
    for mine, reference in zip(encoder.weights + head.weights, plain.weights):
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-6, atol=1e-7)
    history = model.fit(kt.data.zip_domains(source, target), epochs=1, verbose=0,
                        callbacks=[kt.adapt.AlignmentWeightSchedule(), record])
    expected = [0.0] + [kt.adapt.ganin_lambda(step / 3) for step in range(3)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    assert history.history["alignment_scale"] == pytest.approx(expected[-1:])
    # A later step with scale > 0 moves the encoder differently from source-only.
    assert not np.allclose(encoder.weights[0].numpy(), plain.weights[0].numpy())
    with pytest.raises(ValueError, match="GradientReversalSchedule"):
        dann = kt.adapt.DANN(dense_encoder(), kt.heads.ClassificationHead(2), fallback=False)
        dann.compile(optimizer="sgd", loss=head.default_loss())
        dann.fit(kt.data.zip_domains(source, target), verbose=0,
                 callbacks=[kt.adapt.AlignmentWeightSchedule()])


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="encoder"):
        kt.adapt.DANN("minilm", kt.heads.ClassificationHead(2))
    with pytest.raises(ValueError, match="domain_loss_weight"):
        kt.adapt.DANN(dense_encoder(), kt.heads.ClassificationHead(2), domain_loss_weight=-1)
    with pytest.raises(ValueError, match="alignment_weight"):
        kt.adapt.CORAL(dense_encoder(), kt.heads.ClassificationHead(2), alignment_weight="x")
    with pytest.raises(ValueError, match="kernel_multipliers"):
        kt.adapt.MMD(dense_encoder(), kt.heads.ClassificationHead(2), kernel_multipliers=[0])


# --------------------------------------------------------------------------
# A tiny BERT: serialisation and raw-string export
# --------------------------------------------------------------------------


def tiny_bert_data(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="mean")
    source = kt.data.prepare(
        kt.data.from_lists(TEXTS, LABELS), encoder.preprocessor, batch_size=4, shuffle=True, seed=0
    )
    target = kt.data.prepare(kt.data.from_lists(TARGET_TEXTS), encoder.preprocessor, batch_size=4)
    return encoder, kt.data.zip_domains(source, target)


def tiny_bert_source_validation(encoder):
    return kt.data.prepare(kt.data.from_lists(TEXTS[::-1], LABELS[::-1]), encoder.preprocessor,
                           batch_size=4)


# DANN only: CORAL and MMD run the same `DomainAdaptationModel.fit` (its
# fallback rule is the same code), and their config and .keras round trips
# are tests/test_contracts.py::test_domain_adaptation_models.
@pytest.mark.parametrize("name", ["DANN"])
def test_config_and_keras_round_trip(tiny_preset, tmp_path, name):
    encoder, data = tiny_bert_data(tiny_preset)
    head = kt.heads.ClassificationHead(2)
    model = getattr(kt.adapt, name)(encoder, head)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=head.default_loss())
    # The full default path: the source-only reference, the rule, its choice.
    model.fit(data, epochs=1, verbose=0, source_validation=tiny_bert_source_validation(encoder))
    assert model.adaptation_report["kept"] in ("adapted", "source_only")
    revived = assert_config_round_trip(model)
    assert revived.fallback is True and revived.ramp is True
    assert type(revived.task_head) is kt.heads.ClassificationHead
    features = encoder.preprocessor(tf.constant(TEXTS))
    assert_keras_round_trip(model, features, tmp_path, atol=1e-6)


def test_dann_exports_encoder_and_task_head_for_raw_strings(tiny_preset, tmp_path):
    encoder, data = tiny_bert_data(tiny_preset)
    head = kt.heads.ClassificationHead(2)
    wrong = kt.adapt.DANN(
        dense_encoder(), kt.heads.ClassificationHead(2), domain_head=kt.heads.ClassificationHead(3),
        fallback=False,
    )
    wrong.compile(optimizer="sgd", loss=head.default_loss())
    with pytest.raises(ValueError, match="one logit"):
        wrong.fit(one_batch()[-1], epochs=1, verbose=0)
    # A domain head that is itself a classification head (one sigmoid logit):
    # export must still pick the task head.
    decoy = kt.heads.ClassificationHead(1, multi_label=True, name="decoy")
    model = kt.adapt.DANN(encoder, head, domain_head=decoy)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=head.default_loss())
    model.fit(data, epochs=1, verbose=0, source_validation=tiny_bert_source_validation(encoder))
    assert decoy.built and kt.transfer.find_head(model) is head and head.output_activation == "softmax"
    texts = ["a great film", "awful and boring plot"]
    expected = tf.nn.softmax(model(encoder.preprocessor(tf.constant(texts)))).numpy()
    _, answer = assert_export_answers_in_fresh_process(
        model, texts, tmp_path, labels=["negative", "positive"],
        expected_probabilities=expected, preprocessor=encoder.preprocessor,
    )
    assert np.asarray(answer["probabilities"]).shape == (2, 2)


# --------------------------------------------------------------------------
# MirroredStrategy over two logical CPUs
# --------------------------------------------------------------------------


def test_mirrored_over_two_cpu_devices_matches_single_device():
    """Same global batches on 1 device and on 2 logical CPUs: same weights."""
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, ktransfer as kt

        rng = np.random.default_rng(0)
        xs = rng.normal(size=(32, 6)).astype("float32")
        ys = (xs[:, 0] > 0).astype("int32")
        xt = (rng.normal(size=(16, 6)) + 0.5).astype("float32")

        def train(strategy, name):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                encoder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh")])
                head = kt.heads.ClassificationHead(2)
                model = getattr(kt.adapt, name)(encoder, head, fallback=False, **({"domain_hidden_dim": 4} if name == "DANN" else {}))
                model.compile(optimizer=keras.optimizers.SGD(0.5), loss=head.default_loss())
            source = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(8)
            target = tf.data.Dataset.from_tensor_slices(xt).batch(8)
            callbacks = [kt.adapt.GradientReversalSchedule()] if name == "DANN" else []
            history = model.fit(kt.data.zip_domains(source, target), epochs=2, verbose=0, callbacks=callbacks)
            return [np.array(w) for w in model.get_weights()], history.history

        mirrored = kt.distribute.get_strategy("mirrored")
        assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
        for name in ("DANN", "CORAL", "MMD"):
            (one, h1), (two, h2) = train(tf.distribute.get_strategy(), name), train(mirrored, name)
            diff = max(float(np.abs(a - b).max()) for a, b in zip(one, two))
            key = {"DANN": "domain_loss", "CORAL": "coral_loss", "MMD": "mmd_loss"}[name]
            logged = max(abs(a - b) for a, b in zip(h1[key] + h1["loss"], h2[key] + h2["loss"]))
            print("RESULT", name, diff, logged, h1[key][-1])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("RESULT")]
    assert [row[0] for row in rows] == ["DANN", "CORAL", "MMD"]
    for name, weights_diff, logged_diff, adaptation_loss in rows:
        assert float(weights_diff) < 1e-5, (name, weights_diff)
        assert float(logged_diff) < 1e-5, (name, logged_diff)  # logs unscaled alike
        assert float(adaptation_loss) > 0, name


# --------------------------------------------------------------------------
# Safe defaults: the ramp inside fit, and the fallback to source-only weights
# --------------------------------------------------------------------------


def shifted_pair(target_positive_rate, shift, seed=0):
    """Source: balanced, the label is the sign of x0. Target: `shift` along x1, x2."""
    rng = np.random.default_rng(seed)

    def domain(n, shift, positive_rate=0.5):
        y = (rng.random(n) < positive_rate).astype("int32")
        x = rng.normal(size=(n, 6)).astype("float32")
        x[:, 0] += np.where(y == 1, 1.5, -1.5)
        x[:, 1:3] += shift
        return x, y

    return domain(256, 0.0), domain(128, 0.0), domain(256, shift, target_positive_rate)


def fallback_setup(domain_loss_weight, target_positive_rate=0.5, shift=3.0, seed=0):
    (xs, ys), validation, (xt, yt) = shifted_pair(target_positive_rate, shift)
    source = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(32)  # fixed order
    target = tf.data.Dataset.from_tensor_slices(xt).batch(32)
    keras.utils.set_random_seed(seed)
    encoder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu")])
    head = kt.heads.ClassificationHead(2, dropout=0.0)
    model = kt.adapt.DANN(encoder, head, domain_loss_weight=domain_loss_weight,
                          domain_hidden_dim=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=head.default_loss(),
                  metrics=["accuracy"])
    return model, source, target, validation, (xt, yt)


def test_fallback_restores_source_only_weights_when_adaptation_hurts(capsys):
    # The defect: under label shift (90% of the target reviews positive, 50%
    # of the source's) aligning the domains' feature distributions maps
    # positive target examples onto the negative source class (the textbook
    # failure of marginal alignment); a strong domain loss (weight 10) makes it
    # cost >10 points, and fit used to keep those weights.
    hurting = dict(domain_loss_weight=10.0, target_positive_rate=0.9, shift=0.0)
    model, source, target, validation, (xt, yt) = fallback_setup(**hurting)
    # The same encoder + head trained on the source alone, from the same start.
    model(kt.data.zip_domains(source, target).take(1).get_single_element()[0])
    initial = [w.numpy() for w in model.encoder.weights + model.task_head.weights]
    plain = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              kt.heads.ClassificationHead(2, dropout=0.0)])
    plain.set_weights(initial)
    plain.compile(optimizer=keras.optimizers.Adam(1e-2), loss=model.task_head.default_loss(),
                  metrics=["accuracy"])
    plain.fit(source, epochs=4, verbose=0)

    # Without the fallback: negative transfer (the test of the defect).
    unchecked, *_ = fallback_setup(**hurting)
    unchecked.fit(kt.data.zip_domains(source, target), epochs=4, verbose=0, fallback=False)
    source_only_accuracy = plain.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
    adapted_accuracy = unchecked.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
    assert adapted_accuracy < source_only_accuracy - 0.1, (adapted_accuracy, source_only_accuracy)

    history = model.fit(kt.data.zip_domains(source, target), epochs=4, verbose=0,
                        source_validation=validation)
    report = model.adaptation_report
    assert report["kept"] == "source_only" and report["reasons"]
    assert "kt.adapt: kept source-only weights (" in capsys.readouterr().out
    for mine, reference in zip(model.encoder.weights + model.task_head.weights, plain.weights):
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)
    final = model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
    assert final == pytest.approx(source_only_accuracy)
    assert history.adaptation_report == report and history.history["kept_adapted"] == [0.0]
    assert history.history["adapted_dev_risk"] == [report["adapted_dev_risk"]]


def test_fallback_keeps_an_adaptation_the_rule_accepts(capsys, tmp_path):
    model, source, target, validation, (xt, yt) = fallback_setup(0.1)
    # A covariate shift (x1, x2) orthogonal to the label, the default weight.
    history = model.fit(kt.data.zip_domains(source, target), epochs=4, verbose=0,
                        source_validation=validation)
    report = model.adaptation_report
    assert report["kept"] == "adapted", report
    assert "kt.adapt: kept adapted weights" in capsys.readouterr().out
    assert report["adapted_dev_risk"] <= report["source_only_dev_risk"]
    assert report["adapted_val_accuracy"] >= report["source_only_val_accuracy"] - 0.01
    assert history.history["kept_adapted"] == [1.0]
    assert history.history["gradient_reversal_lambda"][-1] > 0.99  # the default ramp ran
    # Still saves and loads (.keras) as before.
    path = str(tmp_path / "dann.keras")
    model.save(path)
    revived = keras.saving.load_model(path)
    np.testing.assert_allclose(revived.predict(xt, verbose=0), model.predict(xt, verbose=0),
                               atol=1e-6)


def test_fit_ramps_by_default_and_fallback_needs_source_validation():
    model, source, target, validation, _ = fallback_setup(0.1)
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(float(model.gradient_reversal.lambda_))
    )
    data = kt.data.zip_domains(source, target)  # 8 steps per epoch
    model.fit(data, epochs=2, verbose=0, fallback=False, callbacks=[record])
    np.testing.assert_allclose(seen, [kt.adapt.ganin_lambda(s / 16) for s in range(16)], rtol=1e-6)
    with pytest.raises(ValueError, match="source_validation=.*fallback=False"):
        model.fit(data, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="source_validation"):
        model.fit(data, epochs=1, verbose=0, source_validation="val.tsv")
    with pytest.raises(ValueError, match="zip_domains"):
        model.fit(source, epochs=1, verbose=0, source_validation=validation)
    with pytest.raises(TypeError, match="fallback"):
        kt.adapt.MMD(dense_encoder(), kt.heads.ClassificationHead(2), fallback="yes")
    assert kt.adapt.DANN(dense_encoder(), kt.heads.ClassificationHead(2)).domain_loss_weight == 0.1


def test_dev_risk_and_density_ratios_match_numpy_references():
    rng = np.random.default_rng(0)
    losses, weights = rng.uniform(0, 2, 50), rng.uniform(0.1, 3, 50)
    weighted = losses * weights
    n = len(losses)
    cov = np.sum((weighted - weighted.mean()) * (weights - weights.mean())) / (n - 1)
    var = np.sum((weights - weights.mean()) ** 2) / (n - 1)
    eta = -cov / var
    expected = np.mean(weighted) + eta * np.mean(weights) - eta
    assert kt.adapt.dev_risk(losses, weights) == pytest.approx(expected, rel=1e-12)
    assert kt.adapt.dev_risk(losses, np.ones(n)) == pytest.approx(losses.mean())
    # Source N(0, 1), target N(1, 1): the true ratio p_t / p_s is exp(x - 1/2).
    source, target = rng.normal(size=(4000, 1)), rng.normal(size=(4000, 1)) + 1.0
    grid = np.linspace(-1.0, 2.0, 7)[:, None]
    ratios = kt.adapt.density_ratios(source, target, grid)
    np.testing.assert_allclose(ratios, np.exp(grid[:, 0] - 0.5), rtol=0.15)
