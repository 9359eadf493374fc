"""`zip_domains`: labelled source batches side by side with unlabelled target batches.

Domain adaptation (`kt.adapt.DANN`, `CORAL`, `MMD`) trains on a labelled
*source* domain and an unlabelled *target* domain at once: every training
step sees one source batch (with labels, for the task loss) and one target
batch (texts only, for the domain loss or the alignment loss).

```python
import ktransfer as kt
enc = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean")
source = kt.data.prepare(kt.data.from_lists(["great", "awful"], [1, 0]), enc.preprocessor, batch_size=32, shuffle=True)
target = kt.data.prepare(kt.data.from_lists(["works well", "broke"]), enc.preprocessor, batch_size=32, shuffle=True)
train = kt.data.zip_domains(source, target)  # ({"source": x_s, "target": x_t}, y_s)
```
"""

from ktransfer._keras import keras  # noqa: F401  (sets the backend first)

import tensorflow as tf

SOURCE = "source"
TARGET = "target"


def zip_domains(source, target):
    """Pair each labelled source batch with an unlabelled target batch.

    Args:
        source: batched `tf.data.Dataset` of `(features, labels)` or
            `(features, labels, sample_weights)`, e.g. from
            `kt.data.prepare` on a labelled dataset, or batched cached
            features (`kt.strategies.cache_features(...).batch(32)`).
        target: batched `tf.data.Dataset` of `features` from the target
            domain. Labels, if present, are dropped here: the target labels
            are never used for training.

    Returns:
        A `tf.data.Dataset` of `({"source": x_s, "target": x_t}, y_s)` (plus
        the source sample weights when given), with `class_names` carried
        over from `source`. One pass over it is one pass over `source`: the
        target batches repeat (`target.repeat()`) when the target domain is
        smaller, and a larger target domain is read only as far as the
        source lasts in each epoch (shuffle `target` so each epoch sees
        different target batches). `kt.adapt` models train on it with `fit`.
    """
    source_spec = _check_batched(source, "source")
    target_spec = _check_batched(target, "target")
    if not isinstance(source_spec, tuple) or len(source_spec) not in (2, 3):
        raise ValueError(
            "`source` must yield labelled batches, (features, labels) or (features, "
            "labels, sample_weights), e.g. kt.data.prepare on a dataset with labels. "
            f"Its element_spec is {source_spec}."
        )
    target_has_labels = isinstance(target_spec, tuple)
    if target_has_labels and len(target_spec) not in (2, 3):
        raise ValueError(
            "`target` must yield batches of features (or (features, labels), whose "
            f"labels are dropped). Its element_spec is {target_spec}."
        )

    def arrange(source_element, target_element):
        target_features = target_element[0] if target_has_labels else target_element
        x = {SOURCE: source_element[0], TARGET: target_features}
        return (x,) + tuple(source_element[1:])

    zipped = tf.data.Dataset.zip((source, target.repeat())).map(
        arrange, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    zipped = zipped.prefetch(tf.data.AUTOTUNE)
    zipped.class_names = getattr(source, "class_names", None)
    return zipped


def split_domains(x):
    """`(x_source, x_target)` of a `zip_domains` batch's inputs, or a clear error."""
    if not isinstance(x, dict) or set(x) != {SOURCE, TARGET}:
        raise ValueError(
            "Domain adaptation trains on batches from kt.data.zip_domains(source, "
            "target): inputs {'source': ..., 'target': ...}. Received inputs of type "
            f"{type(x).__name__}"
            + (f" with keys {sorted(x)}" if isinstance(x, dict) else "")
            + ". Evaluate and predict take ordinary (features, labels) batches."
        )
    return x[SOURCE], x[TARGET]


def is_zipped(x):
    """Whether `x` is the inputs of a `zip_domains` batch."""
    return isinstance(x, dict) and set(x) == {SOURCE, TARGET}


def _check_batched(dataset, name):
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"`{name}` must be a batched tf.data.Dataset, e.g. from kt.data.prepare. "
            f"Received: {type(dataset).__name__}"
        )
    spec = dataset.element_spec
    features = spec[0] if isinstance(spec, tuple) else spec
    first = tf.nest.flatten(features)[0]
    if first.shape.rank is not None and first.shape.rank < 2 or first.dtype == tf.string:
        raise ValueError(
            f"`{name}` must yield batches of model inputs (a batch dimension first; "
            "tokenised, not raw strings), e.g. kt.data.prepare(dataset, "
            f"encoder.preprocessor, batch_size=32) or cached features .batch(32). Its "
            f"element_spec is {spec}."
        )
    return spec
