"""`GradualUnfreezing`: ULMFiT's schedule as a Keras callback.

ULMFiT (Howard & Ruder 2018) trains the new head first, then unfreezes the
encoder one block at a time from the top, so the general-purpose lower
layers change last and least. `GradualUnfreezing` does that during one
`model.fit`, at epoch (or step) boundaries:

```python
import keras, ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
model.compile(optimizer=keras.optimizers.AdamW(5e-5), loss=model.layers[-1].default_loss())
unfreeze = kt.callbacks.GradualUnfreezing(encoder)  # head, +1 block per epoch
model.fit(train, epochs=encoder.num_blocks + 2, callbacks=[unfreeze])
```

Stage 0 trains the head only (the encoder frozen), stage s the top s blocks
(and the pooler with `pooling="pooled"`), stage L the L blocks, and stage
L + 1 everything, embeddings included: the groups of
`encoder.layer_groups()` (`[embeddings, block 1, ..., block L, pooler]`),
unfrozen from the top by `encoder.set_trainable(s)`.

Keras traces its train step for the variables trainable at the time, and an
optimizer updates only the variables it was built for. No recompile is
needed (it would reset the optimizer and the metrics): at each change the
callback asks Keras for a new train function (`make_train_function(force=
True)`), and before training starts it makes sure the optimizer is built
for every variable the schedule will unfreeze (replacing an optimizer that
was built for fewer and has not taken a step by a fresh one with the same
configuration).
"""

import numbers

from ktransfer._keras import keras

from ktransfer.encoders import keras_hub_adapter as adapter

ALL = "all"


