"""`prepare`: tokenise, shuffle, bucket by length, batch and prefetch.

Tokenisation runs in the tf.data pipeline on the host (parallel `map` over
batches of texts, which is much faster than one text at a time), so the model
itself only sees integer tensors: the same model trains on CPU, GPU and TPU.

Padding dominates the cost of fine-tuning on short texts (SST-2 sentences
average ~15 WordPiece tokens against a `sequence_length` of 128), so by
default each batch is cut to the smallest *bucket boundary* that holds its
longest text, and when shuffling, texts of similar length are grouped into
the same batches (sorted within windows of shuffled examples, as the
"sortish" samplers of fairseq and Hugging Face do). Fixed boundaries keep
the number of distinct shapes bounded (one trace per shape): every 2 tokens
up to 64 on a CPU, every 8 where a GPU or TPU compiles each shape with XLA
(see `bucket_boundaries`). `bucket=False` pads every batch to
`sequence_length`: fully static shapes, as TPUs want.
"""

import warnings

from ktransfer._keras import keras  # noqa: F401  (sets the backend first)

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


# Boundaries above 64 tokens, where texts are rarer and padding costs less.
LONG_BOUNDARIES = (80, 96, 128, 192, 256, 384, 512, 768, 1024)
# Spacing of the boundaries up to 64 tokens: fine where every batch shape
# runs as it comes (a CPU), coarse where each shape is one XLA compilation.
FINE_BUCKET_STEP = 2
COARSE_BUCKET_STEP = 8


def default_bucket_step():
    """The `step` of `bucket_boundaries` when none is given: 8 with an accelerator, else 2.

    Finer steps pad less: on SST-2 with MiniLM, steps of 2 pad a batch to
    14.9 tokens per text against 17.7 with steps of 8 (13.4 real), and a
    `model.fit` epoch over 4,000 sentences took 11% less CPU time on a
    2-core CPU (96 against 107 CPU seconds, median of 3 alternating
    epochs; benchmarks/finetune.py --bucket-step compares them). But each
    distinct batch shape is one XLA compilation, and Keras compiles the
    train step with XLA wherever a GPU or TPU is visible
    (`jit_compile="auto"`), so there the coarser steps of 8 (about a third
    as many shapes) are the default. Decided from the devices TensorFlow
    sees and the distribution strategy in scope, when the dataset is
    prepared.
    """
    # Physical devices: listing them does not initialise the TensorFlow
    # runtime, so device configuration can still follow.
    compiles_each_shape = (
        "TPUStrategy" in type(tf.distribute.get_strategy()).__name__
        or tf.config.list_physical_devices("GPU")
        or tf.config.list_physical_devices("TPU")
    )
    return COARSE_BUCKET_STEP if compiles_each_shape else FINE_BUCKET_STEP


def bucket_boundaries(sequence_length, step=None):
    """Length boundaries for `sequence_length`: every `step` tokens up to 64, then 80, 96, 128, ...

    Fine steps where most short texts fall, wider steps above, where texts
    are rarer and padding costs less.

    Args:
        sequence_length: the padded length, always the last boundary.
        step: spacing of the boundaries up to 64 tokens, an int from 1 to
            64. None (default) picks `default_bucket_step()`: 2 on a
            CPU-only machine, 8 where a GPU or TPU is visible (one XLA
            compilation per shape).

    Example:

    ```python
    import ktransfer as kt
    kt.data.bucket_boundaries(128, step=8)  # [8, 16, ..., 64, 80, 96, 128]
    kt.data.bucket_boundaries(32, step=4)  # [4, 8, ..., 28, 32]
    ```
    """
    if step is None:
        step = default_bucket_step()
    if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= 64:
        raise ValueError(f"`step` must be an int from 1 to 64. Received: {step!r}")
    candidates = sorted(set(range(step, 65, step)) | {64} | set(LONG_BOUNDARIES))
    boundaries = [b for b in candidates if b < sequence_length]
    return boundaries + [sequence_length]


def _is_text(spec):
    """True for a string spec or a (text_a, text_b) pair of string specs."""
    if isinstance(spec, tf.TensorSpec):
        return spec.dtype == tf.string and spec.shape.rank == 0
    if isinstance(spec, tuple) and len(spec) == 2:
        return all(isinstance(s, tf.TensorSpec) and s.dtype == tf.string for s in spec)
    return False


