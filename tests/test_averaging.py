"""kt.callbacks.CheckpointAveraging: the mean of evenly spaced weight snapshots."""

import numpy as np
import pytest

import keras

import ktransfer as kt


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")


class Recorder(keras.callbacks.Callback):
    """The trainable weights after every step (the reference)."""

    def __init__(self):
        super().__init__()
        self.after = []

    def on_train_batch_end(self, batch, logs=None):
        self.after.append([np.array(v.numpy()) for v in self.model.trainable_weights])


def test_average_equals_the_mean_of_the_snapshot_steps():
    x, y = _data()
    model = _model()
    recorder, averaging = Recorder(), kt.callbacks.CheckpointAveraging(count=3)
    # recorder first: both see the weights after the same step
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[recorder, averaging])
    total = 12
    assert averaging.steps_taken == [3, 7, 11] == [round(total * i / 3) - 1 for i in (1, 2, 3)]
    expected = [np.mean([recorder.after[s][k] for s in (3, 7, 11)], axis=0)
                for k in range(len(model.trainable_weights))]
    for variable, mean in zip(model.trainable_weights, expected):
        np.testing.assert_allclose(variable.numpy(), mean, rtol=1e-6, atol=1e-7)
    for kept, last in zip(averaging.final_weights, recorder.after[-1]):
        np.testing.assert_array_equal(kept, last)
    averaging.restore_final()
    for variable, last in zip(model.trainable_weights, recorder.after[-1]):
        np.testing.assert_array_equal(variable.numpy(), last)


def test_apply_false_keeps_the_final_weights_and_count_one_is_the_final_model():
    x, y = _data()
    model = _model()
    averaging = kt.callbacks.CheckpointAveraging(count=1, apply=False)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[averaging])
    final = [np.array(v.numpy()) for v in model.trainable_weights]
    assert averaging.steps_taken == [5]
    for a, b in zip(averaging.average, final):
        np.testing.assert_array_equal(a, b)
    averaging.apply_average()
    for variable, value in zip(model.trainable_weights, final):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_frozen_weights_are_left_alone_and_a_second_fit_starts_over():
    x, y = _data()
    model = _model()
    model.layers[0].trainable = False
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    frozen = [np.array(v.numpy()) for v in model.layers[0].weights]
    averaging = kt.callbacks.CheckpointAveraging(count=2)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[averaging])
    assert len(averaging.average) == len(model.layers[1].weights)
    for variable, value in zip(model.layers[0].weights, frozen):
        np.testing.assert_array_equal(variable.numpy(), value)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[averaging])
    assert averaging.taken == 2 and averaging.steps_taken == [1, 2]


def test_unknown_length_dataset_needs_total_steps():
    import tensorflow as tf

    x, y = _data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).filter(lambda a, b: True)
    model = _model()
    with pytest.raises(ValueError, match="total_steps"):
        model.fit(dataset, epochs=1, verbose=0, callbacks=[kt.callbacks.CheckpointAveraging(2)])
    averaging = kt.callbacks.CheckpointAveraging(2, total_steps=6)
    model.fit(dataset, epochs=1, verbose=0, callbacks=[averaging])
    assert averaging.steps_taken == [2, 5]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_count_is_refused(bad):
    with pytest.raises(ValueError, match="count"):
        kt.callbacks.CheckpointAveraging(count=bad)


def test_averaging_a_text_classifier_changes_its_predictions_to_the_averaged_weights(tiny_preset):
    texts = ["good film", "bad film", "great plot", "awful plot"] * 4
    labels = [1, 0, 1, 0] * 4
    clf = kt.tasks.TextClassifier.from_preset(tiny_preset, num_classes=2, sequence_length=16)
    clf.compile(optimizer=keras.optimizers.Adam(1e-2))
    averaging = kt.callbacks.CheckpointAveraging(count=4, apply=False)
    clf.fit(x=texts, y=labels, batch_size=4, epochs=2, verbose=0, callbacks=[averaging])
    final = clf.predict(texts[:4], verbose=0)
    averaging.apply_average()
    averaged = clf.predict(texts[:4], verbose=0)
    assert not np.allclose(final, averaged)
    averaging.restore_final()
    np.testing.assert_allclose(clf.predict(texts[:4], verbose=0), final, rtol=1e-5, atol=1e-6)


def test_start_spaces_the_snapshots_over_the_end_of_the_run():
    x, y = _data()
    model = _model()
    averaging = kt.callbacks.CheckpointAveraging(count=3, start=0.5, apply=False)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[averaging])  # 12 steps
    assert averaging.steps_taken == [7, 9, 11]


@pytest.mark.parametrize("bad", [-0.1, 1.0, True, "0.5"])
def test_bad_start_is_refused(bad):
    with pytest.raises(ValueError, match="start"):
        kt.callbacks.CheckpointAveraging(start=bad)


class Poison(keras.callbacks.Callback):
    """Shifts the weights after steps 0-2 (+1, +2, +3) and undoes it after step 3.

    With a learning rate of 0 the final weights are the initial ones and the
    average of 6 snapshots is off by 1: worse on any data.
    """

    def on_train_batch_end(self, batch, logs=None):
        shift = 1.0 if batch < 3 else -3.0 if batch == 3 else 0.0
        for variable in self.model.trainable_weights:
            variable.assign(variable + shift)


def test_validation_data_keeps_the_final_weights_when_the_average_is_worse(capsys):
    x, y = _data()
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    averaging = kt.callbacks.CheckpointAveraging(count=6, validation_data=(x, y))
    recorder = Recorder()
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
              callbacks=[Poison(), recorder, averaging])
    report = averaging.report
    assert report["kept"] == "final" and report["average_loss"] > report["final_loss"]
    for variable, last in zip(model.trainable_weights, recorder.after[-1]):
        np.testing.assert_array_equal(variable.numpy(), last)
    assert "kept the final weights" in capsys.readouterr().out


def test_validation_data_keeps_the_average_when_it_is_not_worse():
    x, y = _data()
    model = _model()
    averaging = kt.callbacks.CheckpointAveraging(count=1, validation_data=(x, y), verbose=0)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[averaging])
    assert averaging.report["kept"] == "average"  # one snapshot: the average is the final model
    assert averaging.report["average_loss"] == averaging.report["final_loss"]


def test_applying_unchecked_warns():
    x, y = _data()
    model = _model()
    with pytest.warns(UserWarning, match="without checking"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0,
                  callbacks=[kt.callbacks.CheckpointAveraging(2)])
