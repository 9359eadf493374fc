"""Feature extraction that runs the encoder once (`cache_features`), and `attach_head`.

With a frozen encoder, every epoch of `fit` on raw texts recomputes the same
encoder outputs: nearly all of the time goes into a forward pass whose
result never changes. `cache_features` runs the encoder once, writes its
outputs to disk, and hands back a `tf.data.Dataset` that reads them; a head
then trains for many epochs at the cost of a few dense layers per epoch.
`attach_head` puts the encoder back in front of the trained head for
prediction and raw-string export.

```python
import keras, ktransfer as kt
encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling="mean", trainable=False)
train = kt.data.from_tsv("train.tsv", text="sentence", label="label")
features = kt.strategies.cache_features(encoder, train)   # one encoder pass, on disk
head = kt.heads.ClassificationHead(2)
probe = keras.Sequential([keras.Input((encoder.output_dim,)), head])
probe.compile(optimizer=keras.optimizers.Adam(1e-3), loss=head.default_loss())
probe.fit(features.shuffle(10_000, seed=0).batch(32), epochs=20)
model = kt.strategies.attach_head(encoder, head)          # raw strings -> labels
kt.export.save(model, "saved_models/sst2_probe/1", labels=train.class_names)
```

The cache is a folder of `.npy` shards (readable with `numpy.load`) and a
`manifest.json`, under `cache_dir/<key>`, where the key hashes the encoder
(class, configuration, every weight) and the tokenised examples (as a
multiset: a reshuffled copy of the same data finds the same cache). A later
run, in any process, with the same encoder and data reads the cache instead
of running the encoder. A cache is written into a temporary folder and
renamed into place when complete (`ktransfer.utils.cache`, shared with
`kt.distill.soft_targets`).

`merge_lora` lives in `ktransfer.methods.lora`; it is importable from here
too, its old home.
"""

import hashlib
import logging
import os
import sys
import time

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.methods.lora import merge_lora  # noqa: F401  (its old home; kt.strategies.merge_lora)
from ktransfer.utils import cache
from ktransfer.utils.cache import MANIFEST  # noqa: F401  (the file that marks a complete cache)
from ktransfer.utils.cache import weights_digest  # noqa: F401  (public here too, as before)

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1


# --------------------------------------------------------------------------
# cache_features
# --------------------------------------------------------------------------


def cache_features(
    encoder,
    dataset,
    cache_dir=None,
    batch_size=64,
    shard_size=8192,
    dtype="float32",
    verbose="auto",
):
    """Run `encoder` once over `dataset`; return its features, read from disk.

    Args:
        encoder: a `BertEncoder`. Its outputs are computed in inference mode
            (no dropout). `pooling="cls"|"mean"|"pooled"` caches one vector
            per text; `pooling=None` caches per-token outputs.
        dataset: either raw texts, an unbatched `tf.data.Dataset` of `text`
            or `(text, label)` (from `kt.data.from_*`), tokenised here with
            `encoder.preprocessor`; or already tokenised batches of
            `features` or `(features, label)`, e.g. from `kt.data.prepare`.
        cache_dir: where caches live; default `$KTRANSFER_HOME/features`.
        batch_size: texts per encoder call when `dataset` holds raw texts.
        shard_size: examples per `.npy` shard.
        dtype: `"float32"` or `"float16"` (half the disk and memory).
        verbose: progress of the encoding pass (examples done / total, rate,
            ETA) as a `keras.utils.Progbar` on stdout: 1 a live bar, 2 one
            line when done, 0 silent; `"auto"` is 1 on a terminal or in a
            notebook and 2 otherwise (logs). Nothing is shown on a cache hit.

    Returns:
        An unbatched `tf.data.Dataset` of `(features, label)` (or `features`
        when the data has no labels), in the order the examples were first
        cached. `features` is a `[hidden]` vector, or with `pooling=None` a
        dict `{"sequence_output": [length, hidden], "padding_mask": [length]}`
        (batch it with `padded_batch`). The dataset carries `class_names`
        (when `dataset` had them), `num_examples` and `cache_path`.

    `dataset` is read twice: a tokenising pass finds the cache key, and on a
    miss a second pass runs the encoder (so nothing but one batch at a time
    is held in memory).
    """
    from ktransfer.encoders.bert_encoder import BertEncoder

    if not isinstance(encoder, BertEncoder):
        raise TypeError(
            "`encoder` must be a ktransfer BertEncoder. Received: " f"{type(encoder).__name__}"
        )
    if dtype not in ("float32", "float16"):
        raise ValueError(f"`dtype` must be 'float32' or 'float16'. Received: {dtype!r}")
    for name, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {value!r}")
    verbose = _progress_verbosity(verbose)
    if cache_dir is None:
        cache_dir = cache.default_cache_dir("features")
    class_names = getattr(dataset, "class_names", None)
    batches = _tokenised_batches(encoder, dataset, batch_size)

    started = time.perf_counter()
    digests = example_digests(batches)  # a cheap pass: tokenising only
    data_digest = examples_digest(digests)
    path = cache.cache_path(
        cache_dir, [f"format={CACHE_FORMAT}", f"dtype={dtype}", _encoder_digest(encoder), data_digest]
    )
    if not cache.is_cached(path):
        progress = keras.utils.Progbar(len(digests), verbose=verbose, unit_name="example")

        def write(staging):
            return _write_cache(encoder, batches, staging, shard_size, dtype, class_names, progress)

        if cache.write_once(path, write):
            logger.info("cache_features: encoded %s in %.1fs", path, time.perf_counter() - started)
    features = load_cached_features(path)
    if class_names:  # the names may differ from the first run's; the indices do not
        features.class_names = list(class_names)
    return features


