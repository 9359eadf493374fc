"""Optimizers for fine-tuning: a fused AdamW, and layer-wise learning rates.

`FusedAdamW` is `keras.optimizers.AdamW` with each variable's Adam update
done by TensorFlow's fused `ResourceApplyAdam` kernel (the same arithmetic,
see the class docstring) instead of about a dozen elementwise ops that each
write a temporary the size of the variable. Fine-tuning MiniLM on short
texts spends a fifth of its op time in those updates (most of it on the
30522 x 384 word-embedding matrix), so it trains ~15% faster.

Layer-wise (discriminative) learning rates for fine-tuning a BERT encoder:

`layerwise(optimizer, encoder, decay=0.95)` gives transformer block i (1 for
the lowest of L blocks, L for the top) the rate `lr * decay**(L - i)`, the
embeddings (block 0) `lr * decay**L`, and everything else (the head, the
pooler) the full `lr`, as in Sun et al. 2019 ("How to Fine-Tune BERT for
Text Classification") and ULMFiT's discriminative fine-tuning.

Keras 3 optimizers take one learning rate. Scaling each variable's *gradient*
would not do: Adam-type updates are invariant to the gradient's scale. So
`LayerwiseOptimizer` keeps one copy of the given optimizer per distinct rate
(PyTorch's "parameter groups"; `keras.optimizers.MultiOptimizer` does the
same dispatch but takes only a fixed map of optimizers, expects gradients
for every variable it was built with, which breaks gradual unfreezing, and
hides the learning rate from LR callbacks). Each copy computes its update,
AdamW's decoupled weight decay included, with its own scaled rate, and all
of them follow one schedule: the wrapper's (`optimizer.learning_rate`, which
`keras.callbacks.LearningRateScheduler` and friends can set).

Example:

```python
import keras, ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
optimizer = kt.optimizers.layerwise(keras.optimizers.AdamW(5e-5), encoder, decay=0.9)
model.compile(optimizer=optimizer, loss=model.layers[-1].default_loss())
```
"""

import copy
import numbers

from ktransfer._keras import keras

import tensorflow as tf