def _check_dataset(dataset):
    """Validate `dataset`; return whether it carries labels."""
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            "`dataset` must be a tf.data.Dataset of texts or (text, label) pairs, "
            "e.g. from `ktransfer.data.from_tsv` or `from_lists`. Received: "
            f"{type(dataset).__name__}"
        )
    spec = dataset.element_spec
    if _is_text(spec):
        return False
    if isinstance(spec, tuple) and len(spec) == 2 and _is_text(spec[0]):
        return True
    raise ValueError(
        "`dataset` must yield unbatched texts (scalar tf.string), text pairs, "
        f"or (text, label) tuples. Its element_spec is {spec}. If it is already "
        "batched, call `.unbatch()` first."
    )


def prepare(
    dataset,
    preprocessor,
    batch_size=32,
    shuffle=False,
    seed=None,
    shuffle_buffer=10_000,
    cache=False,
    bucket=True,
    drop_remainder=False,
    num_classes=None,
    tokenize_batch_size=256,
    window_batches=32,
    shard=None,
):
    """Turn a dataset of raw texts into batches of model inputs.

    Args:
        dataset: unbatched `tf.data.Dataset` of `text`, `(text_a, text_b)`,
            or `(text, label)` elements (see `ktransfer.data.from_*`).
        preprocessor: a callable mapping a batch of strings to model inputs,
            usually `encoder.preprocessor`.
        batch_size: examples per batch.
        shuffle: shuffle every epoch (and group texts of similar length).
        seed: shuffle seed, for reproducible runs.
        shuffle_buffer: size of the shuffle buffer.
        cache: keep the tokenised examples in memory after the first epoch
            (or pass a file name to cache on disk).
        bucket: trim each batch to a length bucket instead of padding to
            `sequence_length` (faster; see the module docstring). True uses
            `bucket_boundaries(sequence_length)` (steps of 2 tokens on a CPU,
            8 with an accelerator); a list gives your own, e.g.
            `bucket_boundaries(sequence_length, step=8)`.
        drop_remainder: drop the last short batch (static batch size, for
            TPUs and exact multi-worker steps).
        num_classes: when given, every label is checked to lie in
            `[0, num_classes)`; a bad label stops training with a clear error.
            Defaults to `len(dataset.class_names)` when the dataset has them.
        tokenize_batch_size: how many texts are tokenised per `map` call.
        window_batches: with `shuffle` and `bucket`, how many batches' worth
            of examples are sorted by length together.
        shard: how a multi-worker strategy splits the batches between
            workers. None leaves tf.data's default (`AutoShardPolicy.AUTO`,
            which falls back to DATA for in-memory data with a warning);
            `"data"` sets `AutoShardPolicy.DATA` (every worker runs the
            pipeline and keeps its own slice of each global batch, so no
            example is seen twice per epoch; needs a `seed` when shuffling,
            so all workers shuffle alike); `"off"` gives every worker all
            the data.

    Returns:
        A batched, prefetched `tf.data.Dataset` of `features` or
        `(features, label)`, with `class_names` carried over.

    Example:

    ```python
    import ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=64)
    train = kt.data.from_lists(["a great film", "a dull film"], [1, 0])
    batches = kt.data.prepare(train, encoder.preprocessor, batch_size=2)
    features, labels = next(iter(batches))
    ```
    """
    has_labels = _check_dataset(dataset)
    shard_policy = _shard_policy(shard, shuffle, seed)
    if not callable(preprocessor):
        raise TypeError("`preprocessor` must be callable, e.g. `encoder.preprocessor`.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    if int(dataset.cardinality()) == 0:
        raise ValueError(
            "The dataset is empty: there is nothing to train or evaluate on. Check "
            "the file and the column names passed to `ktransfer.data.from_*`."
        )
    class_names = getattr(dataset, "class_names", None)
    if num_classes is None and class_names:
        num_classes = len(class_names)
    sequence_length = getattr(preprocessor, "sequence_length", None)

    if has_labels and num_classes is not None:
        dataset = dataset.map(_label_checker(num_classes))

    def tokenize(*element):
        if has_labels:
            text, label = element
            return _call_preprocessor(preprocessor, text), label
        text = element[0] if len(element) == 1 else tuple(element)
        return _call_preprocessor(preprocessor, text)

    num_examples = int(dataset.cardinality())
    dataset = dataset.batch(tokenize_batch_size)
    dataset = dataset.map(tokenize, num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = dataset.unbatch()
    if bucket and sequence_length is None:
        warnings.warn(
            "The preprocessor has no `sequence_length`; batches are not bucketed.",
            stacklevel=2,
        )
    boundaries = None
    if bucket and sequence_length is not None:
        boundaries = (
            bucket_boundaries(sequence_length)
            if bucket is True
            else _check_boundaries(bucket, sequence_length)
        )
    dataset = batch_examples(
        dataset,
        num_examples,
        batch_size,
        boundaries=boundaries,
        shuffle=shuffle,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        cache=cache,
        drop_remainder=drop_remainder,
        window_batches=window_batches,
    )
    dataset = dataset.prefetch(AUTOTUNE)
    if shard_policy is not None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = shard_policy
        dataset = dataset.with_options(options)
    dataset.class_names = class_names
    return dataset


SHARD_POLICIES = {
    "data": tf.data.experimental.AutoShardPolicy.DATA,
    "off": tf.data.experimental.AutoShardPolicy.OFF,
}


def _shard_policy(shard, shuffle, seed):
    if shard is None:
        return None
    if shard not in SHARD_POLICIES:
        raise ValueError(
            f"`shard` must be None, 'data' or 'off'. Received: {shard!r}"
        )
    if shard == "data" and shuffle and seed is None:
        raise ValueError(
            "shard='data' with shuffle=True needs a `seed`: every worker runs the "
            "whole pipeline and keeps its slice of each batch, so all workers must "
            "shuffle in the same order. Pass seed=<int>."
        )
    return SHARD_POLICIES[shard]


def batch_examples(
    dataset,
    num_examples,
    batch_size,
    boundaries=None,
    shuffle=False,
    seed=None,
    shuffle_buffer=10_000,
    cache=False,
    drop_remainder=False,
    window_batches=32,
    after_trim=None,
):
    """Cache, shuffle, length-group, batch and trim tokenised examples.

    The shared back half of `prepare` and `prepare_tokens`: `dataset` holds
    unbatched examples whose first element is the features dict (with a
    `padding_mask`); `num_examples` restores the count that `unbatch` forgot
    (Keras uses it for epochs; pass -1 if unknown). With `boundaries`, each
    batch is cut to the smallest boundary that holds its longest example
    and, when shuffling, examples of similar length are batched together;
    `after_trim` (a map function) then fixes up the rest of the element,
    e.g. per-token targets.
    """
    if num_examples > 0:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_examples))
    if cache:
        dataset = dataset.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if boundaries is not None and shuffle:
        # Group texts of similar length: sort each window of `batch_size *
        # window_batches` shuffled examples by length, cut it into batches and
        # shuffle the batches. Unlike `group_by_window`, every batch but the
        # last is full, so the number of batches per epoch is fixed and known.
        window = batch_size * window_batches
        dataset = dataset.batch(window).map(_sort_by_length, num_parallel_calls=AUTOTUNE)
        dataset = dataset.unbatch()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if num_examples > 0:
        batches = num_examples // batch_size
        if not drop_remainder and num_examples % batch_size:
            batches += 1
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    if boundaries is not None:
        boundaries = tf.constant(boundaries, tf.int32)
        dataset = dataset.map(_trimmer(boundaries), num_parallel_calls=AUTOTUNE)
        if after_trim is not None:
            dataset = dataset.map(after_trim, num_parallel_calls=AUTOTUNE)
        if shuffle:
            dataset = dataset.shuffle(window_batches, seed=seed)
    return dataset


