"""Unsupervised domain adaptation: DANN, CORAL and MMD on a shared encoder.

A classifier trained on one domain (product reviews of *books*) loses
accuracy on another (*kitchen* appliances). These models train on labelled
*source* batches and unlabelled *target* batches together
(`kt.data.zip_domains`) and add a term that makes the encoder's features of
the two domains alike:

- `DANN` (Ganin et al., JMLR 2016): a domain classifier behind a
  `kt.layers.GradientReversal` layer; it learns to tell the domains apart
  while the reversed gradient teaches the encoder to make them
  indistinguishable.
- `CORAL` (Sun & Saenko, 2016, "Deep CORAL"): the distance between the
  feature covariances of the two domains.
- `MMD` (Long et al., 2015, "DAN"; Gretton et al., 2012): the maximum mean
  discrepancy of the features under a sum of Gaussian kernels.

Each is a `keras.Model` whose `train_step` adds the adaptation term to the
compiled task loss; `call`, `evaluate` and `predict` use the task path only
(encoder, then task head), so `kt.export.save` exports encoder + task head
and serves raw strings.

```python
import keras, ktransfer as kt
enc = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=128, pooling="mean")
source = kt.data.prepare(kt.data.from_lists(src_texts, src_labels), enc.preprocessor, batch_size=32, shuffle=True)
target = kt.data.prepare(kt.data.from_lists(tgt_texts), enc.preprocessor, batch_size=32, shuffle=True)
head = kt.heads.ClassificationHead(2)
model = kt.adapt.DANN(enc, task_head=head)   # or kt.adapt.CORAL(enc, head), kt.adapt.MMD(enc, head)
model.compile(optimizer=keras.optimizers.AdamW(5e-5), loss=head.default_loss(), metrics=["accuracy"])
model.fit(kt.data.zip_domains(source, target), epochs=2,
          callbacks=[kt.adapt.GradientReversalSchedule(total_steps=2 * 63)])
# CORAL / MMD: callbacks=[kt.adapt.AlignmentWeightSchedule(total_steps=2 * 63)]
model.evaluate(labelled_target)              # the task path only
kt.export.save(model, "saved_models/reviews/1", labels=["negative", "positive"])
```

Distributed training: every loss is scaled for the global batch, as Keras
does for compiled losses (gradients are summed over replicas). The DANN
domain loss is a mean over the global number of source + target examples;
CORAL and MMD are computed on the features of the *global* batch, gathered
from all replicas (`ReplicaContext.all_gather`, which passes gradients
back), so a MirroredStrategy step equals a single-device step on the same
global batch.

Why not the ADAPT library (adapt-python): its models are built on the
`tf.keras` (Keras 2) API and do not subclass Keras 3 models, so they neither
train a KerasHub encoder nor export through `kt.export`; the three losses
are a few lines each (`ktransfer.losses`, re-exported here as
`kt.adapt.coral_loss` and `kt.adapt.mmd_loss`), tested against a numpy
reference.
"""

import math

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.domains import is_zipped
from ktransfer.data.domains import split_domains
from ktransfer.encoders.keras_hub_adapter import flatten_layers
from ktransfer.layers.gradient_reversal import GradientReversal
from ktransfer.losses import DEFAULT_KERNEL_MULTIPLIERS
from ktransfer.losses import coral_loss
from ktransfer.losses import mmd_loss
from ktransfer.utils.replicas import gather_global_batch
from ktransfer.utils.replicas import global_mean
from ktransfer.utils.replicas import per_replica
from ktransfer.utils.replicas import unscale

# --------------------------------------------------------------------------
# The models.
# --------------------------------------------------------------------------


