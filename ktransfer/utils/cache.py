"""A run-once cache on disk: compute something expensive once, keyed by what decides it.

`kt.strategies.cache_features` (an encoder's outputs over a dataset) and
`kt.distill.soft_targets` (a teacher's logits over a set of texts) both
run a model once and read the result back in any later run, in any
process. They share this module:

- the key: `digest(parts)` of strings that say everything the result
  depends on (a format version, `weights_digest(model, config)`, a digest of
  the examples); `cache_path(cache_dir, parts)` is the folder it names;
- the write: `write_once(path, write)` runs `write(staging)` into a hidden
  staging folder beside `path` (`ktransfer.utils.atomic_directory`), writes
  the returned manifest last, and renames the folder into place; a folder
  holding a manifest is therefore complete, and a crash leaves nothing;
- the read: `read_manifest(path, format)` checks the format version.

Example:

```python
import os, numpy as np
from ktransfer.utils import cache
path = cache.cache_path("/tmp/kt_doc_cache", ["format=1", "squares of 0..9"])

def write(staging):
    np.save(os.path.join(staging, "values.npy"), np.arange(10) ** 2)
    return {"format": 1, "num_examples": 10}

cache.write_once(path, write)             # runs `write` (a second call would not)
cache.read_manifest(path, format=1)       # {'format': 1, 'num_examples': 10}
```
"""

import hashlib
import json
import os

import numpy as np

from ktransfer.utils.files import atomic_directory

MANIFEST = "manifest.json"
KEY_LENGTH = 32  # hex characters of the digest that name a cache folder


def digest(parts):
    """A hex blake2b-256 digest of `parts` (strings), joined by newlines."""
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=32).hexdigest()


def weights_digest(layer, config):
    """Hash `config` (JSON-able) and every weight of `layer` (path and value).

    What decides a model's outputs: its configuration and its weights.
    """
    from ktransfer._keras import keras

    h = hashlib.blake2b(digest_size=32)
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for variable in layer.weights:
        h.update(variable.path.encode())
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return h.hexdigest()


def default_cache_dir(name):
    """`$KTRANSFER_HOME/<name>` (default `~/.cache/ktransfer/<name>`)."""
    from ktransfer import assets

    return os.path.join(assets.home(), name)


def cache_path(cache_dir, parts):
    """The cache folder for the key `parts`: `cache_dir/<digest(parts)[:32]>` (absolute)."""
    return os.path.join(os.path.abspath(os.fspath(cache_dir)), digest(parts)[:KEY_LENGTH])


def is_cached(path):
    """Whether `path` holds a complete cache (its manifest is written last)."""
    return os.path.isfile(os.path.join(os.fspath(path), MANIFEST))


def write_once(path, write):
    """Publish the cache `path`, unless it is complete already.

    Args:
        path: the cache folder, e.g. `cache_path(cache_dir, parts)`.
        write: `write(staging)` writes the cache's files into the empty
            folder `staging` and returns its manifest (a JSON-able dict).

    Returns:
        True when `write` ran, False when the cache was there already.

    The manifest is written last, into the staging folder, and the folder
    is renamed into place whole. When another process publishes the same
    cache meanwhile, either copy is complete and answers alike.
    """
    path = os.path.abspath(os.fspath(path))
    if is_cached(path):
        return False
    # A folder without a manifest is no cache (never left by this writer): replace it.
    overwrite = os.path.isdir(path)
    try:
        with atomic_directory(path, overwrite=overwrite) as staging:
            manifest = write(staging)
            with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=1)
    except FileExistsError:
        if not is_cached(path):
            raise
        return False  # another process finished first
    return True


def read_manifest(path, format, what="cache"):
    """The manifest of the cache `path`, checked to be of version `format`.

    Raises:
        FileNotFoundError: `path` holds no complete cache.
        ValueError: the cache was written in another format version (the
            message says to delete it).
    """
    manifest_file = os.path.join(os.fspath(path), MANIFEST)
    if not os.path.isfile(manifest_file):
        raise FileNotFoundError(f"{os.fspath(path)!r} is not a {what} (no {MANIFEST}).")
    with open(manifest_file, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("format") != format:
        raise ValueError(
            f"{os.fspath(path)!r} was written in {what} format {manifest.get('format')}, "
            f"this version reads format {format}: delete the folder to rebuild it."
        )
    return manifest


__all__ = [
    "MANIFEST",
    "cache_path",
    "default_cache_dir",
    "digest",
    "is_cached",
    "read_manifest",
    "weights_digest",
    "write_once",
]
