"""kt.distribute.get_strategy, and training under a real MirroredStrategy."""

import pytest
import tensorflow as tf

import ktransfer as kt
from conftest import make_tiny_preset
from harness import train_on_one_and_two_devices


def test_names():
    assert kt.distribute.get_strategy("cpu") is tf.distribute.get_strategy()
    assert isinstance(kt.distribute.get_strategy("auto"), tf.distribute.Strategy)
    with pytest.raises(ValueError, match="Unknown strategy"):
        kt.distribute.get_strategy("gpu-cluster")
    with pytest.raises(RuntimeError, match="No TPU found"):
        kt.distribute.get_strategy("tpu", tpu="local-does-not-exist")


def test_mirrored_over_two_cpu_devices_matches_single_device(tmp_path):
    """Same global batch on 1 device and on 2 logical CPUs: same weights."""
    tiny_preset = make_tiny_preset(tmp_path / "preset", dropout=0.0)  # no random masks
    difference, change = train_on_one_and_two_devices(
        f"""
        def train(strategy):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                encoder = kt.encoders.BertEncoder.from_preset({tiny_preset!r}, sequence_length=16, pooling="mean")
                model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
                model.compile(optimizer=keras.optimizers.SGD(0.1), loss=model.layers[1].default_loss())
                texts = ["a great film", "a good movie", "the plot is dull", "awful and boring"] * 4
                data = kt.data.prepare(kt.data.from_lists(texts, [1, 1, 0, 0] * 4), encoder.preprocessor,
                                       batch_size=8, bucket=False, drop_remainder=True)
                model(next(iter(data))[0])  # build the head's variables inside the scope
            start = [np.array(w) for w in model.get_weights()]
            model.fit(data, epochs=2, verbose=0)
            return start, [np.array(w) for w in model.get_weights()]
        """
    )
    assert difference < 1e-4
    assert change > 1e-3  # training really moved the weights