class DomainAdaptationModel(keras.Model):
    """Base class: encoder + task head, trained with an adaptation term.

    Subclasses implement `adaptation_loss(source_features, target_features)`
    returning `{metric_name: (loss, weight)}`, each loss already scaled for
    summing over replicas. Use `DANN`, `CORAL` or `MMD`.
    """

    def __init__(self, encoder, task_head, _adaptation_layers=(), **kwargs):
        for name, layer in (("encoder", encoder), ("task_head", task_head)):
            if not isinstance(layer, keras.layers.Layer):
                raise TypeError(
                    f"`{name}` must be a Keras layer (e.g. "
                    + (
                        "kt.encoders.BertEncoder(pooling='mean')"
                        if name == "encoder"
                        else "kt.heads.ClassificationHead(2)"
                    )
                    + f"). Received: {type(layer).__name__}"
                )
        if getattr(encoder, "pooling", "mean") is None:
            raise ValueError(
                "Domain adaptation aligns one feature vector per text: build the "
                "encoder with pooling='mean' (or 'cls'/'pooled'), not pooling=None."
            )
        super().__init__(**kwargs)
        # The adaptation layers are tracked first and the task head last, so
        # that `kt.export.save`, which takes the last classification head it
        # finds, exports the task head.
        for name, layer in _adaptation_layers:
            setattr(self, name, layer)
        self.encoder = encoder
        self.task_head = task_head
        self._adaptation_metric_names = ()

    def _add_adaptation_metric(self, metric):
        """Track a training-only metric (left out of `evaluate`'s results)."""
        setattr(self, f"_{metric.name}_metric", metric)
        self._adaptation_metric_names = self._adaptation_metric_names + (metric.name,)
        return metric

    def _adaptation_metric(self, name):
        return getattr(self, f"_{name}_metric")

    def call(self, inputs, training=None):
        if is_zipped(inputs):
            # A kt.data.zip_domains batch, as Keras passes one to build the
            # model before distributed training: the task outputs of the
            # source part, with the adaptation layers built too.
            features = self.encoder(split_domains(inputs)[0], training=training)
            self.build_adaptation(features)
            return self.task_head(features, training=training)
        features = self.encoder(inputs, training=training)
        return self.task_head(features, training=training)

    def build_adaptation(self, features):
        """Create the adaptation layers' weights (called on a features batch)."""

    def adaptation_loss(self, source_features, target_features, training=True):
        raise NotImplementedError

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x_source, x_target = split_domains(x)
        if y is None:
            raise ValueError(
                "The source batches have no labels: build them from a labelled "
                "dataset, kt.data.zip_domains(labelled_source, unlabelled_target)."
            )
        with tf.GradientTape() as tape:
            source_features = self.encoder(x_source, training=True)
            target_features = self.encoder(x_target, training=True)
            y_pred = self.task_head(source_features, training=True)
            task_loss = self.compute_loss(
                x=x_source, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            terms = self.adaptation_loss(source_features, target_features, training=True)
            loss = task_loss
            for value, weight in terms.values():
                loss = loss + tf.cast(weight, loss.dtype) * tf.cast(value, loss.dtype)
            scaled = self.optimizer.scale_loss(loss) if self.optimizer is not None else loss
        variables = self.trainable_weights
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))

        self._loss_tracker.update_state(unscale(task_loss), sample_weight=tf.shape(y_pred)[0])
        for name, (value, _) in terms.items():
            self._adaptation_metric(name).update_state(unscale(value))
        return self.compute_metrics(x_source, y, y_pred, sample_weight=sample_weight)

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if is_zipped(x):
            raise ValueError(
                f"{type(self).__name__}.evaluate measures the task on labelled "
                "(features, labels) batches, e.g. the target domain's; it received "
                "kt.data.zip_domains batches. Pass validation_data/evaluate the "
                "prepared labelled dataset itself."
            )
        logs = super().test_step(data)
        return {k: v for k, v in logs.items() if k not in self._adaptation_metric_names}

    def get_config(self):
        return {
            "name": self.name,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "task_head": keras.saving.serialize_keras_object(self.task_head),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "task_head", "domain_head"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _check_weight(name, value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if isinstance(value, bool) or number is None or not number >= 0.0 or math.isinf(number):
        raise ValueError(f"`{name}` must be a finite number >= 0. Received: {value!r}")
    return number


@keras.saving.register_keras_serializable(package="ktransfer")
class DANN(DomainAdaptationModel):
    """Domain-adversarial training (Ganin et al., JMLR 2016).

    A domain classifier reads the encoder's features through a
    `GradientReversal` layer and learns to tell source (0) from target (1)
    examples; the reversed gradient pushes the encoder towards features the
    classifier cannot separate. The loss is
    `task_loss + domain_loss_weight * domain_loss`, where the domain loss is
    the binary cross-entropy over all source and target examples of the
    batch; the encoder receives `-lambda_ * domain_loss_weight` times its
    gradient.

    Args:
        encoder: the shared feature extractor: a pooled `BertEncoder` or any
            layer mapping inputs to `[batch, features]`.
        task_head: the classifier of the task, e.g.
            `kt.heads.ClassificationHead(2)`.
        domain_head: a layer mapping features to one domain logit
            `[batch, 1]`. Default: `Dense(domain_hidden_dim, relu)` then
            `Dense(1)`.
        lambda_: the initial gradient-reversal factor. Follow Ganin et al.'s
            ramp from 0 to 1 with the `GradientReversalSchedule` callback
            (recommended; it sets `model.gradient_reversal.lambda_`).
        domain_loss_weight: weight of the domain loss.
        domain_hidden_dim: the hidden size of the default domain head.

    Training metrics: `loss` (the task loss, as `evaluate` reports it),
    `domain_loss`, `domain_accuracy` (how well the domain classifier tells
    the domains apart: near 0.5 means aligned features), and the compiled
    metrics on the source batches.
    """

    def __init__(
        self,
        encoder,
        task_head,
        domain_head=None,
        lambda_=1.0,
        domain_loss_weight=1.0,
        domain_hidden_dim=256,
        **kwargs,
    ):
        self.domain_loss_weight = _check_weight("domain_loss_weight", domain_loss_weight)
        if isinstance(domain_hidden_dim, bool) or not isinstance(domain_hidden_dim, int) or (
            domain_hidden_dim < 1
        ):
            raise ValueError(
                f"`domain_hidden_dim` must be a positive int. Received: {domain_hidden_dim!r}"
            )
        if domain_head is None:
            domain_head = keras.Sequential(
                [
                    keras.layers.Dense(domain_hidden_dim, activation="relu", name="hidden"),
                    keras.layers.Dense(1, dtype="float32", name="logit"),
                ],
                name="domain_head",
            )
        elif not isinstance(domain_head, keras.layers.Layer):
            raise TypeError(
                "`domain_head` must be a Keras layer mapping features to one logit "
                f"[batch, 1], or None for the default. Received: {type(domain_head).__name__}"
            )
        super().__init__(
            encoder,
            task_head,
            _adaptation_layers=(
                ("gradient_reversal", GradientReversal(lambda_, name="gradient_reversal")),
                ("domain_head", domain_head),
            ),
            **kwargs,
        )
        self.domain_hidden_dim = domain_hidden_dim
        self._add_adaptation_metric(keras.metrics.Mean(name="domain_loss"))
        self.domain_accuracy = self._add_adaptation_metric(
            keras.metrics.BinaryAccuracy(name="domain_accuracy")
        )

    def build_adaptation(self, features):
        self.domain_logits(features, training=False)

    def domain_logits(self, features, training=None):
        """The domain classifier's logits `[batch]` (through the reversal)."""
        logits = self.domain_head(self.gradient_reversal(features), training=training)
        if logits.shape.rank != 2 or logits.shape[-1] != 1:
            raise ValueError(
                "`domain_head` must return one logit per example, shape [batch, 1]. "
                f"It returned shape {logits.shape}."
            )
        return tf.cast(logits[:, 0], tf.float32)

    def adaptation_loss(self, source_features, target_features, training=True):
        logits = tf.concat(
            [
                self.domain_logits(source_features, training=training),
                self.domain_logits(target_features, training=training),
            ],
            axis=0,
        )
        domains = tf.concat(
            [tf.zeros_like(logits[: tf.shape(source_features)[0]]),
             tf.ones_like(logits[tf.shape(source_features)[0]:])],
            axis=0,
        )
        per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=domains, logits=logits)
        self.domain_accuracy.update_state(domains, tf.sigmoid(logits))
        return {"domain_loss": (global_mean(per_example), self.domain_loss_weight)}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "domain_head": keras.saving.serialize_keras_object(self.domain_head),
                "lambda_": float(keras.ops.convert_to_numpy(self.gradient_reversal.lambda_)),
                "domain_loss_weight": self.domain_loss_weight,
                "domain_hidden_dim": self.domain_hidden_dim,
            }
        )
        return config