def load_cached_features(path):
    """The dataset of a cache folder written by `cache_features`."""
    try:
        manifest = cache.read_manifest(path, CACHE_FORMAT, what="feature cache")
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error} Create one with kt.strategies.cache_features(encoder, dataset)."
        ) from None
    shards = manifest["shards"]
    folder = os.path.abspath(os.fspath(path))
    names = list(shards[0]["arrays"])
    dtypes = {name: tf.as_dtype(shards[0]["arrays"][name]["dtype"]) for name in names}
    columns = {
        name: _npy_column(folder, [shard["arrays"][name] for shard in shards]) for name in names
    }

    @tf.autograph.experimental.do_not_convert
    def load_shard(columns):
        # The data of a C-ordered little-endian `.npy` file is everything
        # after its header: `decode_raw` reads it in the graph.
        arrays = {}
        for name, column in columns.items():
            contents = tf.io.read_file(column["file"])
            raw = tf.strings.substr(contents, column["offset"], column["size"])
            arrays[name] = tf.reshape(tf.io.decode_raw(raw, dtypes[name]), column["shape"])
        return arrays

    dataset = tf.data.Dataset.from_tensor_slices(columns)
    dataset = dataset.map(load_shard, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.unbatch()
    hidden = manifest["hidden_dim"]
    per_token = manifest["per_token"]
    has_labels = "label" in names

    @tf.autograph.experimental.do_not_convert
    def arrange(arrays):
        if per_token:
            features = {
                "sequence_output": tf.ensure_shape(arrays["features"], [None, hidden]),
                "padding_mask": tf.ensure_shape(arrays["padding_mask"], [None]),
            }
        else:
            features = tf.ensure_shape(arrays["features"], [hidden])
        return (features, arrays["label"]) if has_labels else features

    dataset = dataset.map(arrange, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(manifest["num_examples"]))
    dataset.class_names = manifest.get("class_names")
    dataset.num_examples = manifest["num_examples"]
    dataset.cache_path = os.path.abspath(os.fspath(path))
    return dataset


def _npy_column(folder, entries):
    return {
        "file": tf.constant([os.path.join(folder, e["file"]) for e in entries]),
        "offset": tf.constant([e["offset"] for e in entries], tf.int64),
        "size": tf.constant([e["nbytes"] for e in entries], tf.int64),
        "shape": tf.constant([e["shape"] for e in entries], tf.int64),
    }


def _tokenised_batches(encoder, dataset, batch_size):
    """`dataset` as batches of encoder inputs (with labels when it has them)."""
    from ktransfer.data.pipeline import prepare

    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            "`dataset` must be a tf.data.Dataset of texts or (text, label) pairs "
            "(kt.data.from_*) or of tokenised batches (kt.data.prepare). "
            f"Received: {type(dataset).__name__}"
        )
    spec = dataset.element_spec
    features_spec = spec[0] if isinstance(spec, tuple) else spec
    if isinstance(features_spec, dict):
        if "token_ids" not in features_spec or features_spec["token_ids"].shape.rank != 2:
            raise ValueError(
                "A tokenised `dataset` must yield batches of encoder inputs (a dict "
                "with 2-D token_ids), as kt.data.prepare makes. Its element_spec is "
                f"{spec}."
            )
        return dataset
    if encoder.preprocessor is None:
        raise ValueError(
            "`dataset` holds raw texts but the encoder has no preprocessor: tokenise "
            "it first with kt.data.prepare."
        )
    return prepare(dataset, encoder.preprocessor, batch_size=batch_size, bucket=True)


