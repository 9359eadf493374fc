"""Write a TF Serving SavedModel atomically, with custom signatures.

`write_saved_model` is the one SavedModel writer of ktransfer: every task's
`export` and `kt.export` go through it. It uses `keras.export.ExportArchive`
(the well-kept Keras way to write a TF SavedModel with custom endpoints),
writes into a staging folder beside the target and renames it into place
only when complete (`ktransfer.utils.atomic_directory`), so an interrupted
export leaves nothing half-written and an existing version stays whole
until its replacement is.
"""

import os

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.utils.files import atomic_directory


def check_version_folder(path, overwrite=False):
    """Check that `path` is a TF Serving version folder that may be written.

    TF Serving scans `saved_models/<name>/<version>/` and serves the highest
    integer version, so the last part of `path` must be an integer.

    Args:
        path: the folder an export will write.
        overwrite: allow replacing an existing folder.

    Returns:
        The absolute path.

    Raises:
        ValueError: the last part of `path` is not an integer.
        FileExistsError: `path` exists and `overwrite` is False.

    Example:

    ```python
    from ktransfer.utils import check_version_folder
    check_version_folder("/tmp/kt_doc_models/sst2/1", overwrite=True)  # '/tmp/kt_doc_models/sst2/1'
    ```
    """
    path = os.path.abspath(os.fspath(path))
    version = os.path.basename(path.rstrip(os.sep))
    if not version.isdigit():
        raise ValueError(
            f"Export path {path!r} must end in an integer version folder, the "
            "layout TF Serving scans (saved_models/<name>/<version>/), e.g. "
            "'saved_models/sst2/1'."
        )
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already exists. Export to a new version number (TF Serving "
            "serves the highest), or pass overwrite=True to replace it (on the "
            "command line: --overwrite)."
        )
    return path


def write_saved_model(path, trackables, signatures, label_files=None, overwrite=False):
    """Write `signatures` as a SavedModel into the version folder `path`, atomically.

    Args:
        path: the version folder, `saved_models/<name>/<version>` (checked
            by `check_version_folder`).
        trackables: a layer, model or TensorFlow trackable, or a list of
            them: what the signatures use, so that its variables and lookup
            tables (a tokenizer's vocabulary) are saved. Track the
            preprocessor as well as the model. None and plain Python
            callables (nothing to save) are skipped.
        signatures: `{name: (fn, input_signature)}`, where `fn` is a Python
            function or `tf.function` taking tensors and returning a dict of
            tensors, and `input_signature` a list of named `tf.TensorSpec`s.
            It must contain `"serving_default"` (what TF Serving calls by
            default).
        label_files: `{file name: [str, ...]}` written one entry per line
            into `assets.extra/` beside the graph (for humans and serving
            tools), e.g. `{"labels.txt": ["negative", "positive"]}`.
        overwrite: replace an existing version folder (once the new one is
            complete).

    Returns:
        The absolute path written.

    Example:

    ```python
    import tensorflow as tf
    import keras
    from ktransfer.utils import write_saved_model
    scale = keras.layers.Dense(1, kernel_initializer="ones")
    scale.build((None, 1))

    def serve(x):
        return {"y": scale(x)}

    write_saved_model(
        "/tmp/kt_doc_models/scale/1", scale,
        {"serving_default": (serve, [tf.TensorSpec((None, 1), tf.float32, name="x")])},
        overwrite=True,
    )
    ```
    """
    path = check_version_folder(path, overwrite)
    if not isinstance(signatures, dict) or not signatures:
        raise ValueError(
            "`signatures` must be a non-empty dict {name: (fn, [tf.TensorSpec, ...])}. "
            f"Received: {signatures!r}"
        )
    if "serving_default" not in signatures:
        raise ValueError(
            "`signatures` must include 'serving_default', the signature TF Serving "
            f"calls by default. Received names: {sorted(signatures)}"
        )
    for name, value in signatures.items():
        if not (isinstance(value, (tuple, list)) and len(value) == 2 and callable(value[0])):
            raise ValueError(
                f"`signatures[{name!r}]` must be a pair (fn, input_signature). "
                f"Received: {value!r}"
            )
    label_files = dict(label_files or {})
    for file_name, labels in label_files.items():
        if os.path.basename(file_name) != file_name or not file_name:
            raise ValueError(f"Label file names must be plain file names. Received: {file_name!r}")
        labels = [str(label) for label in labels]
        bad = [label for label in labels if "\n" in label or "\r" in label]
        if bad:
            raise ValueError(
                f"Labels written to {file_name} (one per line) contain a line break: {bad[0]!r}."
            )
        label_files[file_name] = labels
    if not isinstance(trackables, (list, tuple)):
        trackables = [trackables]

    archive = keras.export.ExportArchive()
    tracked = set()
    for resource in trackables:
        if resource is None or id(resource) in tracked or not _is_trackable(resource):
            continue
        tracked.add(id(resource))
        archive.track(resource)
    for name, (fn, input_signature) in signatures.items():
        archive.add_endpoint(
            name=name,
            fn=getattr(fn, "python_function", fn),
            input_signature=list(input_signature),
        )
    with atomic_directory(path, overwrite=overwrite) as staging:
        archive.write_out(staging, verbose=False)
        if label_files:
            os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
        for file_name, labels in label_files.items():
            with open(os.path.join(staging, "assets.extra", file_name), "w", encoding="utf-8") as f:
                f.write("\n".join(labels) + "\n")
    return path


def _is_trackable(resource):
    return isinstance(resource, (keras.layers.Layer, tf.__internal__.tracking.Trackable))
