"""`DistributedFitMixin`: plain `model.fit` / `evaluate` / `predict` under any distribution strategy.

Every `kt.tasks.Task` mixes it in; see the class docstring for the two
Keras 3 / TensorFlow failures it works around.
"""

import tensorflow as tf

from ktransfer._keras import keras


def in_multi_worker_mode(strategy):
    """True under a `MultiWorkerMirroredStrategy` that spans several workers."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.extended._in_multi_worker_mode()
    )


class DistributedFitMixin:
    """Let plain `model.fit` / `evaluate` / `predict` run under any distribution strategy.

    Mixed into a `keras.Model` subclass (before it in the bases), it fixes
    two failures of Keras 3's TensorFlow trainer under several replicas,
    for models of any inputs (token ids or raw strings):

    - keras-team/keras#20329: before the first step the trainer averages the
      first distributed batch over the replicas (`strategy.reduce("MEAN",
      batch)`) only to learn the input shapes, which fails under
      `MultiWorkerMirroredStrategy` ("unsupported type (PerReplica) to a
      Tensor") and, on strings, under any strategy. The model is built from
      the local replica's part of that batch instead (same shapes and
      dtypes, no collective).
    - tensorflow/tensorflow#72388: under `MultiWorkerMirroredStrategy` the
      trainer reduces each step's logs with `strategy.reduce("MEAN", value,
      axis=0)`, which fails on scalars. The steps return scalar logs as
      shape `[1]` there, which that reduction turns back into the scalar
      mean over the workers.

    Example:

    ```python
    import keras
    from ktransfer.tasks.distributed_fit import DistributedFitMixin

    class Classifier(DistributedFitMixin, keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)
    ```
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        if iterator is not None:
            for _, _, step_iterator in iterator:
                batch = next(step_iterator)
                data_batch = keras.tree.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0]
                    if isinstance(value, tf.distribute.DistributedValues)
                    else value,
                    batch,
                )
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def _logs_for_reduction(self, logs):
        if not in_multi_worker_mode(self.distribute_strategy):
            return logs
        return keras.tree.map_structure(
            lambda value: tf.reshape(value, [1])
            if tf.is_tensor(value) and value.shape.rank == 0
            else value,
            logs,
        )

    def train_step(self, data):
        return self._logs_for_reduction(super().train_step(data))

    def test_step(self, data):
        return self._logs_for_reduction(super().test_step(data))


__all__ = ["DistributedFitMixin", "in_multi_worker_mode"]