class _AlignmentModel(DomainAdaptationModel):
    """Task loss + `alignment_weight` * a distance between the domains' features."""

    metric_name = None

    def __init__(self, encoder, task_head, alignment_weight=1.0, **kwargs):
        self.alignment_weight = _check_weight("alignment_weight", alignment_weight)
        super().__init__(encoder, task_head, **kwargs)
        self._add_adaptation_metric(keras.metrics.Mean(name=self.metric_name))
        # A factor on the weight that `AlignmentWeightSchedule` ramps from 0 to
        # 1 during training; a variable, so changing it does not retrace.
        self.alignment_scale = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="alignment_scale"
        )

    def alignment(self, source_features, target_features):
        raise NotImplementedError

    def adaptation_loss(self, source_features, target_features, training=True):
        value = self.alignment(
            gather_global_batch(tf.cast(source_features, tf.float32)),
            gather_global_batch(tf.cast(target_features, tf.float32)),
        )
        weight = self.alignment_weight * tf.convert_to_tensor(self.alignment_scale)
        return {self.metric_name: (per_replica(value), weight)}

    def get_config(self):
        config = super().get_config()
        config["alignment_weight"] = self.alignment_weight
        return config


@keras.saving.register_keras_serializable(package="ktransfer")
class CORAL(_AlignmentModel):
    """Deep CORAL (Sun & Saenko, 2016): align the domains' feature covariances.

    The loss is `task_loss + alignment_weight * coral_loss(f_s, f_t)` with
    `coral_loss = ||C_s - C_t||_F^2 / (4 d^2)` on the encoder's features of
    the (global) source and target batches.

    Args:
        encoder, task_head: as for `DANN`.
        alignment_weight: the weight of the CORAL term.

    Example:

    ```python
    model = kt.adapt.CORAL(encoder, kt.heads.ClassificationHead(2), alignment_weight=1.0)
    ```
    """

    metric_name = "coral_loss"

    def alignment(self, source_features, target_features):
        return coral_loss(source_features, target_features)


