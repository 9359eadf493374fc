"""kt.callbacks.GradualUnfreezing: the set of changing weights grows as scheduled."""

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt

EMBEDDINGS = {"token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm"}
HEAD = "head"


def make(preset, trainable=True):
    encoder = kt.encoders.BertEncoder.from_preset(
        preset, sequence_length=16, pooling="mean", trainable=trainable
    )
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2, name=HEAD)])
    texts = ["a great film", "a good movie", "the plot is dull", "awful and boring"] * 4
    data = kt.data.prepare(
        kt.data.from_lists(texts, [1, 1, 0, 0] * 4), encoder.preprocessor, batch_size=4
    )
    return encoder, model, data


def layer_of(variable):
    return HEAD if HEAD in variable.path else variable.path.split("/")[0]


class ChangedLayers(keras.callbacks.Callback):
    """Records, per epoch (or per batch), which layers' weights changed."""

    def __init__(self, per_batch=False):
        super().__init__()
        self.per_batch = per_batch
        self.changed = []

    def _snapshot(self):
        self.before = [(layer_of(v), np.array(v)) for v in self.model.weights]

    def _record(self):
        after = [np.array(v) for v in self.model.weights]
        self.changed.append(
            {name for (name, old), new in zip(self.before, after) if not np.array_equal(old, new)}
        )

    def on_epoch_begin(self, epoch, logs=None):
        if not self.per_batch:
            self._snapshot()

    def on_epoch_end(self, epoch, logs=None):
        if not self.per_batch:
            self._record()

    def on_train_batch_begin(self, batch, logs=None):
        if self.per_batch:
            self._snapshot()

    def on_train_batch_end(self, batch, logs=None):
        if self.per_batch:
            self._record()


def expected(stage, num_blocks=2):
    blocks = {
        f"transformer_layer_{i}" for i in range(num_blocks - min(stage, num_blocks), num_blocks)
    }
    return {HEAD} | blocks | (EMBEDDINGS if stage > num_blocks else set())


def test_one_more_block_each_epoch_without_recompiling(tiny_preset, capsys):
    encoder, model, data = make(tiny_preset)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss=model.layers[1].default_loss())
    unfreeze = kt.callbacks.GradualUnfreezing(encoder)
    recorder = ChangedLayers()
    history = model.fit(data, epochs=5, verbose=0, callbacks=[unfreeze, recorder])
    assert recorder.changed == [expected(stage) for stage in (0, 1, 2, 3, 3)]
    assert history.history["unfrozen_blocks"] == [0, 1, 2, 3, 3]
    assert [entry[2] for entry in unfreeze.log] == [0, 1, 2, 3]
    assert unfreeze.log[1][3] == ["transformer_layer_1"]
    assert "stage 1/3, training transformer_layer_1" in capsys.readouterr().out
    assert encoder.trainable and encoder.trainable_blocks is None  # ends fully unfrozen


def test_every_n_steps_with_layerwise_rates(tiny_preset):
    """unit='step' composes with kt.optimizers.layerwise (one optimizer, groups join late)."""
    encoder, model, data = make(tiny_preset, trainable=False)
    optimizer = kt.optimizers.layerwise(keras.optimizers.AdamW(1e-2), encoder, decay=0.8)
    model.compile(optimizer=optimizer, loss=model.layers[1].default_loss(), steps_per_execution=2)
    unfreeze = kt.callbacks.GradualUnfreezing(encoder, schedule=[0, 0, 2], unit="step", verbose=0)
    recorder = ChangedLayers(per_batch=True)  # per call: 2 steps each
    model.fit(data, epochs=2, verbose=0, callbacks=[unfreeze, recorder])  # 8 steps, 4 calls
    assert recorder.changed == [expected(0)] + [expected(2)] * 3
    assert [entry[1] for entry in unfreeze.log] == [0, 2]  # the step of each change
    assert model.optimizer is optimizer  # built for every variable up front: no replacement


def test_list_and_callable_schedules(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16)
    listed = kt.callbacks.GradualUnfreezing(encoder, schedule=[0, 0, 2, "all"])
    assert [listed.stage_at(i) for i in range(6)] == [0, 0, 2, 3, 3, 3]
    called = kt.callbacks.GradualUnfreezing(encoder, schedule=lambda epoch: min(2 * epoch, 3))
    assert [called.stage_at(i) for i in range(4)] == [0, 2, 3, 3]
    every_two = kt.callbacks.GradualUnfreezing(encoder, schedule=2)
    assert [every_two.stage_at(i) for i in range(9)] == [0, 0, 1, 1, 2, 2, 3, 3, 3]


def test_optimizer_built_for_fewer_variables(tiny_preset):
    encoder, model, data = make(tiny_preset, trainable=False)
    model(next(iter(data))[0])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=model.layers[1].default_loss())
    model.optimizer.build(model.trainable_variables)  # the head only, no step taken yet
    model.fit(
        data, epochs=1, verbose=0, callbacks=[kt.callbacks.GradualUnfreezing(encoder, verbose=0)]
    )
    assert int(model.optimizer.iterations) == 4  # a fresh optimizer took over and trained
    assert len(model.optimizer.variables) > 10  # with slots for the encoder's variables too

    encoder, model, data = make(tiny_preset, trainable=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=model.layers[1].default_loss())
    model.fit(data, epochs=1, verbose=0)  # steps taken for the head only
    with pytest.raises(ValueError, match="Compile again with a fresh optimizer"):
        model.fit(data, epochs=1, verbose=0, callbacks=[kt.callbacks.GradualUnfreezing(encoder)])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"schedule": 0}, ValueError, ">= 1"),
        ({"schedule": []}, ValueError, "at least one stage"),
        ({"schedule": [0, 9]}, ValueError, r"int in \[0, 3\]"),
        ({"schedule": "fast"}, TypeError, "`schedule` must be"),
        ({"unit": "batch"}, ValueError, "`unit`"),
    ],
)
def test_bad_arguments_name_the_problem(tiny_preset, kwargs, error, match):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16)
    with pytest.raises(error, match=match):
        kt.callbacks.GradualUnfreezing(encoder, **kwargs)
    with pytest.raises(TypeError, match="BertEncoder"):
        kt.callbacks.GradualUnfreezing(keras.layers.Dense(2))
    encoder.enable_lora(rank=2)
    with pytest.raises(ValueError, match="undo LoRA"):
        kt.callbacks.GradualUnfreezing(encoder)


def test_encoder_must_belong_to_the_model(tiny_preset):
    encoder, model, data = make(tiny_preset)
    other = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16)
    model.compile(optimizer=keras.optimizers.Adam(), loss=model.layers[1].default_loss())
    with pytest.raises(ValueError, match="not part of the model"):
        model.fit(data, epochs=1, verbose=0, callbacks=[kt.callbacks.GradualUnfreezing(other)])