def numpy_batches(batches):
    """`(features, label)` numpy pairs of tokenised batches, as the encoder takes them.

    `batches` yields encoder inputs or `(inputs, label)` as `kt.data.prepare`
    makes; `features` is a dict of int32 `token_ids`, `segment_ids` (zeros
    when absent) and `padding_mask` (from the non-zero tokens when absent),
    and `label` is None for unlabelled batches. Shared with `kt.distill`.
    """
    for element in batches.as_numpy_iterator():
        features, label = element if isinstance(element, tuple) else (element, None)
        token_ids = np.asarray(features["token_ids"], dtype="int32")
        padding_mask = features.get("padding_mask")
        segment_ids = features.get("segment_ids")
        features = {
            "token_ids": token_ids,
            "segment_ids": (
                np.zeros_like(token_ids) if segment_ids is None else segment_ids.astype("int32")
            ),
            "padding_mask": (
                (token_ids != 0).astype("int32")
                if padding_mask is None
                else padding_mask.astype("int32")
            ),
        }
        yield features, label


def example_digests(batches):
    """One 16-byte digest per tokenised example (its tokens and label), in order.

    `batches` yields encoder inputs or `(inputs, label)` as `kt.data.prepare`
    makes; only the real tokens count (not the padding), so the same example
    gets the same digest whatever its batch. Shared with `kt.distill`.
    """
    digests = []
    for features, label in numpy_batches(batches):
        token_ids, segment_ids = features["token_ids"], features["segment_ids"]
        lengths = features["padding_mask"].astype(bool).sum(axis=1)
        for i, length in enumerate(lengths):
            h = hashlib.blake2b(digest_size=16)
            h.update(token_ids[i, :length].astype("<i4").tobytes())
            h.update(segment_ids[i, :length].astype("<i4").tobytes())
            if label is not None:
                h.update(repr(np.asarray(label[i]).tolist()).encode())
            digests.append(h.digest())
    return digests


def examples_digest(digests):
    """Digest of examples as a multiset (their order does not count)."""
    if not digests:
        raise ValueError("The dataset is empty: there is nothing to encode.")
    data_digest = hashlib.blake2b(b"".join(sorted(digests)), digest_size=32).hexdigest()
    return f"examples={len(digests)}:{data_digest}"


def _encoder_digest(encoder):
    """Hash what decides the encoder's outputs: class, configuration, weights."""
    config = {
        "class": type(encoder).__name__,
        "pooling": encoder.pooling,
        "hidden_activation": encoder.hidden_activation,
        "backbone": encoder.backbone.get_config(),
        "lora_rank": encoder.lora_rank,
    }
    return weights_digest(encoder, config)


def _progress_verbosity(verbose):
    """`verbose` as a Progbar verbosity: "auto" -> 1 interactive, 2 in logs."""
    if verbose == "auto":
        interactive = sys.stdout.isatty() or "ipykernel" in sys.modules
        return 1 if interactive else 2
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2. Received: {verbose!r}")
    return verbose