def _check_boundaries(boundaries, sequence_length):
    boundaries = sorted(int(b) for b in boundaries)
    if not boundaries or boundaries[0] < 1 or len(set(boundaries)) != len(boundaries):
        raise ValueError(
            "`bucket` must be True, False, or increasing positive lengths such as "
            f"[16, 32, 64]. Received: {boundaries}"
        )
    return [b for b in boundaries if b < sequence_length] + [sequence_length]


def _sort_by_length(*element):
    order = tf.argsort(token_lengths(element[0]), stable=True)
    return tf.nest.map_structure(lambda t: tf.gather(t, order), element)


def _call_preprocessor(preprocessor, text):
    if isinstance(text, (tuple, list)):
        # A text pair. KerasHub preprocessors read a positional tuple as
        # (x, y); passing it as `x` keeps both texts as segments.
        features = preprocessor(x=tuple(text))
    else:
        features = preprocessor(text)
    if isinstance(features, dict) and "padding_mask" in features:
        # int32 like the backbone's inputs: under MirroredStrategy a boolean
        # input tensor fails to aggregate (AddN has no bool kernel).
        features = dict(features, padding_mask=tf.cast(features["padding_mask"], tf.int32))
    return features


def token_lengths(features):
    """int32 `[batch]`: the real (unpadded) tokens of each text in a padded batch."""
    return tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), axis=-1)