@keras.saving.register_keras_serializable(package="ktransfer")
class MMD(_AlignmentModel):
    """Maximum mean discrepancy of the domains' features (DAN, Long et al. 2015).

    The loss is `task_loss + alignment_weight * mmd_loss(f_s, f_t)`, the
    squared multi-kernel MMD (see `mmd_loss`) on the encoder's features of
    the (global) source and target batches.

    Args:
        encoder, task_head: as for `DANN`.
        alignment_weight: the weight of the MMD term.
        kernel_multipliers: the Gaussian kernels' bandwidths, as multiples
            of the batch's mean squared pairwise distance.
    """

    metric_name = "mmd_loss"

    def __init__(
        self,
        encoder,
        task_head,
        alignment_weight=1.0,
        kernel_multipliers=DEFAULT_KERNEL_MULTIPLIERS,
        **kwargs,
    ):
        multipliers = tuple(float(m) for m in kernel_multipliers)
        if not multipliers or any(not m > 0 for m in multipliers):
            raise ValueError(
                "`kernel_multipliers` must be a non-empty list of positive numbers. "
                f"Received: {kernel_multipliers!r}"
            )
        self.kernel_multipliers = multipliers
        super().__init__(encoder, task_head, alignment_weight=alignment_weight, **kwargs)

    def alignment(self, source_features, target_features):
        return mmd_loss(source_features, target_features, self.kernel_multipliers)

    def get_config(self):
        config = super().get_config()
        config["kernel_multipliers"] = list(self.kernel_multipliers)
        return config


# --------------------------------------------------------------------------
# The lambda schedule.
# --------------------------------------------------------------------------


def ganin_lambda(progress, gamma=10.0):
    """Ganin et al.'s ramp `2 / (1 + exp(-gamma p)) - 1`, from 0 (p=0) to ~1 (p=1)."""
    progress = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class _GaninRamp(keras.callbacks.Callback):
    """Set a model's adaptation factor to Ganin et al.'s ramp before each step."""

    log_name = None

    def __init__(self, max_value, gamma=10.0, total_steps=None):
        super().__init__()
        self.gamma = _check_weight("gamma", gamma)
        if total_steps is not None and (
            isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1
        ):
            raise ValueError(f"`total_steps` must be a positive int. Received: {total_steps!r}")
        self.total_steps = total_steps
        self._max_value = max_value
        self.value = 0.0

    def _variables(self):
        """The variables the ramp sets (raises if the model has none)."""
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        self._targets = self._variables()
        self._total = self.total_steps
        if self._total is None:
            steps = self.params.get("steps")
            if not steps:
                raise ValueError(
                    f"{type(self).__name__} needs the number of training steps, but "
                    "fit does not know how many batches an epoch has (bucketed "
                    "kt.data.prepare batches have an unknown length). Pass "
                    "total_steps=epochs * batches_per_epoch, or fit(steps_per_epoch=...)."
                )
            self._total = steps * self.params["epochs"]
        self._steps_before_epoch = 0
        self._steps_this_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._steps_before_epoch += self._steps_this_epoch
        self._steps_this_epoch = 0

    def on_train_batch_begin(self, batch, logs=None):
        progress = (self._steps_before_epoch + batch) / self._total
        self.value = self._max_value * ganin_lambda(progress, self.gamma)
        for variable in self._targets:
            variable.assign(self.value)

    def on_train_batch_end(self, batch, logs=None):
        self._steps_this_epoch = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.log_name] = self.value


