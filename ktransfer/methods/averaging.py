"""`CheckpointAveraging`: the uniform mean of weight snapshots along one run.

Averaging the checkpoints of a single fine-tuning run is a free way to a
model that transfers better across languages: Schmidt et al. (2023, "Free
Lunch: Robust Cross-Lingual Transfer via Model Checkpoint Averaging") take
evenly spaced checkpoints of a source-language run and average them, which
selects nothing on target-language labels (the point of zero-shot
transfer); stochastic weight averaging (Izmailov et al. 2018) is the same
idea with a cyclic rate. Keras has no such callback (`use_ema=True` on an
optimizer is an exponential average, weighted towards the last steps), so
this is a small one:

```python
import keras
import numpy as np
import ktransfer as kt

model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")
averaging = kt.callbacks.CheckpointAveraging(count=4, validation_data=(x, y))
model.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[averaging])
print(averaging.taken, averaging.steps_taken)   # 4 [1, 3, 5, 7]
print(averaging.report["kept"])   # "average" or "final": the one with the lower validation loss
```

With a task it is one more callback: `clf.fit(x=texts, y=labels, epochs=2,
callbacks=[kt.callbacks.CheckpointAveraging(10)])`.

Snapshots are taken after steps `first + round((total - first) * i / count) -
1`, i = 1..count, with `first = round(start * total)` (evenly spaced over the
part of the run after `start`, the last one after the final step), of the
model's trainable
weights, as a running mean in float32 (memory: one copy of the trainable
weights). Non-trainable weights are left as training leaves them (BERT has
no batch-norm statistics to re-estimate, unlike the CNNs of the SWA paper).

An average is not always better: early snapshots of a run that is still
improving pull it back (on 1,024 SQuAD questions, 2 epochs, averaging all
10 snapshots cost e5 3-4 F1 points, docs/question_answering.md). Give
`validation_data` (source-language data, never target labels) and the
callback keeps whichever of the average and the final weights has the lower
validation loss, saying which; without it the average is applied with a
warning that it was not checked.
"""

import warnings

import numbers

import numpy as np

from ktransfer._keras import keras


