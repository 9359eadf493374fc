"""The native format: a folder with `vectors.npy` and `vocab.txt`, memory-mapped on load.

`WordVectors.save(path)` writes it (`save_native`), `WordVectors.load(path)`
reads it back in milliseconds (`load_native`): the matrix is memory-mapped
read-only, and the words are split and checked on first use. A path ending
in `.npy` is a prefix instead of a folder: `x.npy` + `x.vocab.txt`.

Example:

```python
import numpy as np
from ktransfer.vectors import native
native.save_native("/tmp/kt_doc_native", ["cat", "dog"], np.eye(2, dtype="float32"))
matrix, words, source = native.load_native("/tmp/kt_doc_native", None, np.dtype("float32"))
matrix.shape, words()     # ((2, 2), ['cat', 'dog'])
```
"""

import os

import numpy as np

from ktransfer.vectors.common import check_finite
from ktransfer.vectors.common import check_finite_vectors
from ktransfer.vectors.common import select_rows
from ktransfer.vectors.formats import VECTORS_FILE
from ktransfer.vectors.formats import VOCAB_FILE
from ktransfer.vectors.formats import WordVectorsFormatError


def native_paths(path, for_writing=False):
    """(vectors .npy path, vocab path) for a native folder or `.npy` prefix."""
    if path.endswith(".npy"):
        prefix_vocab = path[: -len(".npy")] + ".vocab.txt"
        if for_writing or os.path.isfile(prefix_vocab):
            return path, prefix_vocab
        return path, os.path.join(os.path.dirname(path), VOCAB_FILE)
    if for_writing and os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"Cannot save into {path!r}: it is an existing file. Pass a folder, or a "
            "path ending in '.npy'."
        )
    return os.path.join(path, VECTORS_FILE), os.path.join(path, VOCAB_FILE)


def load_npy(path):
    """A 2-D float `.npy` matrix, memory-mapped read-only."""
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise WordVectorsFormatError(
            path, f"not a readable .npy matrix ({error}).",
            "write it again with `WordVectors.save` (or np.save of a float matrix).",
        ) from None
    if matrix.ndim != 2 or matrix.dtype.kind != "f":
        raise WordVectorsFormatError(
            path, f"expected a 2-D float matrix, found shape {matrix.shape} dtype {matrix.dtype}.",
            "save a [num_words, dim] float matrix.",
        )
    return matrix


def load_native(path, vocabulary, dtype):
    """Read a native folder (or `.npy` file): `(matrix, words, source)`.

    Without `vocabulary` and in the file's dtype, the matrix comes back
    memory-mapped (read-only) and `words` is a function that splits the
    vocabulary on first use.
    """
    vectors_path, vocab_path = native_paths(path)
    for required in (vectors_path, vocab_path):
        if not os.path.isfile(required):
            raise WordVectorsFormatError(
                path, f"the native format needs {os.path.basename(required)!r} "
                f"({required}), which is missing.",
                "pass a folder written by `WordVectors.save` (vectors.npy + vocab.txt).",
            )
    matrix = load_npy(vectors_path)
    with open(vocab_path, "rb") as f:
        data = f.read()
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise WordVectorsFormatError(
            vocab_path, f"byte 0x{data[error.start]:02x} is not valid UTF-8.",
            "vocab.txt must be UTF-8: save the vectors again with `WordVectors.save`.",
            line=line,
        ) from None
    # Counting and searching are done on the bytes: much faster than on a
    # non-ASCII str.
    num_words = data.count(b"\n") + 1 if data else 0
    if num_words != matrix.shape[0]:
        raise WordVectorsFormatError(
            vocab_path, f"{num_words} words for {matrix.shape[0]} rows in "
            f"{os.path.basename(vectors_path)}.",
            "the two files must come from the same `WordVectors.save` call.",
        )
    framed = b"\n" + data + b"\n" if data else b""  # each word between two newlines
    empty = framed.find(b"\n\n")
    if empty >= 0:
        raise WordVectorsFormatError(
            vocab_path, "a line is empty (words must be non-empty).",
            "save the vectors again with `WordVectors.save`.",
            line=framed.count(b"\n", 0, empty + 1),
        )
    # The words are split into a list on first use and checked for
    # uniqueness when the lookup index is first built (saved files come from
    # valid WordVectors): loading stays at a few milliseconds. For the same
    # reason the memory-mapped matrix is not scanned for NaN / inf (`save`
    # refuses them); a copy (a vocabulary, another dtype) is checked.
    if vocabulary is None and dtype == matrix.dtype:
        return matrix, (lambda: text.split("\n") if text else []), vocab_path
    words = text.split("\n") if text else []
    if vocabulary is None:
        check_finite(vocab_path, matrix, lambda row: (row + 1, None, words[row]))
    matrix, words = select_rows(matrix, words, vocabulary, dtype)
    check_finite(vectors_path, matrix, lambda row: (None, f"row {row}", words[row]))
    return matrix, words, vocab_path


def save_native(path, words, matrix):
    """Write `words` and `matrix` in the native format; return the `.npy` path.

    Args:
        path: a folder (created if needed) that receives `vectors.npy` (the
            matrix as float32) and `vocab.txt` (one word per line, UTF-8);
            a path ending in `.npy` is a prefix instead: `x.npy` + `x.vocab.txt`.
        words: the words, in row order (no word may contain a newline).
        matrix: `[len(words), dim]` finite floats.

    A folder that holds nothing else is written whole or not at all
    (`ktransfer.utils.atomic_directory`); otherwise (other files beside
    them, or a prefix) each file is replaced atomically
    (`ktransfer.utils.atomic_file`). Either way the files this process
    memory-maps are renamed over, never truncated.
    """
    from ktransfer.utils.files import atomic_directory
    from ktransfer.utils.files import atomic_file

    path = os.fspath(path)
    vectors_path, vocab_path = native_paths(path, for_writing=True)
    for row, word in enumerate(words):
        if "\n" in word:
            raise ValueError(
                f"Word {row} ({word!r}) contains a newline and cannot be stored "
                "one per line in vocab.txt; remove or replace it first."
            )
    check_finite_vectors(words, matrix)

    def write(vectors_file, vocab_file):
        np.save(vectors_file, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)
        if words:
            vocab_file.write("\n".join(words).encode("utf-8"))
            vocab_file.write(b"\n")

    ours = {VECTORS_FILE, VOCAB_FILE}
    if not path.endswith(".npy") and (not os.path.isdir(path) or set(os.listdir(path)) <= ours):
        with atomic_directory(path, overwrite=True) as staging:
            with open(os.path.join(staging, VECTORS_FILE), "wb") as vectors_file, open(
                os.path.join(staging, VOCAB_FILE), "wb"
            ) as vocab_file:
                write(vectors_file, vocab_file)
        return vectors_path
    with atomic_file(vectors_path, "wb") as vectors_file, atomic_file(vocab_path, "wb") as vocab_file:
        write(vectors_file, vocab_file)
    return vectors_path