class GradientReversalSchedule(_GaninRamp):
    """Ramp every `GradientReversal` layer's lambda with Ganin et al.'s schedule.

    Before each training step, `lambda = max_lambda * (2 / (1 + exp(-gamma p)) - 1)`
    where `p` goes from 0 to 1 over the whole training run (Ganin et al.,
    JMLR 2016, section 5.2.2): the domain classifier learns first, and the
    encoder feels its reversed gradient more and more. The current value is
    logged as `gradient_reversal_lambda` at the end of each epoch.

    Args:
        max_lambda: the final factor.
        gamma: the steepness (10 in the paper).
        total_steps: the number of training steps the ramp spans. Default:
            `epochs * steps_per_epoch` from `fit`; give it when `fit` cannot
            know the number of batches (bucketed `kt.data.prepare` batches
            have an unknown length) or when training spans several `fit` calls.

    Example:

    ```python
    schedule = kt.adapt.GradientReversalSchedule(total_steps=epochs * batches_per_epoch)
    dann.fit(kt.data.zip_domains(source, target), epochs=epochs, callbacks=[schedule])
    ```
    """

    log_name = "gradient_reversal_lambda"

    def __init__(self, max_lambda=1.0, gamma=10.0, total_steps=None):
        self.max_lambda = _check_weight("max_lambda", max_lambda)
        super().__init__(self.max_lambda, gamma=gamma, total_steps=total_steps)

    def _variables(self):
        layers = [
            layer for layer in flatten_layers(self.model) if isinstance(layer, GradientReversal)
        ]
        if not layers:
            raise ValueError(
                "GradientReversalSchedule found no kt.layers.GradientReversal layer in "
                "the model (kt.adapt.DANN has one): nothing to schedule."
            )
        return [layer.lambda_ for layer in layers]


class AlignmentWeightSchedule(_GaninRamp):
    """Ramp a `CORAL` / `MMD` model's alignment term in with Ganin et al.'s schedule.

    Before each training step the alignment term is weighted by
    `alignment_weight * (2 / (1 + exp(-gamma p)) - 1)`, `p` going from 0 to 1
    over training (it sets the model's `alignment_scale` variable). Early on
    the task loss alone shapes the features; the alignment comes in once
    they carry the task. Without it, a strong alignment term on a fine-tuned
    encoder can win the race and map both domains onto features that say
    nothing about the task (MMD's trivial minimum: all features equal).
    The current factor is logged as `alignment_scale` at the end of each epoch.

    Args:
        gamma: the steepness (10, as Ganin et al.'s lambda ramp).
        total_steps: as for `GradientReversalSchedule`.

    Example:

    ```python
    model = kt.adapt.MMD(encoder, kt.heads.ClassificationHead(2))
    model.compile(optimizer="adam", loss=model.task_head.default_loss())
    schedule = kt.adapt.AlignmentWeightSchedule(total_steps=epochs * batches_per_epoch)
    model.fit(kt.data.zip_domains(source, target), epochs=epochs, callbacks=[schedule])
    ```
    """

    log_name = "alignment_scale"

    def __init__(self, gamma=10.0, total_steps=None):
        super().__init__(1.0, gamma=gamma, total_steps=total_steps)

    def _variables(self):
        if not isinstance(self.model, _AlignmentModel):
            raise ValueError(
                "AlignmentWeightSchedule ramps the alignment term of kt.adapt.CORAL or "
                f"kt.adapt.MMD; the model is a {type(self.model).__name__}. For DANN, "
                "use kt.adapt.GradientReversalSchedule."
            )
        return [self.model.alignment_scale]