class CheckpointAveraging(keras.callbacks.Callback):
    """Replace the trained weights by the mean of `count` evenly spaced snapshots.

    Args:
        count: snapshots to average (an int >= 1; 1 keeps the final weights).
        total_steps: optimizer steps of the whole `fit`; by default Keras'
            `steps` per epoch times `epochs` (known for arrays, for the
            tasks' datasets and for any dataset of known cardinality).
        apply: True (default) assigns the average when training ends;
            False leaves the final weights and keeps the average in
            `average` for the caller to assign (`apply_average()`).
        start: the fraction of training (in [0, 1)) before the first
            snapshot's interval (0: the whole run, as Free Lunch; SWA
            averages the last quarter, 0.75).
        validation_data: data `model.evaluate` takes (a dataset, or a tuple
            `(x, y)`): with `apply=True` the average is kept only if its
            loss there is not higher than the final weights'.
        verbose: print which weights were kept (with `validation_data`).

    Attributes:
        taken: snapshots taken so far.
        steps_taken: the (0-based) steps after which they were taken.
        average: the running mean (a list of numpy arrays, in
            `model.trainable_weights` order), None before the first one.
        final_weights: the trainable weights at the end of training
            (numpy), kept so that `restore_final()` can undo the average.
        report: with `validation_data`, `{"final_loss", "average_loss",
            "kept"}` (`kept`: `"average"` or `"final"`).

    Example (keep the final weights, compare both):

    ```python
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")
    averaging = kt.callbacks.CheckpointAveraging(count=2, apply=False)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[averaging])
    final = model.evaluate(x, y, verbose=0)
    averaging.apply_average()
    averaged = model.evaluate(x, y, verbose=0)
    averaging.restore_final()        # back to the final weights
    ```
    """

    def __init__(self, count=10, total_steps=None, apply=True, start=0.0, validation_data=None,
                 verbose=1):
        super().__init__()
        if isinstance(start, bool) or not isinstance(start, numbers.Real) or not 0 <= start < 1:
            raise ValueError(f"`start` must be a fraction in [0, 1). Received: {start!r}")
        for name, value, allow_none in (("count", count, False), ("total_steps", total_steps, True)):
            if value is None and allow_none:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {value!r}")
        self.count = int(count)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.apply = bool(apply)
        self.start = float(start)
        self.validation_data = validation_data
        self.verbose = verbose
        self._reset()

    def _reset(self):
        self.taken = 0
        self.steps_taken = []
        self.average = None
        self.final_weights = None
        self._step = 0
        self._marks = set()
        self._variables = None
        self.report = None

    def on_train_begin(self, logs=None):
        self._reset()
        total = self.total_steps
        if total is None:
            steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
            if not steps or not epochs:
                raise ValueError(
                    "CheckpointAveraging needs the number of training steps, which Keras does not "
                    "know for this dataset (unknown cardinality). Pass "
                    "`CheckpointAveraging(total_steps=steps_per_epoch * epochs)`, or give `fit` "
                    "`steps_per_epoch=`."
                )
            total = int(steps) * int(epochs)
        first = int(round(self.start * total))
        span = total - first
        count = min(self.count, span)
        self._marks = {first + int(round(span * i / count)) - 1 for i in range(1, count + 1)}
        self._variables = list(self.model.trainable_weights)

    def on_train_batch_end(self, batch, logs=None):
        if self._step in self._marks:
            self._snapshot()
        self._step += 1

    def _snapshot(self):
        self.taken += 1
        self.steps_taken.append(self._step)
        values = [np.asarray(v.numpy(), np.float32) for v in self._variables]
        if self.average is None:
            self.average = values
        else:
            for mean, value in zip(self.average, values):
                mean += (value - mean) / self.taken

    def on_train_end(self, logs=None):
        if self._variables is None:
            return
        self.final_weights = [np.array(v.numpy()) for v in self._variables]
        if self.average is None:  # stopped before the first snapshot: take one now
            self._snapshot()
        if not self.apply:
            return
        if self.validation_data is None:
            warnings.warn(
                "CheckpointAveraging applied the average of "
                f"{self.taken} snapshots without checking it: pass `validation_data=` "
                "(source-language data) to keep the final weights when the average is worse.",
                stacklevel=2,
            )
            self.apply_average()
            return
        final_loss = self._validation_loss()
        self.apply_average()
        average_loss = self._validation_loss()
        # A non-finite average loss (a diverged snapshot) keeps the final weights.
        kept = "average" if np.isfinite(average_loss) and average_loss <= final_loss else "final"
        if kept == "final":
            self.restore_final()
        self.report = {"final_loss": final_loss, "average_loss": average_loss, "kept": kept}
        if self.verbose:
            print(f"CheckpointAveraging: validation loss {average_loss:.4f} averaged "
                  f"({self.taken} snapshots) vs {final_loss:.4f} final: kept the {kept} weights")

    def _validation_loss(self):
        data = self.validation_data
        if isinstance(data, tuple):
            logs = self.model.evaluate(*data[:2], verbose=0, return_dict=True)
        else:
            logs = self.model.evaluate(data, verbose=0, return_dict=True)
        return float(logs["loss"])

    def apply_average(self):
        """Assign the average to the model's trainable weights."""
        self._assign(self.average, "average")

    def restore_final(self):
        """Assign the weights training ended with (undo `apply_average`)."""
        self._assign(self.final_weights, "final weights")

    def _assign(self, values, what):
        if values is None:
            raise ValueError(f"No {what} yet: CheckpointAveraging fills them during `fit`.")
        for variable, value in zip(self._variables, values):
            variable.assign(value.astype(variable.dtype) if hasattr(value, "astype") else value)