class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreeze one more block of `encoder` from the top every n epochs or steps.

    Args:
        encoder: the encoder inside the model being fit: a `BertEncoder`,
            or any `kt.encoders.Encoder` (its `layer_groups()` are the stages).
        schedule: when to unfreeze. An int n: one more stage every n epochs
            (or steps, with `unit="step"`), starting with stage 0 (head
            only). A list: the stage for epoch (step) 0, 1, 2, ...; the
            last entry holds afterwards. A callable: `schedule(index)` ->
            stage. A stage is an int in [0, L] (the number of top blocks
            that train) or `"all"` (every weight, embeddings included);
            `L + 1` means `"all"` too.
        unit: `"epoch"` or `"step"` (optimizer steps since the start of
            training, counted across epochs).
        verbose: print a line whenever the trainable layers change.

    Attributes:
        log: `(epoch, step, stage, [names of the trainable encoder layers])`
            for every change, in order.

    With `unit="epoch"` the stage is also written to the epoch logs
    (`history.history["unfrozen_blocks"]`; L + 1 for `"all"`).
    """

    def __init__(self, encoder, schedule=1, unit="epoch", verbose=1):
        super().__init__()
        from ktransfer.encoders.base import Encoder

        if not isinstance(encoder, Encoder):
            raise TypeError(
                "`encoder` must be the ktransfer encoder (e.g. BertEncoder) inside the model. "
                f"Received: {type(encoder).__name__}"
            )
        if getattr(encoder, "lora_rank", None) is not None:
            raise ValueError(
                "GradualUnfreezing toggles whole blocks, which would undo LoRA's freezing "
                "of the base weights: use it on an encoder without `enable_lora`."
            )
        if unit not in ("epoch", "step"):
            raise ValueError(f"`unit` must be 'epoch' or 'step'. Received: {unit!r}")
        self.encoder = encoder
        self.num_blocks = encoder.num_blocks
        self.unit = unit
        self.verbose = verbose
        self._schedule = self._make_schedule(schedule)
        self._stage = None
        self._step = 0
        self._epoch = 0
        self._epoch_start_step = 0
        self.log = []

    # --- schedule ------------------------------------------------------------
    def _make_schedule(self, schedule):
        if isinstance(schedule, numbers.Integral) and not isinstance(schedule, bool):
            if schedule < 1:
                raise ValueError(
                    "An int `schedule` (epochs or steps per stage) must be >= 1. "
                    f"Received: {schedule}"
                )
            every = int(schedule)
            return lambda index: min(index // every, self.num_blocks + 1)
        if isinstance(schedule, (list, tuple)):
            if not schedule:
                raise ValueError("A list `schedule` needs at least one stage.")
            stages = [self._check_stage(stage) for stage in schedule]
            return lambda index: stages[min(index, len(stages) - 1)]
        if callable(schedule):
            return lambda index: self._check_stage(schedule(index))
        raise TypeError(
            "`schedule` must be an int (epochs or steps per stage), a list of "
            f"stages, or a callable index -> stage. Received: {schedule!r}"
        )

    def _check_stage(self, stage):
        if stage == ALL:
            return self.num_blocks + 1
        if isinstance(stage, numbers.Integral) and not isinstance(stage, bool):
            if 0 <= stage <= self.num_blocks + 1:
                return int(stage)
        raise ValueError(
            f"A stage must be an int in [0, {self.num_blocks + 1}] (top blocks that "
            f"train; {self.num_blocks + 1} = everything) or 'all'. Received: {stage!r}"
        )

    def stage_at(self, index):
        """The stage for epoch (or step) `index`, as an int in [0, L + 1]."""
        return self._schedule(index)

    # --- applying a stage -------------------------------------------------------
    def _apply(self, stage):
        if stage == self.num_blocks + 1:
            self.encoder.set_trainable(True)
        elif stage == 0:
            self.encoder.set_trainable(False)
        else:
            self.encoder.set_trainable(stage)

    def _trainable_layer_names(self):
        return [
            layer.name
            for group in self.encoder.layer_groups()
            for layer in group
            if layer.trainable_weights
        ]

    def _enter(self, stage):
        if stage == self._stage:
            return
        self._stage = stage
        self._apply(stage)
        self.model.make_train_function(force=True)
        names = self._trainable_layer_names()
        self.log.append((self._epoch, self._step, stage, names))
        if self.verbose:
            what = "head only" if not names else ", ".join(names)
            print(
                f"GradualUnfreezing: epoch {self._epoch}, step {self._step}: stage "
                f"{stage}/{self.num_blocks + 1}, training {what} (+ layers after the encoder)"
            )

    # --- callback hooks -------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._ensure_optimizer_covers_every_stage()
        self._stage = None  # re-apply, whatever the encoder was set to since
        index = self._epoch if self.unit == "epoch" else self._step
        self._enter(self.stage_at(index))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start_step = self._step
        if self.unit == "epoch":
            self._enter(self.stage_at(epoch))

    def on_train_batch_begin(self, batch, logs=None):
        # `batch` is the index of the first step of this call within the epoch
        # (with `steps_per_execution`, one call runs several steps).
        if self.unit == "step":
            self._step = self._epoch_start_step + batch
            self._enter(self.stage_at(self._step))

    def on_train_batch_end(self, batch, logs=None):
        self._step = self._epoch_start_step + batch + 1  # `batch`: the call's last step

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.unit == "epoch":
            logs["unfrozen_blocks"] = self._stage

    def _ensure_optimizer_covers_every_stage(self):
        model = self.model
        optimizer = model.optimizer
        if optimizer is None:
            raise ValueError("Compile the model before fitting with GradualUnfreezing.")
        if not any(layer is self.encoder for layer in adapter.flatten_layers(model)):
            raise ValueError(
                "The GradualUnfreezing encoder is not part of the model being fit: pass "
                "the encoder layer that the model holds."
            )
        if not model.built or not all(layer.built for layer in adapter.flatten_layers(model)):
            # Keras builds a model lazily in the first step; the optimizer must
            # know the head's variables now, so build on one tokenised text.
            self._build_model()
        saved = (getattr(self.encoder, "trainable_blocks", None), self.encoder.trainable)
        self.encoder.set_trainable(True)
        every = list(model.trainable_variables)
        self.encoder.set_trainable(saved[0] if saved[0] is not None else saved[1])
        inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
        if not inner.built:
            with model.distribute_strategy.scope():
                optimizer.build(every)
            return
        if adapter.optimizer_is_built_for(optimizer, every):
            return
        if int(keras.ops.convert_to_numpy(optimizer.iterations)) > 0:
            raise ValueError(
                "The optimizer has already taken steps for a smaller set of variables "
                "than GradualUnfreezing will unfreeze. Compile again with a fresh "
                "optimizer before `fit`."
            )
        with model.distribute_strategy.scope():
            fresh = optimizer.__class__.from_config(optimizer.get_config())
            fresh.build(every)
        model.optimizer = fresh

    def _build_model(self):
        import tensorflow as tf

        preprocessor = self.encoder.preprocessor
        try:
            if preprocessor is None:
                raise ValueError("the encoder has no preprocessor")
            with self.model.distribute_strategy.scope():
                self.model(preprocessor(tf.constant(["a"])), training=False)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "GradualUnfreezing needs the model built before training (the optimizer "
                "must know every variable it will unfreeze); building it on one "
                f"tokenised text failed ({error}). Call the model on one batch before `fit`."
            ) from error
