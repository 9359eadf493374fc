"""What every word-vectors reader shares: argument checks, word checks, row buffers.

The readers (`text_format`, `word2vec_binary`, `native`, `glove_package`)
return `(matrix, words, source)`, where `words` is a list of str, a pyarrow
`StringArray` (turned into a list on first use) or a function returning the
list; `WordVectors.from_validated` wraps them. The pyarrow helpers here go
through raw Arrow buffers: pyarrow's `to_numpy` and `pa.array(list)` import
pandas on first use (0.2 s and ~50 MB).

Example:

```python
from ktransfer.vectors import common
common.check_dtype("float16")                    # dtype('float16')
common.build_index(["cat", "dog"], source=None)  # {'cat': 0, 'dog': 1}
```
"""

import warnings

import numpy as np

from ktransfer.vectors.formats import WordVectorsFormatError


def check_dtype(dtype):
    """`dtype` as a floating numpy dtype; a ValueError naming the choices otherwise."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(
            f"Invalid `dtype` {dtype!r}; use 'float32', 'float16' or 'float64'."
        ) from None
    if dtype.kind != "f":
        raise ValueError(f"`dtype` must be a floating type (e.g. 'float32'); got {dtype}.")
    return dtype


def check_vocabulary(vocabulary):
    """`vocabulary` as a set of str (None stays None); a TypeError for one string."""
    if vocabulary is None:
        return None
    if isinstance(vocabulary, (str, bytes)):
        raise TypeError(
            "`vocabulary` must be an iterable of words (e.g. a list or set), not a "
            f"single string ({vocabulary[:40]!r})."
        )
    vocabulary = set(vocabulary)
    for word in vocabulary:
        if not isinstance(word, str):
            raise TypeError(f"`vocabulary` must contain strings; found {word!r}.")
    return vocabulary


def build_index(words, source):
    """`{word: row}`; a duplicate word raises, naming both rows (and `source`, a file)."""
    index = dict(zip(words, range(len(words))))
    if len(index) != len(words):
        seen = set()
        for row, word in enumerate(words):
            if word in seen:
                first = words.index(word)
                problem = f"word {word!r} appears twice (rows {first} and {row})."
                if source is None:
                    raise ValueError(f"Duplicate words: {problem} Words must be unique.")
                raise WordVectorsFormatError(
                    source, problem, "remove the duplicate row (words must be unique)."
                )
            seen.add(word)
    return index


def check_unique_words(words, source):
    """Check that a pyarrow StringArray holds distinct, non-empty words; return it."""
    try:
        hashes = word_hashes(words)
    except EmptyWordError as error:
        raise WordVectorsFormatError(
            source, f"word {error.row} is an empty string.", "words must be non-empty."
        ) from None
    if repeated_rows(words, hashes) is not None:
        build_index(words.to_pylist(), source)  # raises, naming the rows
    return words


_HASH_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime


def word_hashes(words):
    """A 64-bit polynomial hash of every word of a pyarrow StringArray,
    computed with vectorised NumPy on the Arrow buffers (no Python strings).

    Used to check that words are unique: Arrow's own hash kernels
    (`count_distinct`, `unique`) allocate ~90 MB for 400,000 words and a Python
    set needs every word as a Python object. Equal words have equal hashes;
    rows whose hashes collide are then compared exactly.
    """
    count = len(words)
    if count == 0:
        return np.empty(0, dtype=np.uint64)
    import pyarrow as pa

    width = np.int64 if pa.types.is_large_string(words.type) else np.int32
    offsets = np.frombuffer(words.buffers()[1], dtype=width, count=count + 1,
                            offset=words.offset * np.dtype(width).itemsize).astype(np.int64)
    start = int(offsets[0])
    offsets -= offsets[0]
    lengths = np.diff(offsets)
    if lengths.min() == 0:
        raise EmptyWordError(int(np.argmin(lengths)))
    data = np.frombuffer(words.buffers()[2], dtype=np.uint8)[start:start + offsets[-1]]
    position = np.arange(len(data), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    powers = np.cumprod(np.full(int(lengths.max()), _HASH_MULTIPLIER, dtype=np.uint64))
    terms = (data.astype(np.uint64) + np.uint64(1)) * powers[position]  # wraps mod 2**64
    return np.add.reduceat(terms, offsets[:-1]) ^ lengths.astype(np.uint64)


def repeated_rows(words, hashes):
    """None if all words are distinct, else a bool mask of the rows that
    repeat an earlier row (first occurrences are kept)."""
    ordered = np.sort(hashes)
    if not len(ordered) or not np.any(ordered[1:] == ordered[:-1]):
        return None
    colliding = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    candidates = np.flatnonzero(np.isin(hashes, colliding))
    repeated = np.zeros(len(hashes), dtype=bool)
    seen = set()
    for row, word in zip(candidates, words.take(candidates).to_pylist()):
        if word in seen:
            repeated[row] = True
        seen.add(word)
    return repeated if repeated.any() else None


class EmptyWordError(Exception):
    """Raised by `word_hashes` for an empty word; `row` is its position."""

    def __init__(self, row):
        super().__init__(row)
        self.row = row


class RowBuffer:
    """A growable `[rows, dim]` matrix, filled block by block.

    The capacity is an estimate from the file size; pages that are never
    written are never resident, and `finish` shrinks the allocation in place
    (realloc), so there is never a second full-size copy of the matrix.
    """

    def __init__(self, capacity, dim, dtype):
        self.array = np.empty((max(1, capacity), dim), dtype=dtype)
        self.size = 0

    def reserve(self, rows):
        needed = self.size + rows
        capacity = self.array.shape[0]
        if needed > capacity:
            new_capacity = max(needed, capacity + capacity // 4 + 1024)
            # No views of `array` outlive a statement, so the in-place realloc
            # is safe; refcheck would only trip on debugger references.
            self.array.resize((new_capacity, self.array.shape[1]), refcheck=False)
        return self.array[self.size:needed]

    def finish(self):
        self.array.resize((self.size, self.array.shape[1]), refcheck=False)
        return self.array


def drop_duplicates(path, words, matrix, hashes, block_starts):
    """Keep the first occurrence of a repeated word (as gensim does) and warn:
    published files are not always clean and cannot easily be edited."""
    repeated = repeated_rows(words, hashes)
    if repeated is None:
        return words, matrix
    keep = ~repeated
    repeat = int(np.argmax(repeated))
    word = words[repeat].as_py()
    first = words.to_pylist().index(word)

    def where(row):
        for block_row, block_line, offsets in reversed(block_starts):
            if row >= block_row:
                if block_line is None:  # binary files have records, not lines
                    return f"record {row + 1}"
                offset = row - block_row if offsets is None else int(offsets[row - block_row])
                return f"line {block_line + offset}"
        return f"row {row}"

    warnings.warn(
        f"{path}: {int(repeated.sum())} repeated word(s) ignored, keeping the first "
        f"occurrence; e.g. {word!r} on {where(first)} and {where(repeat)}.",
        UserWarning,
        stacklevel=4,
    )
    return words.filter(keep), matrix[keep]


def to_numpy(column):
    """A float (or uint64) pyarrow column without nulls as a zero-copy array."""
    array = column if not hasattr(column, "num_chunks") else (
        column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    )
    dtype = np.dtype({"float": np.float32, "double": np.float64, "uint64": np.uint64,
                      "int64": np.int64}[str(array.type)])
    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize
    )


def string_array(words):
    """A pyarrow StringArray from a list of str."""
    import pyarrow as pa

    encoded = [word.encode("utf-8") for word in words]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return pa.LargeStringArray.from_buffers(
        len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))
    ).cast(pa.string())


def true_positions(mask):
    """Row numbers where a pyarrow BooleanArray is true."""
    import pyarrow.compute as pc

    return to_numpy(pc.indices_nonzero(mask)).astype(np.int64)


def check_finite(path, values, where):
    """Raise `WordVectorsFormatError` at the first NaN or infinite value of `values`.

    Args:
        path: the file, for the message.
        values: `[rows, dim]` floats just read.
        where: `where(row)` -> `(line, location, word)`: the 1-based line
            of row `row` (None for binary files), how to name it otherwise
            (e.g. `"record 7"`), and the row's word.
    """
    finite = np.isfinite(values)
    if finite.all():
        return
    row, column = np.argwhere(~finite)[0]
    line, location, word = where(int(row))
    raise WordVectorsFormatError(
        path,
        f"value {column + 1} of word {word[:40]!r} is {values[row, column]} (not a finite "
        "number): a NaN or infinite vector breaks cosine similarity and training.",
        "repair or remove that vector (every value must be a finite number).",
        line=line, where=None if line is not None else location,
    )


def check_finite_vectors(words, matrix):
    """A ValueError naming the first word whose vector holds NaN or inf (in-memory data)."""
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise ValueError(
            f"The vector of {words[row]!r} (row {row}) holds NaN or infinite values; "
            "every value must be a finite number: replace or drop it."
        )


def select_rows(matrix, words, vocabulary, dtype):
    """`(matrix, words)` with only the rows of `vocabulary` (if any), cast to `dtype`.

    `words` is a list of str or a pyarrow StringArray (kept as it is when
    there is no vocabulary; the kept words become a list otherwise).
    """
    if vocabulary is None:
        if matrix.dtype != dtype:
            matrix = matrix.astype(dtype)
        return matrix, words
    if not isinstance(words, list):
        import pyarrow.compute as pc

        keep = pc.is_in(words, value_set=string_array(sorted(vocabulary)))
        rows = true_positions(keep)
        kept_words = words.filter(keep).to_pylist()
    else:
        rows = np.array(
            [row for row, word in enumerate(words) if word in vocabulary], dtype=np.int64
        )
        kept_words = [words[row] for row in rows]
    return np.asarray(matrix[rows], dtype=dtype), kept_words