@keras.saving.register_keras_serializable(package="ktransfer")
class FusedAdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` whose Adam step runs as one fused TF kernel.

    The update is Keras's, term for term: decoupled weight decay first
    (`var -= var * weight_decay * lr`, done by `AdamW.apply` as usual), then
    `m += (g - m)(1 - beta_1)`, `v += (g^2 - v)(1 - beta_2)`,
    `var -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)`,
    computed by `tf.raw_ops.ResourceApplyAdam` in place. Sparse gradients
    (embedding lookups) are made dense first, as Keras's own update does, so
    rows absent from a batch keep moving with their momentum (exact Adam,
    not "lazy" Adam); where a batch looks a row up more than once, the
    summed gradient is squared, as Adam defines (Keras's own update squares
    each lookup's gradient before summing them). `amsgrad=True`, and backends other than TensorFlow,
    use Keras's update unchanged. Works under `tf.distribute` strategies and
    with `keras.mixed_precision` (variables are float32).

    Sparse embedding updates (`sparse_embeddings=True`): every variable
    whose gradient arrives as a `tf.IndexedSlices` (what TensorFlow gives
    for a `tf.gather`, i.e. the lookup of a `keras.layers.Embedding` or of
    KerasHub's `ReversibleEmbedding` / `TokenAndPositionEmbedding` token
    table; Keras 3 passes these on to the optimizer as they are) gets the
    "lazy Adam" update of TF Addons' `LazyAdam` and PyTorch's `SparseAdam`:
    only the rows the batch looked up are read and written. Their `m`, `v`
    and weights follow the formulas above with the batch's gradient (summed
    over repeated ids, then squared); every other row, and its `m` and `v`,
    is left bit for bit as it was. A multilingual 250k-token table is then
    a few hundred rows of work per step instead of 96 million numbers.

    - Weight decay: a touched row is decayed (`row -= row * weight_decay *
      lr`, before its Adam step, as in the dense update); an untouched row
      is not decayed that step. Decaying all rows would write the whole
      table again, which is the cost this option removes; it is the lazy
      convention (decay acts where the data acts), so rare tokens shrink
      less than under dense AdamW. `exclude_from_weight_decay` applies as
      usual.
    - Bias correction uses the optimizer's global step `t`
      (`sqrt(1 - beta_2^t) / (1 - beta_1^t)`), as `LazyAdam` does, not a
      per-row count of updates: the state is Adam's own (`m`, `v` per
      variable), so checkpoints move between the two modes. A row first
      seen at a late step therefore takes a first step of about
      `lr * (1 - beta_1) / sqrt(1 - beta_2)` (3.2 lr with the defaults)
      where dense Adam's first step is `lr`.
    - Variables with dense gradients (everything but lookup tables; the
      position table of a BERT is sliced, so its gradient is dense) get
      the dense update above unchanged. `clipnorm`, `clipvalue` and
      `LossScaleOptimizer` keep gradients sparse; `global_clipnorm` and
      `gradient_accumulation_steps` make them dense (Keras's own code), and
      such a variable then gets the dense update, decay included.
    - With the option off (the default) the update is exactly the dense one
      described above.

    Why not a library: Keras 3 no longer ships fused optimizer kernels, and
    TensorFlow's fused kernel is what `tf.keras` 2 used for Adam.
    TensorFlow has no fused sparse Adam kernel; the lazy update is a gather
    of the touched rows, the arithmetic on them, and three scatters.

    Args:
        sparse_embeddings: `True` for the lazy, touched-rows-only update of
            variables with `tf.IndexedSlices` gradients described above.
            Default `False` (dense, exact AdamW). Not available with
            `amsgrad=True`.
        **kwargs: the arguments of `keras.optimizers.AdamW`.

    Example:

    ```python
    import keras, ktransfer as kt
    optimizer = kt.optimizers.FusedAdamW(learning_rate=5e-5, weight_decay=0.004)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    ```

    Sparse embedding updates, for a large vocabulary:

    ```python
    import keras, numpy as np, ktransfer as kt
    model = keras.Sequential([keras.Input((3,), dtype="int32"),
                              keras.layers.Embedding(1000, 4),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
    model.compile(optimizer=kt.optimizers.FusedAdamW(1e-2, sparse_embeddings=True), loss="mse")
    table = np.array(model.layers[0].embeddings)
    model.fit(np.array([[1, 2, 3]]), np.ones((1, 1)), verbose=0)
    changed = np.flatnonzero(np.any(np.array(model.layers[0].embeddings) != table, axis=1))
    assert changed.tolist() == [1, 2, 3]  # the other 997 rows were not touched
    ```
    """

    def __init__(self, *args, sparse_embeddings=False, **kwargs):
        if not isinstance(sparse_embeddings, bool):
            raise TypeError(
                "`sparse_embeddings` must be True (update only the embedding rows a "
                "batch looks up) or False (dense AdamW). Received: "
                f"{sparse_embeddings!r}"
            )
        super().__init__(*args, **kwargs)
        if sparse_embeddings and self.amsgrad:
            raise ValueError(
                "FusedAdamW(sparse_embeddings=True) does not support `amsgrad=True`: "
                "use one or the other (amsgrad runs Keras's dense update)."
            )
        self.sparse_embeddings = sparse_embeddings
        # Set per step by `_backend_apply_gradients`: the variables with sparse
        # gradients, and those of them that weight decay applies to.
        self._sparse_indices = self._sparse_decayed = frozenset()

    def get_config(self):
        config = super().get_config()
        config["sparse_embeddings"] = self.sparse_embeddings
        return config

    def _fused(self):
        return not self.amsgrad and keras.backend.backend() == "tensorflow"

    def _apply_weight_decay(self, variables):
        """`var -= var * (weight_decay * lr)`: Keras's decay, one full-size product.

        Keras computes `variable * wd * lr` per variable: two products the size
        of the variable, and the learning-rate schedule evaluated once per
        variable. Here the scalar `weight_decay * lr` is computed once per
        step (the same value up to float rounding of the scalar).
        """
        if self.weight_decay is None or not self._fused():
            return super()._apply_weight_decay(variables)
        decay = tf.cast(self.learning_rate, tf.float32) * tf.cast(self.weight_decay, tf.float32)

        def distributed_apply_weight_decay(distribution, variables):
            def weight_decay_fn(variable):
                if self._use_weight_decay(variable):
                    variable.assign_sub(variable * tf.cast(decay, variable.dtype))

            sparse = self._sparse_indices
            for variable in variables:
                if sparse and self._get_variable_index(variable) in sparse:
                    continue  # decayed row by row in `update_step` (sparse_embeddings)
                if isinstance(variable, keras.Variable):
                    variable = variable.value
                distribution.extended.update(variable, weight_decay_fn, group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            distributed_apply_weight_decay, self._distribution_strategy, variables
        )

    def _adam_scalars(self, learning_rate):
        """The scalar arguments of `ResourceApplyAdam` for this step, in float32."""
        step = tf.cast(self.iterations + 1, tf.float32)
        beta_1 = tf.cast(self.beta_1, tf.float32)
        beta_2 = tf.cast(self.beta_2, tf.float32)
        return {
            "beta1_power": tf.pow(beta_1, step),
            "beta2_power": tf.pow(beta_2, step),
            "lr": tf.cast(learning_rate, tf.float32),
            "beta1": beta_1,
            "beta2": beta_2,
            "epsilon": tf.cast(self.epsilon, tf.float32),
        }

    def _backend_apply_gradients(self, grads, trainable_variables):
        # sparse_embeddings: the variables whose gradient is a tf.IndexedSlices
        # skip the full-table weight decay; `update_step` decays their rows.
        # A trace-time (Python) set, the same for every replica.
        if self.sparse_embeddings and self._fused():
            sparse = [
                variable
                for grad, variable in zip(grads, trainable_variables)
                if isinstance(grad, tf.IndexedSlices)
            ]
            self._sparse_indices = frozenset(self._get_variable_index(v) for v in sparse)
            # Decided here, on the Keras variables (`update_step` sees per-replica copies).
            self._sparse_decayed = frozenset(
                self._get_variable_index(v)
                for v in sparse
                if self.weight_decay is not None and self._use_weight_decay(v)
            )
        try:
            return super()._backend_apply_gradients(grads, trainable_variables)
        finally:
            self._sparse_indices = self._sparse_decayed = frozenset()

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        # The step's scalars (bias corrections, betas, epsilon), computed once
        # for all variables rather than once per variable. This runs once per
        # step, in the cross-replica context under a strategy.
        if self._fused():
            self._step_scalars = self._adam_scalars(learning_rate)
        try:
            super()._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)
        finally:
            self._step_scalars = None

    def update_step(self, gradient, variable, learning_rate):
        if not self._fused():
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        scalars = getattr(self, "_step_scalars", None)
        if scalars is None:  # called directly, outside apply_gradients
            scalars = self._adam_scalars(learning_rate)
        decay = None  # sparse_embeddings: this variable skipped the dense decay
        if index in self._sparse_decayed:
            decay = tf.cast(scalars["lr"] * tf.cast(self.weight_decay, tf.float32), dtype)
        if isinstance(gradient, tf.IndexedSlices):
            if self.sparse_embeddings:
                return self._lazy_update(gradient, variable, index, scalars, decay)
            gradient = tf.convert_to_tensor(gradient)
        elif decay is not None:  # made dense after the decay was skipped: decay it all
            handle = _handle(variable)
            value = tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype)
            tf.raw_ops.AssignSubVariableOp(resource=handle, value=value * decay)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            grad=tf.cast(gradient, dtype),
            **{name: tf.cast(value, dtype) for name, value in scalars.items()},
        )

    def _lazy_update(self, gradient, variable, index, scalars, decay):
        """Adam(W) on the rows of `gradient` only; the arithmetic of `ResourceApplyAdam`."""
        dtype = variable.dtype
        rows, position = tf.unique(gradient.indices)
        grad = tf.math.unsorted_segment_sum(
            tf.cast(gradient.values, dtype), position, tf.shape(rows)[0]
        )
        handles = (
            _handle(variable),
            _handle(self._momentums[index]),
            _handle(self._velocities[index]),
        )
        w, m, v = (
            tf.raw_ops.ResourceGather(resource=handle, indices=rows, dtype=dtype)
            for handle in handles
        )
        s = {name: tf.cast(value, dtype) for name, value in scalars.items()}
        if decay is not None:
            w = w - w * decay
        m = m + (grad - m) * (1 - s["beta1"])
        v = v + (tf.square(grad) - v) * (1 - s["beta2"])
        lr_t = s["lr"] * tf.sqrt(1 - s["beta2_power"]) / (1 - s["beta1_power"])
        w = w - m * lr_t / (tf.sqrt(v) + s["epsilon"])
        for handle, value in zip(handles, (w, m, v)):
            tf.raw_ops.ResourceScatterUpdate(resource=handle, indices=rows, updates=value)


def _handle(variable):
    """The resource handle of a Keras or TF variable (the local copy under a strategy)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


def layerwise(optimizer, encoder, decay=0.95):
    """Wrap `optimizer` so the encoder's lower blocks learn more slowly.

    Args:
        optimizer: a Keras optimizer, not yet built (e.g.
            `keras.optimizers.AdamW(5e-5)`, its learning rate a float or a
            schedule). Create it inside `strategy.scope()` when training
            under a `tf.distribute` strategy, as any Keras optimizer.
        encoder: the `BertEncoder` (or any ktransfer encoder, or a KerasHub
            `BertBackbone`) whose `layer_groups()` get decayed rates.
        decay: the factor between consecutive blocks, in (0, 1]. 1 means
            one rate for everything.

    Returns:
        A `LayerwiseOptimizer`: pass it to `model.compile`.
    """
    groups = _layer_groups(encoder)
    if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0 < decay <= 1:
        raise ValueError(
            "`decay` must be a number in (0, 1]: block i of L gets "
            f"lr * decay**(L - i). Received: {decay!r}"
        )
    # groups: [embeddings, block 1, ..., block L, pooler]; the pooler (like the
    # head) keeps the full rate, group i of the rest gets decay**(L - i).
    num_blocks = len(groups) - 2
    multipliers = [
        (layer.path + "/", float(decay) ** (num_blocks - i))
        for i, group in enumerate(groups[:-1])
        for layer in group
        if layer.path is not None  # None: a weightless layer Keras never built (an Add)
    ]
    return LayerwiseOptimizer(optimizer, multipliers)


def _layer_groups(encoder):
    """`[embeddings, block 1, ..., block L, pooler]` of an encoder or a KerasHub BertBackbone."""
    import keras_hub

    from ktransfer.encoders import keras_hub_adapter

    if isinstance(encoder, keras_hub.models.BertBackbone):
        return keras_hub_adapter.backbone_layer_groups(encoder)
    if isinstance(encoder, keras.layers.Layer) and callable(getattr(encoder, "layer_groups", None)):
        return encoder.layer_groups()
    raise TypeError(
        "`encoder` must be a ktransfer encoder (e.g. BertEncoder; anything with "
        "`layer_groups()`) or a keras_hub BertBackbone (the model whose blocks get "
        f"decayed rates). Received: {type(encoder).__name__}"
    )


@keras.saving.register_keras_serializable(package="ktransfer")
class LayerwiseOptimizer(keras.optimizers.Optimizer):
    """An optimizer whose learning rate is multiplied per variable.

    Variables whose path starts with one of the `multipliers` prefixes get
    that multiple of the learning rate; all others (e.g. a head) the full
    rate. Internally one copy of `optimizer` runs per distinct multiplier,
    so the update (momentum, Adam moments, AdamW weight decay, EMA) is
    exactly that of `optimizer` with the scaled rate. The copies share the
    wrapper's learning rate and step count: a schedule advances once per
    step for everyone, even for groups frozen by gradual unfreezing.

    `global_clipnorm` and `loss_scale_factor` of `optimizer` act on all
    gradients together, before they are split into groups.

    Most users call `ktransfer.optimizers.layerwise` rather than this.

    Args:
        optimizer: the Keras optimizer to copy per group (not yet built).
        multipliers: a list of `(path_prefix, multiplier)` pairs, e.g.
            `[("transformer_layer_0/", 0.9), ...]`; the first matching
            prefix wins.
        name: the optimizer's name.

    Example:

    ```python
    optimizer = kt.optimizers.LayerwiseOptimizer(
        keras.optimizers.SGD(0.1), [("transformer_layer_0/", 0.5)]
    )
    ```
    """

    def __init__(self, optimizer, multipliers, name=None, **kwargs):
        if kwargs:
            raise TypeError(
                f"LayerwiseOptimizer got unexpected arguments {sorted(kwargs)}: set "
                "them on the optimizer it wraps."
            )
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "`optimizer` must be a Keras optimizer such as "
                f"keras.optimizers.AdamW(5e-5). Received: {type(optimizer).__name__}"
            )
        if isinstance(
            optimizer,
            (
                LayerwiseOptimizer,
                keras.optimizers.LossScaleOptimizer,
                keras.optimizers.MultiOptimizer,
            ),
        ):
            raise TypeError(
                f"`optimizer` must be a plain Keras optimizer, not a {type(optimizer).__name__}. "
                "For mixed precision, wrap the other way round: "
                "LossScaleOptimizer(layerwise(AdamW(...), encoder))."
            )
        if optimizer.built:
            raise ValueError(
                "`optimizer` is already built for a set of variables; pass a fresh "
                "optimizer (e.g. keras.optimizers.AdamW(5e-5))."
            )
        multipliers = _check_multipliers(multipliers)
        config = optimizer.get_config()
        if config.get("gradient_accumulation_steps") and config.get("global_clipnorm"):
            raise ValueError(
                "LayerwiseOptimizer cannot combine `gradient_accumulation_steps` with "
                "`global_clipnorm` (it would clip each micro-batch); use `clipnorm`."
            )
        learning_rate = config["learning_rate"]
        if isinstance(learning_rate, dict):
            learning_rate = keras.saving.deserialize_keras_object(learning_rate)
        super().__init__(
            learning_rate=learning_rate,
            global_clipnorm=config.get("global_clipnorm"),
            loss_scale_factor=config.get("loss_scale_factor"),
            name=name or f"layerwise_{optimizer.name}",
        )
        self._wrapped_config = keras.saving.serialize_keras_object(optimizer)
        self.multipliers = multipliers
        values = sorted({m for _, m in multipliers} | {1.0}, reverse=True)
        self._group_multipliers = values
        group_config = dict(config, global_clipnorm=None, loss_scale_factor=None)
        self._groups = []
        for index, multiplier in enumerate(values):
            group = type(optimizer).from_config(
                dict(
                    group_config,
                    learning_rate=self._scaled_learning_rate(multiplier),
                    name=f"{self.name}_group{index}",
                )
            )
            # Keras does not serialise `exclude_from_weight_decay`; carry it over.
            for attribute in ("_exclude_from_weight_decay", "_exclude_from_weight_decay_pattern"):
                if hasattr(optimizer, attribute):
                    setattr(group, attribute, copy.copy(getattr(optimizer, attribute)))
            self._groups.append(group)

    def _scaled_learning_rate(self, multiplier):
        def learning_rate():
            return self._get_current_learning_rate() * multiplier

        return learning_rate

    # --- which variable goes where ------------------------------------------
    def learning_rate_multiplier(self, variable):
        """The multiple of the learning rate that `variable` gets."""
        path = getattr(variable, "path", None) or variable.name
        for prefix, multiplier in self.multipliers:
            if path.startswith(prefix):
                return multiplier
        return 1.0

    def build(self, var_list):
        if self.built:
            return
        var_list = list(var_list)
        self._group_of = {}
        members = [[] for _ in self._groups]
        for variable in var_list:
            index = self._group_multipliers.index(self.learning_rate_multiplier(variable))
            self._group_of[self._var_key(variable)] = index
            members[index].append(variable)
        for group, variables in zip(self._groups, members):
            group.build(variables)
        super().build(var_list)

    @property
    def groups(self):
        """`(multiplier, optimizer)` pairs, one per distinct rate."""
        return list(zip(self._group_multipliers, self._groups))

    @property
    def variables(self):
        variables = self._variables[:]
        for group in self._groups:
            variables.extend(group.variables)
        return variables

    # --- updates ---------------------------------------------------------------
    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer must "
                    "already be built: call `optimizer.build(trainable_variables)` first."
                )
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
        # A subset is fine (gradual unfreezing), unknown variables are not.
        self._check_variables_are_known(trainable_variables)
        with keras.name_scope(self.name, caller=self):
            grads, trainable_variables = self._filter_empty_gradients(grads, trainable_variables)
            if self.loss_scale_factor is not None:
                grads = [g / self.loss_scale_factor for g in grads]
            if self.global_clipnorm:
                grads = self._clip_gradients(grads)  # Keras' own global-norm clip
            split = [([], []) for _ in self._groups]
            for grad, variable in zip(grads, trainable_variables):
                group_grads, group_variables = split[self._group_of[self._var_key(variable)]]
                group_grads.append(grad)
                group_variables.append(variable)
            for group, (group_grads, group_variables) in zip(self._groups, split):
                if group_variables:
                    group.apply(group_grads, group_variables)
        self._iterations.assign_add(1)

    def finalize_variable_values(self, var_list):
        split = [[] for _ in self._groups]
        for variable in var_list:
            index = self._group_of.get(self._var_key(variable))
            if index is not None:
                split[index].append(variable)
        for group, variables in zip(self._groups, split):
            if variables:
                group.finalize_variable_values(variables)

    def set_weights(self, weights):
        if not self.built:
            raise ValueError("Build the optimizer before `set_weights()`.")
        variables = self.variables
        if len(weights) != len(variables):
            raise ValueError(
                f"`set_weights` got {len(weights)} arrays for {len(variables)} "
                "optimizer variables."
            )
        for variable, weight in zip(variables, weights):
            variable.assign(weight)

    # --- serialisation ----------------------------------------------------------
    def get_config(self):
        wrapped = copy.deepcopy(self._wrapped_config)
        if isinstance(self._learning_rate, keras.Variable):
            # Keep a rate set by a callback (ReduceLROnPlateau, ...).
            wrapped["config"]["learning_rate"] = float(
                keras.ops.convert_to_numpy(self._learning_rate)
            )
        return {
            "optimizer": wrapped,
            "multipliers": [[prefix, multiplier] for prefix, multiplier in self.multipliers],
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["optimizer"] = keras.saving.deserialize_keras_object(
            config["optimizer"], custom_objects=custom_objects
        )
        return cls(**config)


def _check_multipliers(multipliers):
    checked = []
    for item in multipliers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(
                "`multipliers` must be a list of (path_prefix, multiplier) pairs. "
                f"Received the item {item!r}."
            )
        prefix, multiplier = item
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"A path prefix must be a non-empty string. Received: {prefix!r}")
        if (
            isinstance(multiplier, bool)
            or not isinstance(multiplier, numbers.Real)
            or multiplier <= 0
        ):
            raise ValueError(
                f"The multiplier for {prefix!r} must be a positive number. Received: {multiplier!r}"
            )
        checked.append((prefix, float(multiplier)))
    return checked
