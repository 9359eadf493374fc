"""Atomic writes: a folder or a file appears whole, or not at all.

Every artefact ktransfer writes (SavedModels, feature caches, soft-target
caches, reports, run configs, `.keras` files, backups, unpacked assets) is
written into a hidden staging path beside its target, on the same file
system, and renamed into place only when complete. An interrupted write
(an exception, Ctrl-C, `kill -9`) leaves the previous target untouched;
the staging path is removed on every error Python sees.
"""

import contextlib
import os
import shutil
import tempfile


def _staging_prefix(path):
    return f".{os.path.basename(path.rstrip(os.sep)) or 'tmp'}.tmp-"


@contextlib.contextmanager
def atomic_directory(path, overwrite=False):
    """Yield an empty staging folder that becomes `path` when the block ends.

    Args:
        path: the folder to write. Its parent is created if missing.
        overwrite: replace an existing `path` (removed only once the new
            folder is complete). False raises `FileExistsError` first.

    Yields:
        The staging folder's path: write everything into it.

    Example:

    ```python
    import os
    from ktransfer.utils import atomic_directory
    with atomic_directory("/tmp/kt_doc_example", overwrite=True) as staging:
        open(os.path.join(staging, "a.txt"), "w").write("complete")
    os.listdir("/tmp/kt_doc_example")  # ['a.txt']
    ```
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=_staging_prefix(path))
    try:
        yield staging
        if os.path.exists(path) and not overwrite:
            # Another process published `path` while this block ran: keep theirs.
            raise FileExistsError(f"{path} appeared while it was being written; it was left as it is.")
        if os.path.isdir(path):
            # Swap: move the old folder aside, rename the new one in, then delete.
            retired = tempfile.mkdtemp(dir=parent, prefix=_staging_prefix(path) + "old-")
            os.rmdir(retired)
            os.rename(path, retired)
            try:
                os.rename(staging, path)
            except BaseException:
                os.rename(retired, path)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            if os.path.exists(path):
                os.remove(path)
            os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path, mode="w", encoding="utf-8"):
    """Yield an open staging file that replaces `path` when the block ends.

    Args:
        path: the file to write (its parent is created if missing).
        mode: `"w"` (text) or `"wb"` (bytes); `None` yields the staging
            file's path instead of an open file, for writers that open it
            themselves (e.g. `model.save(staging)`; the path keeps the
            target's extension).
        encoding: for text mode.

    Example:

    ```python
    from ktransfer.utils import atomic_file
    with atomic_file("/tmp/kt_doc_example.json") as f:
        f.write('{"complete": true}')
    ```
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    handle, staging = tempfile.mkstemp(dir=parent, prefix=_staging_prefix(path), suffix=suffix)
    os.close(handle)
    try:
        if mode is None:
            os.remove(staging)  # writers such as `model.save` refuse existing files
            yield staging
        elif "b" in mode:
            with open(staging, mode) as f:
                yield f
        else:
            with open(staging, mode, encoding=encoding) as f:
                yield f
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise
