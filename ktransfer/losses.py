"""Losses of ktransfer's transfer methods, usable on their own (e.g. in a custom loop).

- domain adaptation (`kt.adapt`): `coral_loss` (Deep CORAL, Sun & Saenko
  2016), `mmd_loss` (multi-kernel maximum mean discrepancy, Long et al. 2015);
- distillation (`kt.distill`): `distillation_loss` (Hinton et al. 2015;
  Tang et al. 2019).

Each takes float tensors and returns float32 scalars; each is tested
against a numpy reference.

Example:

```python
import numpy as np, ktransfer as kt
rng = np.random.default_rng(0)
source = rng.normal(size=(32, 8)).astype("float32")
target = rng.normal(1.0, size=(32, 8)).astype("float32")
float(kt.losses.coral_loss(source, target)) >= 0.0   # True
float(kt.losses.mmd_loss(source, source))            # 0.0: same features
```
"""

import tensorflow as tf

# The label of a text nobody labelled (it teaches through the teacher's logits alone).
UNLABELLED = -1
SOFT_LOSSES = ("kl", "mse")
DEFAULT_KERNEL_MULTIPLIERS = (0.125, 0.25, 0.5, 1.0, 2.0)


def coral_loss(source_features, target_features):
    """Deep CORAL: `||C_s - C_t||_F^2 / (4 d^2)` of the two feature covariances.

    Args:
        source_features, target_features: `[n_s, d]` and `[n_t, d]` features
            (at least 2 rows each for an unbiased covariance).

    Returns:
        A float32 scalar.
    """
    source = tf.cast(source_features, tf.float32)
    target = tf.cast(target_features, tf.float32)
    dim = tf.cast(tf.shape(source)[-1], tf.float32)
    difference = _covariance(source) - _covariance(target)
    return tf.reduce_sum(tf.square(difference)) / (4.0 * dim * dim)


def _covariance(x):
    n = tf.cast(tf.shape(x)[0], tf.float32)
    centred = x - tf.reduce_mean(x, axis=0, keepdims=True)
    return tf.matmul(centred, centred, transpose_a=True) / tf.maximum(n - 1.0, 1.0)


def mmd_loss(source_features, target_features, kernel_multipliers=DEFAULT_KERNEL_MULTIPLIERS):
    """Squared maximum mean discrepancy under a sum of Gaussian kernels.

    `MMD^2 = mean k(s, s') + mean k(t, t') - 2 mean k(s, t)` (the biased
    estimate, all pairs including `i = j`), with
    `k(a, b) = sum_m exp(-||a - b||^2 / (2 m sigma^2))` over the
    `kernel_multipliers` m, where `sigma^2` is the mean squared distance
    between all pairs of the joint batch (not differentiated): the
    multi-kernel MMD of DAN (Long et al., 2015).

    Returns:
        A float32 scalar.
    """
    source = tf.cast(source_features, tf.float32)
    target = tf.cast(target_features, tf.float32)
    n_source = tf.shape(source)[0]
    joint = tf.concat([source, target], axis=0)
    squared_norms = tf.reduce_sum(tf.square(joint), axis=-1)
    distances = (
        squared_norms[:, None] + squared_norms[None, :] - 2.0 * tf.matmul(joint, joint, transpose_b=True)
    )
    distances = tf.maximum(distances, 0.0)
    bandwidth = tf.stop_gradient(tf.reduce_mean(distances))
    bandwidth = tf.maximum(bandwidth, 1e-12)
    kernel = tf.add_n(
        [tf.exp(-distances / (2.0 * float(m) * bandwidth)) for m in kernel_multipliers]
    )
    source_source = tf.reduce_mean(kernel[:n_source, :n_source])
    target_target = tf.reduce_mean(kernel[n_source:, n_source:])
    source_target = tf.reduce_mean(kernel[:n_source, n_source:])
    return source_source + target_target - 2.0 * source_target


def distillation_loss(
    labels,
    teacher_logits,
    student_logits,
    temperature=2.0,
    alpha=0.5,
    soft_loss="kl",
    labelled_count=None,
    batch_count=None,
):
    """`alpha * hard + (1 - alpha) * soft`, and both parts, for one batch.

    - hard: cross-entropy of the student's logits against `labels`, averaged
      over the labelled rows (`label == -1` rows count nothing);
    - soft, `"kl"`: `T^2 * KL(softmax(teacher / T) || softmax(student / T))`
      averaged over all rows (Hinton et al. 2015; the `T^2` keeps the
      gradients' scale independent of `T`);
    - soft, `"mse"`: the mean squared difference of the raw logits, averaged
      over classes and rows (Tang et al. 2019; `temperature` is not used).

    Args:
        labels: int `[batch]`, -1 for unlabelled rows.
        teacher_logits, student_logits: float `[batch, classes]`.
        temperature, alpha, soft_loss: see `kt.distill.Distiller`.
        labelled_count, batch_count: the denominators of the two means;
            default this batch's labelled rows and rows. Under
            `tf.distribute`, `Distiller` passes the global batch's counts, so
            the replicas' losses add up to the loss of the global batch.

    Returns:
        `(loss, hard, soft)` float32 scalars.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    teacher_logits = tf.cast(teacher_logits, tf.float32)
    student_logits = tf.cast(student_logits, tf.float32)
    labelled = tf.not_equal(labels, UNLABELLED)
    weights = tf.cast(labelled, tf.float32)
    if labelled_count is None:
        labelled_count = tf.reduce_sum(weights)
    if batch_count is None:
        batch_count = tf.cast(tf.shape(labels)[0], tf.float32)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(labelled, labels, 0), logits=student_logits
    )
    hard = tf.reduce_sum(cross_entropy * weights) / tf.maximum(labelled_count, 1.0)
    if soft_loss == "kl":
        teacher_log_p = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
        student_log_p = tf.nn.log_softmax(student_logits / temperature, axis=-1)
        per_example = tf.reduce_sum(
            tf.exp(teacher_log_p) * (teacher_log_p - student_log_p), axis=-1
        ) * (temperature**2)
    else:
        per_example = tf.reduce_mean(tf.square(student_logits - teacher_logits), axis=-1)
    soft = tf.reduce_sum(per_example) / tf.maximum(batch_count, 1.0)
    return alpha * hard + (1.0 - alpha) * soft, hard, soft


__all__ = [
    "DEFAULT_KERNEL_MULTIPLIERS",
    "SOFT_LOSSES",
    "UNLABELLED",
    "coral_loss",
    "distillation_loss",
    "mmd_loss",
]
