"""Learning-rate schedules for fine-tuning: slanted triangular and one-cycle.

Both are `keras.optimizers.schedules.LearningRateSchedule` subclasses: pass
one as an optimizer's `learning_rate`, and it is saved with the optimizer in
a `.keras` file (`get_config` / registered as `ktransfer>...`).

- `SlantedTriangular`: ULMFiT's STLR (Howard & Ruder 2018, eq. 3): a short
  linear warm-up to the peak, then a long linear decay.
- `OneCycle`: Smith & Topin's 1cycle policy, as PyTorch's `OneCycleLR`
  computes it (two phases, cosine or linear annealing); the momentum cycle
  of that policy is not part of a learning-rate schedule and is not done.

Example:

```python
import keras, ktransfer as kt
steps = 3 * 125  # epochs * batches per epoch
optimizer = keras.optimizers.AdamW(kt.schedules.SlantedTriangular(2e-5, steps))
```
"""

import math
import numbers

from ktransfer._keras import keras

ANNEAL_MODES = ("cos", "linear")


def _check_positive_number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number. Received: {value!r}")
    return float(value)


def _check_total_steps(total_steps, minimum):
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral):
        raise ValueError(
            "`total_steps` must be an int: the number of optimizer steps of the "
            "whole run (epochs * batches per epoch). Received: "
            f"{total_steps!r}"
        )
    if total_steps < minimum:
        raise ValueError(f"`total_steps` must be >= {minimum}. Received: {total_steps}")
    return int(total_steps)


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"`{name}` must be a number in (0, 1). Received: {value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="ktransfer")
class SlantedTriangular(keras.optimizers.schedules.LearningRateSchedule):
    """ULMFiT's slanted triangular learning rate (STLR).

    With `cut = floor(total_steps * cut_fraction)`, the rate rises linearly
    from `max_learning_rate / ratio` at step 0 to `max_learning_rate` at step
    `cut`, then falls linearly back to `max_learning_rate / ratio` at step
    `total_steps`, and stays there. (The paper's decay denominator
    `cut * (1 / cut_fraction - 1)` equals `total_steps - cut` whenever
    `total_steps * cut_fraction` is whole; `total_steps - cut` is used so the
    schedule always ends exactly at `total_steps`.)

    Args:
        max_learning_rate: the peak rate.
        total_steps: optimizer steps of the whole run (epochs * batches per
            epoch).
        cut_fraction: fraction of the steps spent warming up (paper: 0.1).
        ratio: how much smaller the lowest rate is than the peak (paper: 32);
            `float("inf")` starts and ends at 0 (BERT's linear warm-up and
            decay).

    Example:

    ```python
    schedule = kt.schedules.SlantedTriangular(1e-3, total_steps=1000)
    float(schedule(100))  # 1e-3, the peak (cut = 100)
    ```
    """

    def __init__(self, max_learning_rate, total_steps, cut_fraction=0.1, ratio=32.0, name=None):
        self.max_learning_rate = _check_positive_number("max_learning_rate", max_learning_rate)
        self.total_steps = _check_total_steps(total_steps, minimum=2)
        self.cut_fraction = _check_fraction("cut_fraction", cut_fraction)
        self.ratio = _check_positive_number("ratio", ratio)
        if self.ratio < 1:
            raise ValueError(f"`ratio` must be >= 1 (peak / lowest rate). Received: {ratio!r}")
        self.name = name
        self.cut = min(
            max(int(math.floor(self.total_steps * self.cut_fraction)), 1), self.total_steps - 1
        )

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        cut = float(self.cut)
        rising = step / cut
        falling = 1.0 - (step - cut) / float(self.total_steps - self.cut)
        p = keras.ops.clip(keras.ops.where(step < cut, rising, falling), 0.0, 1.0)
        # max * (1 + p * (ratio - 1)) / ratio, written to allow ratio = inf.
        floor = 1.0 / self.ratio
        return self.max_learning_rate * (floor + (1.0 - floor) * p)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "cut_fraction": self.cut_fraction,
            "ratio": self.ratio,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="ktransfer")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The 1cycle learning rate, step for step as PyTorch's `OneCycleLR`.

    Starts at `max_learning_rate / div_factor`, anneals up to
    `max_learning_rate` over the first `warmup_fraction` of the steps, then
    anneals down to `max_learning_rate / (div_factor * final_div_factor)` at
    step `total_steps - 1`, and stays there.

    Args:
        max_learning_rate: the peak rate.
        total_steps: optimizer steps of the whole run.
        warmup_fraction: fraction of the steps spent rising (PyTorch's
            `pct_start`, default 0.3).
        div_factor: initial rate = `max_learning_rate / div_factor`.
        final_div_factor: final rate = initial rate / `final_div_factor`.
        anneal: `"cos"` (cosine annealing) or `"linear"`.

    Example:

    ```python
    schedule = kt.schedules.OneCycle(1e-3, total_steps=1000)
    float(schedule(0)), float(schedule(299))  # 4e-05, 1e-03
    ```
    """

    def __init__(
        self,
        max_learning_rate,
        total_steps,
        warmup_fraction=0.3,
        div_factor=25.0,
        final_div_factor=1e4,
        anneal="cos",
        name=None,
    ):
        self.max_learning_rate = _check_positive_number("max_learning_rate", max_learning_rate)
        self.total_steps = _check_total_steps(total_steps, minimum=3)
        self.warmup_fraction = _check_fraction("warmup_fraction", warmup_fraction)
        self.div_factor = _check_positive_number("div_factor", div_factor)
        self.final_div_factor = _check_positive_number("final_div_factor", final_div_factor)
        if anneal not in ANNEAL_MODES:
            raise ValueError(f"`anneal` must be one of {ANNEAL_MODES}. Received: {anneal!r}")
        self.anneal = anneal
        self.name = name
        # The step at which the peak is reached, as PyTorch computes it.
        self.peak_step = float(self.warmup_fraction * self.total_steps) - 1.0
        if not 0 < self.peak_step < self.total_steps - 1:
            raise ValueError(
                f"`warmup_fraction`={warmup_fraction} leaves no room for one of the "
                f"two phases in {total_steps} steps: use more steps or a warm-up "
                "fraction further from 0 and 1."
            )

    def _anneal(self, start, end, fraction):
        if self.anneal == "linear":
            return start * (1.0 - fraction) + end * fraction
        return end + (start - end) / 2.0 * (keras.ops.cos(math.pi * fraction) + 1.0)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        initial = self.max_learning_rate / self.div_factor
        final = initial / self.final_div_factor
        last = float(self.total_steps - 1)
        rising = self._anneal(
            initial, self.max_learning_rate, keras.ops.clip(step / self.peak_step, 0.0, 1.0)
        )
        falling_fraction = (step - self.peak_step) / (last - self.peak_step)
        falling = self._anneal(
            self.max_learning_rate, final, keras.ops.clip(falling_fraction, 0.0, 1.0)
        )
        return keras.ops.where(step <= self.peak_step, rising, falling)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "anneal": self.anneal,
            "name": self.name,
        }
