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

With the defaults, `fit` ramps the adaptation term in (Ganin et al.'s
schedule) and, given `source_validation`, trains a source-only reference as
well and keeps the adapted weights only if an unsupervised selection rule
(a source-validation guard, DEV of You et al. 2019, and the contradiction of
source-only's confident target predictions) says adaptation does not hurt;
it prints which weights it kept (`DomainAdaptationModel.fit`).

Each is a `keras.Model` whose `train_step` adds the adaptation term to the
compiled task loss; `call`, `evaluate` and `predict` use the task path only
(encoder, then task head), so `kt.export.save` exports encoder + task head
and serves raw strings.

```python
import keras, ktransfer as kt
enc = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=128, pooling="mean")
source = kt.data.prepare(kt.data.from_lists(src_texts, src_labels), enc.preprocessor, batch_size=32, shuffle=True)
source_val = kt.data.prepare(kt.data.from_lists(val_texts, val_labels), enc.preprocessor, batch_size=64)
target = kt.data.prepare(kt.data.from_lists(tgt_texts), enc.preprocessor, batch_size=32, shuffle=True)
head = kt.heads.ClassificationHead(2)
model = kt.adapt.DANN(enc, task_head=head)   # or kt.adapt.CORAL(enc, head), kt.adapt.MMD(enc, head)
model.compile(optimizer=keras.optimizers.AdamW(5e-5), loss=head.default_loss(), metrics=["accuracy"])
# Ganin's ramp of lambda (CORAL / MMD: of the alignment weight) is applied by
# default; source_validation (held-out labelled *source* examples) lets fit
# fall back to source-only weights when adaptation hurts (see DomainAdaptationModel.fit).
model.fit(kt.data.zip_domains(source, target), epochs=2, source_validation=source_val)
model.adaptation_report["kept"]              # "adapted" or "source_only"
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
import warnings

import numpy as np

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

    def __init__(
        self, encoder, task_head, ramp=True, fallback=True, _adaptation_layers=(), **kwargs
    ):
        if not isinstance(ramp, bool) or not isinstance(fallback, bool):
            raise TypeError(
                f"`ramp` and `fallback` must be True or False. Received: ramp={ramp!r}, "
                f"fallback={fallback!r}"
            )
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
        self.ramp = ramp
        self.fallback = fallback
        self.adaptation_report = None
        self._source_only = False
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
            target_features = (
                None if self._source_only else self.encoder(x_target, training=True)
            )
            y_pred = self.task_head(source_features, training=True)
            task_loss = self.compute_loss(
                x=x_source, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            if self._source_only:  # the fallback's reference run: no adaptation term
                terms = {}
            else:
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
            "ramp": self.ramp,
            "fallback": self.fallback,
        }

    # ----------------------------------------------------------------------
    # fit: the default ramp, and the fallback to source-only weights.
    # ----------------------------------------------------------------------

    def _default_schedule(self, total_steps):
        raise NotImplementedError

    def fit(
        self,
        x=None,
        y=None,
        epochs=1,
        callbacks=None,
        source_validation=None,
        fallback=None,
        source_tolerance=0.01,
        target_tolerance=0.01,
        **kwargs,
    ):
        """`keras.Model.fit`, plus Ganin's ramp by default and a fallback to source-only.

        Args:
            x, y, epochs, callbacks, **kwargs: as for `keras.Model.fit`;
                `x` is a `kt.data.zip_domains` dataset.
            source_validation: labelled *source* examples that training does
                not see (a batched `tf.data.Dataset` of `(features, labels)`
                or a `(features, labels)` tuple). Needed when `fallback` is on.
            fallback: train a source-only reference as well and keep the
                adapted weights only if the selection rule (below) says
                adaptation does not hurt; otherwise restore the reference's
                weights. Default: the model's `fallback` (True).
            source_tolerance: the largest drop of source-validation accuracy
                (vs source-only) the rule accepts.
            target_tolerance: the largest *contradiction* (below) the rule
                accepts.

        The ramp: when `self.ramp` is True and no `GradientReversalSchedule`
        / `AlignmentWeightSchedule` is among `callbacks`, one spanning this
        `fit` call is added (the number of steps is `steps_per_epoch`, the
        dataset's cardinality, or counted once).

        The selection rule (no target labels). With the same encoder + head
        trained twice from the same initial weights, alignment off
        (source-only) and on (adapted), the adapted weights are kept only if
        all three hold:

        1. *source guard*: adapted source-validation accuracy is at most
           `source_tolerance` below source-only's;
        2. *DEV* (Deep Embedded Validation, You et al., ICML 2019): the
           adapted model's estimated target risk (`dev_risk` of its
           source-validation losses, importance-weighted with a domain
           classifier on its own features) is not above source-only's;
        3. *contradiction*: on the unlabelled target examples, the adapted
           model contradicts the confident source-only predictions by at most
           `target_tolerance`, where contradiction is the mean over target
           examples of `p_s(argmax p_s) - p_s(argmax p_a)` (the accuracy the
           adapted model loses if source-only's probabilities were right).

        One line says which weights were kept and why; the figures are in
        `model.adaptation_report` and in the returned History
        (`history.adaptation_report`, and one-element `history.history`
        entries such as `kept_adapted`).

        Example:

        ```python
        model = kt.adapt.DANN(encoder, kt.heads.ClassificationHead(2))
        model.compile(optimizer="adam", loss=model.task_head.default_loss(), metrics=["accuracy"])
        history = model.fit(kt.data.zip_domains(source, target), epochs=2, source_validation=source_val)
        model.adaptation_report["kept"]  # "adapted" or "source_only"
        ```
        """
        callbacks = list(callbacks or [])
        fallback = self.fallback if fallback is None else fallback
        if not isinstance(fallback, bool):
            raise TypeError(f"`fallback` must be True or False. Received: {fallback!r}")
        source_tolerance = _check_weight("source_tolerance", source_tolerance)
        target_tolerance = _check_weight("target_tolerance", target_tolerance)
        if fallback and source_validation is None:
            raise ValueError(
                f"{type(self).__name__}.fit falls back to source-only weights when "
                "adaptation hurts, and decides it on labelled source examples that "
                "training does not see: pass fit(..., source_validation=labelled_source_val) "
                "(e.g. kt.data.prepare on 10-20% of the source data held out before "
                "zip_domains), or fallback=False to keep the adapted weights unchecked."
            )
        if self.ramp and not any(isinstance(c, _GaninRamp) for c in callbacks):
            total = _count_steps(x, kwargs.get("steps_per_epoch"), epochs)
            if total is not None:
                callbacks.append(self._default_schedule(total))
        if not fallback:
            return super().fit(x, y, epochs=epochs, callbacks=callbacks, **kwargs)
        if not isinstance(x, tf.data.Dataset):
            raise ValueError(
                "fit with fallback needs `x` as a tf.data.Dataset from kt.data.zip_domains; "
                f"received {type(x).__name__}."
            )
        spec = x.element_spec
        split_domains(spec[0] if isinstance(spec, tuple) else spec)  # a clear error if not zipped
        validation = _as_dataset(source_validation)
        # The same source and target batches score both models (up to 2,048
        # examples of each domain, kept in memory).
        domain_batches, seen = [], 0
        for batch in x:
            domain_batches.append(batch[0])
            seen += int(tf.shape(tf.nest.flatten(batch[0]["target"])[0])[0])
            if seen >= 2048:
                break
        if not self.built or not self.optimizer.built:
            self(next(iter(x.take(1)))[0])
            self.optimizer.build(self.trainable_variables)
        variables = self.variables
        start = ([v.numpy() for v in variables], [v.numpy() for v in self.optimizer.variables])
        verbose = kwargs.get("verbose", "auto")
        say = print if verbose != 0 else _silent

        say("kt.adapt: training the source-only reference (alignment off) ...")
        reference_kwargs = {k: v for k, v in kwargs.items() if k != "validation_data"}
        self._set_source_only(True)
        try:
            with warnings.catch_warnings():  # the adaptation layers get no gradient here
                warnings.filterwarnings("ignore", message="Gradients do not exist")
                super().fit(x, y, epochs=epochs, **reference_kwargs)
        finally:
            self._set_source_only(False)
        reference = ([v.numpy() for v in variables], [v.numpy() for v in self.optimizer.variables])
        reference_figures = self._selection_figures(domain_batches, validation)

        _assign(variables, start[0])
        _assign(self.optimizer.variables, start[1])
        self.reset_metrics()
        say(f"kt.adapt: training {type(self).__name__} ...")
        history = super().fit(x, y, epochs=epochs, callbacks=callbacks, **kwargs)
        adapted_figures = self._selection_figures(domain_batches, validation)

        report = _select(reference_figures, adapted_figures, source_tolerance, target_tolerance)
        if report["kept"] == "source_only":
            _assign(variables, reference[0])
            _assign(self.optimizer.variables, reference[1])
        self.adaptation_report = report
        history.adaptation_report = report
        for key in ("source_only_val_accuracy", "adapted_val_accuracy",
                    "source_only_dev_risk", "adapted_dev_risk", "contradiction"):
            if report[key] is not None:
                history.history[key] = [report[key]]
        history.history["kept_adapted"] = [1.0 if report["kept"] == "adapted" else 0.0]
        print(report["message"])
        return history

    def _set_source_only(self, value):
        self._source_only = value
        # The flag is read when the train step is traced: trace it again.
        self.train_function = None
        self.make_train_function(force=True)

    def _selection_figures(self, domain_batches, validation):
        """Features, per-example losses and accuracies the selection rule needs."""
        predict = tf.function(self._features_and_logits, reduce_retracing=True)
        val_features, val_losses, val_correct = [], [], []
        for batch in validation:
            inputs, labels, _ = keras.utils.unpack_x_y_sample_weight(batch)
            features, logits = predict(inputs)
            val_features.append(features.numpy())
            val_losses.append(self._per_example_loss(labels, logits))
            val_correct.append(_correct(labels, logits))
        source_features, target_features, target_probabilities = [], [], []
        for inputs in domain_batches:
            features, _ = predict(inputs["source"])
            target, logits = predict(inputs["target"])
            source_features.append(features.numpy())
            target_features.append(target.numpy())
            target_probabilities.append(_probabilities(logits))
        val_correct = None if any(c is None for c in val_correct) else np.concatenate(val_correct)
        return {
            "val_features": np.concatenate(val_features),
            "val_losses": np.concatenate(val_losses),
            "val_accuracy": None if val_correct is None else float(val_correct.mean()),
            "source_features": np.concatenate(source_features),
            "target_features": np.concatenate(target_features),
            "target_probabilities": (
                None if any(p is None for p in target_probabilities)
                else np.concatenate(target_probabilities)
            ),
        }

    def _features_and_logits(self, inputs):
        features = self.encoder(inputs, training=False)
        return tf.cast(features, tf.float32), tf.cast(
            self.task_head(features, training=False), tf.float32
        )

    def _per_example_loss(self, labels, logits):
        loss = self.loss
        if isinstance(loss, str):
            loss = keras.losses.get(loss)
        if isinstance(loss, keras.losses.Loss):
            config = dict(loss.get_config(), reduction=None)
            loss = type(loss).from_config(config)
        if not callable(loss):
            raise ValueError(
                "fit with fallback needs one compiled loss (a Keras loss or function) to "
                f"score the source validation; the model was compiled with {self.loss!r}."
            )
        values = np.asarray(keras.ops.convert_to_numpy(loss(labels, logits)), "float64")
        return values.reshape(len(values), -1).mean(axis=1)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "task_head", "domain_head"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _silent(*args, **kwargs):
    pass


def _assign(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


def _as_dataset(data):
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        return tf.data.Dataset.from_tensor_slices(tuple(data)).batch(256)
    raise ValueError(
        "`source_validation` must be labelled source examples: a batched tf.data.Dataset "
        "of (features, labels), e.g. kt.data.prepare(held_out_source, preprocessor, "
        f"batch_size=64), or a (features, labels) tuple. Received: {type(data).__name__}"
    )


def _count_steps(x, steps_per_epoch, epochs):
    """The steps of a `fit` call (None for an endless dataset without steps_per_epoch)."""
    if steps_per_epoch:
        return int(steps_per_epoch) * int(epochs)
    if not isinstance(x, tf.data.Dataset):
        return None
    steps = int(x.cardinality())
    if steps == tf.data.INFINITE_CARDINALITY:
        return None
    if steps == tf.data.UNKNOWN_CARDINALITY:
        print(
            "kt.adapt: counting the batches of one epoch for the default ramp (pass "
            "steps_per_epoch=, or a schedule callback with total_steps=, to skip this)."
        )
        steps = int(x.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    return max(steps, 1) * int(epochs)


def _probabilities(logits):
    logits = np.asarray(logits, "float64")
    if logits.ndim != 2:
        return None
    if logits.shape[-1] == 1:
        p = 1.0 / (1.0 + np.exp(-logits))
        return np.concatenate([1.0 - p, p], axis=-1)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _correct(labels, logits):
    labels = np.asarray(labels)
    logits = np.asarray(logits)
    if logits.ndim != 2 or labels.dtype.kind not in "iu" or labels.reshape(-1).shape[0] != len(logits):
        return None
    predicted = (logits[:, 0] > 0).astype(int) if logits.shape[-1] == 1 else logits.argmax(-1)
    return (predicted == labels.reshape(-1)).astype("float64")


def density_ratios(source_features, target_features, validation_features, seed=0):
    """Importance weights `p_target(x) / p_source(x)` of validation features (DEV's step 2).

    A logistic-regression domain classifier (scikit-learn, L2, C=1, on
    standardised features) learns source (0) vs target (1) features; the
    weight of a validation example is `n_s / n_t * P(target|x) / P(source|x)`.
    """
    from sklearn.linear_model import LogisticRegression

    source = np.asarray(source_features, "float64")
    target = np.asarray(target_features, "float64")
    validation = np.asarray(validation_features, "float64")
    both = np.concatenate([source, target])
    mean, std = both.mean(axis=0), both.std(axis=0) + 1e-8
    classifier = LogisticRegression(C=1.0, max_iter=1000, random_state=seed)
    classifier.fit((both - mean) / std, np.r_[np.zeros(len(source)), np.ones(len(target))])
    p = np.clip(classifier.predict_proba((validation - mean) / std)[:, 1], 1e-6, 1 - 1e-6)
    return len(source) / len(target) * p / (1.0 - p)


def dev_risk(losses, weights):
    """Deep Embedded Validation's target-risk estimate (You et al., ICML 2019).

    `mean(w * l) + eta * mean(w) - eta`, with the control variate
    `eta = -Cov(w * l, w) / Var(w)`, for the per-example validation losses
    `l` and importance weights `w` (e.g. from `density_ratios`).

    Example:

    ```python
    kt.adapt.dev_risk([0.2, 0.9, 0.4], [0.5, 2.0, 1.0])  # 0.706...
    ```
    """
    losses = np.asarray(losses, "float64").reshape(-1)
    weights = np.asarray(weights, "float64").reshape(-1)
    weighted = weights * losses
    variance = weights.var(ddof=1) if len(weights) > 1 else 0.0
    if not variance > 0:
        return float(weighted.mean())
    eta = -np.cov(weighted, weights, ddof=1)[0, 1] / variance
    return float(weighted.mean() + eta * weights.mean() - eta)


def _select(reference, adapted, source_tolerance, target_tolerance):
    """The fallback rule's report (see `DomainAdaptationModel.fit`)."""
    dev = {}
    for name, figures in (("source_only", reference), ("adapted", adapted)):
        weights = density_ratios(
            figures["source_features"], figures["target_features"], figures["val_features"]
        )
        dev[name] = dev_risk(figures["val_losses"], weights)
    contradiction = None
    if reference["target_probabilities"] is not None and adapted["target_probabilities"] is not None:
        p = reference["target_probabilities"]
        mine = p.argmax(-1)
        theirs = adapted["target_probabilities"].argmax(-1)
        rows = np.arange(len(p))
        contradiction = float(np.mean(p[rows, mine] - p[rows, theirs]))
    reasons = []
    accuracy_s, accuracy_a = reference["val_accuracy"], adapted["val_accuracy"]
    if accuracy_s is not None:
        if accuracy_a < accuracy_s - source_tolerance:
            reasons.append(
                f"source-val accuracy {accuracy_a:.3f} < {accuracy_s:.3f} of source-only "
                f"- {source_tolerance:g}"
            )
    else:  # no accuracy (not a classifier): the mean loss instead
        loss_s, loss_a = reference["val_losses"].mean(), adapted["val_losses"].mean()
        if loss_a > loss_s * (1 + source_tolerance):
            reasons.append(f"source-val loss {loss_a:.4g} > {loss_s:.4g} of source-only")
    if dev["adapted"] > dev["source_only"]:
        reasons.append(f"DEV risk {dev['adapted']:.4g} > {dev['source_only']:.4g} of source-only")
    if contradiction is not None and contradiction > target_tolerance:
        reasons.append(
            f"it contradicts source-only's confident target predictions by "
            f"{contradiction:.3f} > {target_tolerance:g}"
        )
    kept = "source_only" if reasons else "adapted"
    if reasons:
        message = "kt.adapt: kept source-only weights (" + "; ".join(reasons) + ")"
    else:
        message = (
            "kt.adapt: kept adapted weights (source-val accuracy "
            + ("n/a" if accuracy_a is None else f"{accuracy_a:.3f} vs {accuracy_s:.3f}")
            + f", DEV risk {dev['adapted']:.4g} <= {dev['source_only']:.4g}"
            + ("" if contradiction is None else f", contradiction {contradiction:.3f}")
            + " of source-only)"
        )
    return {
        "kept": kept,
        "reasons": reasons,
        "message": message,
        "source_only_val_accuracy": accuracy_s,
        "adapted_val_accuracy": accuracy_a,
        "source_only_dev_risk": dev["source_only"],
        "adapted_dev_risk": dev["adapted"],
        "contradiction": contradiction,
        "source_tolerance": source_tolerance,
        "target_tolerance": target_tolerance,
    }


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
        lambda_: the gradient-reversal factor. With `ramp=True` (the
            default) `fit` ramps it from 0 to `lambda_` with Ganin et al.'s
            schedule (a `GradientReversalSchedule` spanning the `fit` call,
            unless `callbacks` has one); with `ramp=False` it stays at
            `lambda_` (`model.gradient_reversal.lambda_`).
        domain_loss_weight: weight of the domain loss. Default 0.1: with
            weight 1 (Ganin et al.'s formulation) DANN lost 1.9 points on
            average over the 12 Amazon pairs on frozen MiniLM features and
            was unstable across seeds; 0.1 was on par with source-only
            (docs/domain_adaptation.md).
        domain_hidden_dim: the hidden size of the default domain head.
        ramp: apply Ganin's ramp inside `fit` when no schedule callback is
            given (see `DomainAdaptationModel.fit`).
        fallback: `fit`'s default for falling back to source-only weights
            when the unsupervised selection rule says adaptation hurts
            (needs `fit(..., source_validation=...)`; see
            `DomainAdaptationModel.fit`).

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
        domain_loss_weight=0.1,
        domain_hidden_dim=256,
        **kwargs,
    ):
        self.max_lambda = _check_weight("lambda_", lambda_)
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

    def _default_schedule(self, total_steps):
        return GradientReversalSchedule(self.max_lambda, total_steps=total_steps)

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
                "lambda_": self.max_lambda,
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

    def _default_schedule(self, total_steps):
        return AlignmentWeightSchedule(total_steps=total_steps)

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
        encoder, task_head, ramp, fallback: as for `DANN` (with `ramp`,
            `fit` ramps the alignment term in with `AlignmentWeightSchedule`).
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
        encoder, task_head, ramp, fallback: as for `DANN` (with `ramp`,
            `fit` ramps the alignment term in with `AlignmentWeightSchedule`).
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
    dann.fit(kt.data.zip_domains(source, target), epochs=epochs, callbacks=[schedule],
             source_validation=source_val)
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
    model.fit(kt.data.zip_domains(source, target), epochs=epochs, callbacks=[schedule],
              source_validation=source_val)
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