def _write_cache(encoder, batches, folder, shard_size, dtype, class_names, progress=None):
    """Encode `batches` into shards in `folder`; return the cache's manifest."""
    batch_of_ids = tf.TensorSpec([None, None], tf.int32)
    encode = tf.function(  # one trace for every batch and length bucket
        lambda features: encoder(features, training=False),
        input_signature=[
            {name: batch_of_ids for name in ("token_ids", "segment_ids", "padding_mask")}
        ],
    )
    per_token = encoder.pooling is None
    shards, pending, count = [], [], 0
    for features, label in numpy_batches(batches):
        outputs = np.asarray(encode(features)).astype(dtype)
        mask = features["padding_mask"].astype("int32") if per_token else None
        pending.append((outputs, mask, label))
        count += len(outputs)
        if progress is not None:
            progress.add(len(outputs))
        if count >= shard_size:
            shards.append(_write_shard(folder, len(shards), pending, per_token))
            pending, count = [], 0
    if pending:
        shards.append(_write_shard(folder, len(shards), pending, per_token))
    return {
        "format": CACHE_FORMAT,
        "num_examples": sum(shard["num_examples"] for shard in shards),
        "hidden_dim": int(encoder.output_dim),
        "per_token": per_token,
        "pooling": encoder.pooling,
        "dtype": dtype,
        "class_names": list(class_names) if class_names else None,
        "shards": shards,
    }


def _write_shard(folder, index, pending, per_token):
    arrays = {}
    if per_token:
        width = max(outputs.shape[1] for outputs, _, _ in pending)
        arrays["features"] = np.concatenate(
            [_pad_to(outputs, width) for outputs, _, _ in pending], axis=0
        )
        arrays["padding_mask"] = np.concatenate(
            [_pad_to(mask, width) for _, mask, _ in pending], axis=0
        )
    else:
        arrays["features"] = np.concatenate([outputs for outputs, _, _ in pending], axis=0)
    if pending[0][2] is not None:
        arrays["label"] = np.concatenate([np.asarray(label) for _, _, label in pending], axis=0)
    entries = {}
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        if array.dtype.byteorder == ">" or array.dtype == bool:
            array = array.astype(array.dtype.newbyteorder("<") if array.dtype != bool else "uint8")
        file = f"{name}-{index:05d}.npy"
        full = os.path.join(folder, file)
        np.save(full, array)
        entries[name] = {
            "file": file,
            "offset": os.path.getsize(full) - array.nbytes,
            "nbytes": array.nbytes,
            "shape": list(array.shape),
            "dtype": array.dtype.name,
        }
    return {"num_examples": int(len(arrays["features"])), "arrays": entries}


def _pad_to(array, width):
    padding = [(0, 0)] * array.ndim
    padding[1] = (0, width - array.shape[1])
    return np.pad(array, padding)


# --------------------------------------------------------------------------
# attach_head
# --------------------------------------------------------------------------


def attach_head(encoder, head, name=None):
    """Put `encoder` back in front of a head trained on its cached features.

    Args:
        encoder: the `BertEncoder` that produced the features.
        head: the trained head: a layer (e.g. `ClassificationHead`) or a
            model that takes the features (e.g. the `Sequential` probe).
        name: the model's name.

    Returns:
        A built `keras.Sequential([encoder, head])` that takes token
        features; `kt.predict` and `kt.export.save` take raw strings. The
        encoder keeps its trainable setting: compile and fit this model to
        fine-tune further from the trained head (linear probe, then fine-tune).
    """
    from ktransfer.encoders.bert_encoder import BertEncoder
    from ktransfer.methods.weight_transfer import build_on_sample

    if not isinstance(encoder, BertEncoder):
        raise TypeError(f"`encoder` must be a BertEncoder. Received: {type(encoder).__name__}")
    if not isinstance(head, keras.layers.Layer):
        raise TypeError(f"`head` must be a Keras layer or model. Received: {type(head).__name__}")
    if isinstance(head, keras.Model) and getattr(head, "inputs", None):
        expected = head.inputs[0].shape[-1]
        if expected is not None and expected != encoder.output_dim:
            raise ValueError(
                f"The head takes features of size {expected} but the encoder outputs "
                f"{encoder.output_dim}: attach the encoder the features came from."
            )
    model = keras.Sequential([encoder, head], name=name)
    build_on_sample(model, encoder)
    return model