def trim_to_bucket(features, boundaries):
    """Cut padded `features` to the smallest boundary that holds the longest text.

    `boundaries` is an int32 tensor of increasing widths (the last one the
    padded length). Rank-2 features (`token_ids`, `padding_mask`, ...) are
    sliced; others pass through. An empty batch gets the smallest width.
    """
    lengths = token_lengths(features)
    longest = tf.reduce_max(tf.concat([lengths, [1]], 0))
    index = tf.minimum(
        tf.searchsorted(boundaries, tf.reshape(longest, [1]))[0],
        tf.size(boundaries) - 1,
    )
    width = boundaries[index]
    return {
        key: value[:, :width] if value.shape.rank == 2 else value
        for key, value in features.items()
    }


def _trimmer(boundaries):
    def trim(*element):
        trimmed = trim_to_bucket(element[0], boundaries)
        return (trimmed,) + tuple(element[1:]) if len(element) > 1 else trimmed

    return trim


def _label_checker(num_classes):
    def check(text, label):
        if label.dtype.is_floating:  # multi-hot vectors: check the width instead
            tf.debugging.assert_equal(
                tf.shape(label)[-1],
                num_classes,
                message=f"multi-hot label width differs from num_classes={num_classes}",
            )
            return text, label
        tf.debugging.assert_non_negative(
            label, message="label out of range: labels must be >= 0"
        )
        tf.debugging.assert_less(
            tf.cast(label, tf.int64),
            tf.constant(num_classes, tf.int64),
            message=(
                f"label out of range: labels must be < num_classes={num_classes}; "
                "fix the data or pass the right num_classes / class_names"
            ),
        )
        return text, label

    return check


def class_ids(dataset, labels, message):
    """`dataset` of `(x, y, *w)` with `y` as int32 class ids, checked in the graph.

    String labels become their index in `labels` (an unknown one, -1); every
    id must then lie in `[0, len(labels))`, or the step fails with `message`.
    The tasks map their labelled datasets through it (`TextClassifier`,
    `ZeroShotClassifier`), each with its own message.
    """
    size = len(labels)
    if dataset.element_spec[1].dtype == tf.string:
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(labels)), tf.range(size, dtype=tf.int32)
            ),
            default_value=-1,
        )
        dataset = dataset.map(lambda x, y, *w: (x, table.lookup(y)) + tuple(w))

    def check(x, y, *w):
        y = tf.cast(y, tf.int32)
        with tf.control_dependencies([
            tf.debugging.assert_non_negative(y, message=message),
            tf.debugging.assert_less(y, tf.constant(size, tf.int32), message=message),
        ]):
            y = tf.identity(y)
        return (x, y) + tuple(w)

    return dataset.map(check)


def trim_to_longest(features, sequence_length, step=COARSE_BUCKET_STEP):
    """Cut a padded feature dict to the length bucket of its longest text.

    The served graphs (`kt.export`, tasks' `export`) and few-shot encoding
    call this on every batch: buckets every `step` tokens up to 64, then
    wider (`bucket_boundaries`), fixed at `COARSE_BUCKET_STEP` by default so
    an export answers alike wherever it was made. Features without a
    `padding_mask`, or a `sequence_length` of None, are returned as they are.

    Example:

    ```python
    import tensorflow as tf
    from ktransfer.data.pipeline import trim_to_longest
    features = {"token_ids": tf.zeros([2, 64], tf.int32),
                "padding_mask": tf.sequence_mask([3, 5], 64)}
    trim_to_longest(features, 64)["token_ids"].shape  # (2, 8)
    ```
    """
    if sequence_length is None or "padding_mask" not in features:
        return features
    boundaries = tf.constant(bucket_boundaries(sequence_length, step), tf.int32)
    return trim_to_bucket(features, boundaries)
