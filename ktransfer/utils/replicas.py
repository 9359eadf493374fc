"""Losses over the replicas of a `tf.distribute` step, summed as Keras sums gradients.

Under a strategy, each replica computes a loss on its share of the global
batch and the optimizer *sums* the replicas' gradients. A loss is right when
the replicas' losses add up to the loss of the global batch. These helpers
are what ktransfer's custom train steps (`kt.adapt`, `kt.multitask`,
`kt.distill`) share to get there; outside a multi-replica step each one is
the identity (or its single-device meaning), so the same code runs on one
device.

- `sum_over_replicas(x)`: the sum of `x` over the replicas (an all-reduce);
- `global_mean(values)`: this replica's sum / the number of values on all
  replicas (summed over replicas: the mean over the global batch);
- `per_replica(x)`: `x / replicas`, for a value computed on the whole
  global batch (e.g. after `gather_global_batch`) or a regulariser;
- `unscale(x)`: `x * replicas`, to log a per-replica share as the global value;
- `gather_global_batch(x)`: every replica's rows, concatenated (gradients
  flow back to each replica's part).

Example:

```python
import tensorflow as tf
from ktransfer.utils import replicas
strategy = tf.distribute.get_strategy()   # or a MirroredStrategy
losses = tf.constant([1.0, 2.0, 3.0])
strategy.run(replicas.global_mean, (losses,))   # 2.0 on one device
```
"""

import tensorflow as tf


def replica_context():
    """The replica context of a multi-replica step, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def num_replicas():
    """The number of replicas in sync under the current strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def sum_over_replicas(value):
    """`value` summed over the replicas of a multi-replica step (else `value`)."""
    context = replica_context()
    if context is None:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_mean(values):
    """Sum of `values` over this replica / number of values over all replicas.

    Summed over replicas (as the optimizer sums gradients), this is the mean
    over the global batch, whatever the split between replicas. The count
    is not differentiated.
    """
    values = tf.cast(values, tf.float32)
    count = tf.stop_gradient(sum_over_replicas(tf.cast(tf.size(values), tf.float32)))
    return tf.math.divide_no_nan(tf.reduce_sum(values), count)


def per_replica(value):
    """`value / replicas`: the share of a global value that each replica adds."""
    replicas = num_replicas()
    return value if replicas == 1 else value / float(replicas)


def unscale(value):
    """`value * replicas`: a per-replica share back as the global value, for logging."""
    replicas = num_replicas()
    return value if replicas == 1 else value * float(replicas)


def gather_global_batch(values):
    """The `values` of every replica, concatenated on axis 0 (gradients flow back)."""
    context = replica_context()
    return values if context is None else context.all_gather(values, axis=0)


__all__ = [
    "gather_global_batch",
    "global_mean",
    "num_replicas",
    "per_replica",
    "replica_context",
    "sum_over_replicas",
    "unscale",
]
