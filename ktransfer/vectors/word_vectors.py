"""Pretrained word vectors (GloVe, word2vec, fastText): fast loading and lookup.

`WordVectors` holds a vocabulary and a `[num_words, dim]` matrix. It reads the
common published formats and a native format that loads memory-mapped in
milliseconds:

| `format=`    | Files                                                         |
|--------------|---------------------------------------------------------------|
| `"glove"`    | text, no header: `word v1 ... vd` per line (`glove.6B.50d.txt`) |
| `"word2vec"` | text with a `count dim` header line, or the binary GoogleNews  |
|              | format (header, then `word` + space + `dim` float32 per word)  |
| `"fasttext"` | `.vec` text: like word2vec text (header line)                 |
| `"npy"`      | native: a folder with `vectors.npy` + `vocab.txt` (`save`)     |
| `"auto"`     | detected from the file's bytes (magic, header, binary data)    |

Example:

```python
import numpy as np
from ktransfer.vectors.word_vectors import WordVectors

vectors = WordVectors(["good", "great", "bad"],
                      np.array([[1.0, 0.1], [0.9, 0.2], [-1.0, 0.0]]))
vectors.most_similar("good", k=1)      # [('great', 0.99...)]
vectors.save("/tmp/tiny_vectors")      # vectors.npy + vocab.txt
same = WordVectors.load("/tmp/tiny_vectors")   # memory-mapped
```

Why the text parser is built this way. GloVe/fastText text files are hundreds
of MB to several GB; gensim's Python loop over lines spends ~13 s of CPU on
glove.6B.50d.txt (400,000 x 50) creating a Python float per number. We hand
the number parsing to a well-kept C++ library instead of writing a parser:
pyarrow's CSV reader (space delimiter, quoting and escapes off, `float32`
columns converted with the correctly rounded `fast_float`). pandas' C engine
costs about the same CPU per byte, but pyarrow parses an in-memory block with
little per-call overhead, releases the GIL for the whole parse, and exposes
each column as a zero-copy buffer, so:

* the file is read in ~2 MB blocks cut at line ends, blocks are parsed on a
  small thread pool (all cores of a 2-core machine) and each block's columns
  are copied straight into one preallocated row-major matrix: no full-file
  Arrow table or DataFrame next to the matrix (peak memory ~1.7x the matrix,
  including the words), and time grows linearly with the file size;
* because we know the line each block starts on, a block that the fast parser
  rejects (a ragged row, a bad number, a non-UTF-8 byte, a word containing
  spaces as in GloVe 840B) is re-read line by line in Python, which either
  handles it (words with spaces) or raises an error naming the exact line.
  Only that block pays for the slow path.

pyarrow's own whole-file reader would hold the complete table beside the
matrix (2x+ memory) and its streaming reader parses one block at a time.
"""

import codecs
import collections
import concurrent.futures
import dataclasses
import gzip
import os
import re
import warnings

import numpy as np

__all__ = ["FORMATS", "WordVectors", "WordVectorsFormatError"]

FORMATS = ("auto", "glove", "word2vec", "fasttext", "npy")

# Native format file names (inside the folder given to `save`/`load`).
VECTORS_FILE = "vectors.npy"
VOCAB_FILE = "vocab.txt"

_BLOCK_SIZE = 2 << 20  # bytes of text per pyarrow parse call (~1.6x the matrix at peak)
_SNIFF_SIZE = 1 << 16
_ROWS_PER_STEP = 1 << 16  # rows per matmul step in most_similar (bounded temporaries)
_NPY_MAGIC = b"\x93NUMPY"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_FASTTEXT_BIN_MAGIC = (793712314).to_bytes(4, "little")
_UTF8_BOM = b"\xef\xbb\xbf"
# Characters that can appear in the numeric part of a text vectors line.
_TEXT_NUMBER_BYTES = frozenset(b"0123456789+-.eEnNaAiIfFtTyY \t\r\n")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", re.I)


class WordVectorsFormatError(ValueError):
    """A word vectors file cannot be read; the message names the file, the
    line (or binary record) and how to fix it.

    Attributes:
        path: the file.
        line: 1-based line number of the problem, or None (binary files,
            whole-file problems).
        problem: what is wrong.
        fix: what to do about it.
    """

    def __init__(self, path, problem, fix, line=None, where=None):
        self.path = path
        self.line = line
        self.problem = problem
        self.fix = fix
        if where is None and line is not None:
            where = f"line {line}"
        location = f"{path!s}" + (f", {where}" if where else "")
        super().__init__(f"Cannot read word vectors from {location}: {problem} Fix: {fix}")


class WordVectors:
    """A vocabulary of words with one dense vector per word.

    Build one from a list of words and a matrix, or read a published file
    with `WordVectors.load`. Lookups (`in`, `[]`, `index`, `get`) use a
    word -> row dictionary that is built on the first lookup (about 0.1 s per
    400,000 words), so that loading stays fast when only `matrix` is needed.

    Args:
        words: iterable of distinct, non-empty strings; row `i` of `matrix`
            is the vector of `words[i]`.
        matrix: array-like `[len(words), dim]` of floats. NumPy arrays
            (including memory maps) are kept as they are, not copied.

    Example:

    ```python
    import numpy as np
    from ktransfer.vectors.word_vectors import WordVectors

    vectors = WordVectors(["cat", "dog", "car"],
                          np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]))
    vectors["dog"]                  # array([0.8, 0.6])
    "cow" in vectors                # False
    vectors.most_similar("cat", k=2)  # [('dog', 0.8), ('car', 0.0)]
    ```
    """

    def __init__(self, words, matrix):
        if isinstance(words, (str, bytes)):
            raise TypeError(
                "`words` must be a list of strings, not a single string "
                f"({words[:40]!r})."
            )
        words = list(words)
        matrix = matrix if isinstance(matrix, np.ndarray) else np.asarray(matrix)
        if matrix.ndim != 2:
            raise ValueError(
                f"`matrix` must be 2-D [num_words, dim]; got shape {matrix.shape}."
            )
        if matrix.dtype.kind not in "fiu":
            raise ValueError(f"`matrix` must hold numbers; got dtype {matrix.dtype}.")
        if matrix.dtype.kind != "f":
            matrix = matrix.astype(np.float32)
        if len(words) != matrix.shape[0]:
            raise ValueError(
                f"Got {len(words)} words but the matrix has {matrix.shape[0]} rows; "
                "they must match (row i is the vector of words[i])."
            )
        for position, word in enumerate(words):
            if not isinstance(word, str) or not word:
                raise ValueError(
                    f"Every word must be a non-empty string; words[{position}] is {word!r}."
                )
        self._matrix = matrix
        self._words = words
        self._make_words = None
        self._source = None
        self._index = _build_index(words, source=None)
        self._unit_norms = None

    @classmethod
    def _create(cls, matrix, words=None, word_array=None, make_words=None, source=None):
        """Internal constructor for data already validated by a loader. The
        words come as a list, a pyarrow StringArray or a function returning
        the list; the last two are turned into a list on first use."""
        vectors = cls.__new__(cls)
        vectors._matrix = matrix
        vectors._words = words
        vectors._make_words = word_array.to_pylist if word_array is not None else make_words
        vectors._source = source
        vectors._index = None
        vectors._unit_norms = None
        return vectors

    # ------------------------------------------------------------------ access

    @property
    def dim(self):
        """Number of dimensions of each vector."""
        return int(self._matrix.shape[1])

    @property
    def matrix(self):
        """The `[num_words, dim]` matrix (read-only memory map after loading the
        native format: copy it with `np.array(vectors.matrix)` to modify)."""
        return self._matrix

    @property
    def words(self):
        """The words, as a list, in row order (shared, do not modify it)."""
        if self._words is None:
            self._words = self._make_words()
            self._make_words = None
        return self._words

    def __len__(self):
        return int(self._matrix.shape[0])

    def __iter__(self):
        return iter(self.words)

    def __contains__(self, word):
        return word in self._lookup()

    def __getitem__(self, word):
        return np.asarray(self._matrix[self.index(word)])

    def index(self, word):
        """Row of `word` in `matrix`; `KeyError` if it is not in the vocabulary."""
        try:
            return self._lookup()[word]
        except KeyError:
            raise KeyError(
                f"{word!r} is not in the vocabulary ({len(self):,} words). "
                "Check `word in vectors` first or use `vectors.get(word)`."
            ) from None
        except TypeError:
            raise TypeError(f"Words are strings; got {type(word).__name__} {word!r}.") from None

    def get(self, word, default=None):
        """The vector of `word` (np.ndarray [dim]) or `default` if absent."""
        row = self._lookup().get(word)
        return default if row is None else np.asarray(self._matrix[row])

    def __repr__(self):
        return (
            f"<WordVectors: {len(self):,} words x {self.dim} dims, "
            f"{self._matrix.dtype}>"
        )

    def _lookup(self):
        if self._index is None:
            self._index = _build_index(self.words, source=self._source)
        return self._index

    # -------------------------------------------------------------- similarity

    def most_similar(self, word, k=5):
        """The `k` words with the highest cosine similarity to `word`.

        Args:
            word: a word of the vocabulary (excluded from the results), or a
                vector of shape `[dim]`.
            k: how many neighbours to return (positive int).

        Returns:
            A list of `(word, cosine)` pairs, most similar first. Words whose
            vector is all zeros have cosine 0.

        Example:

        ```python
        vectors.most_similar("good", k=3)
        # [('better', 0.92...), ('really', 0.89...), ('always', 0.88...)]
        ```
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"`k` must be a positive integer; got {k!r}.")
        exclude = None
        if isinstance(word, str):
            exclude = self.index(word)
            query = np.asarray(self._matrix[exclude], dtype=np.float32)
        else:
            query = np.asarray(word, dtype=np.float32)
            if query.shape != (self.dim,):
                raise ValueError(
                    f"A query vector must have shape ({self.dim},); got {query.shape}."
                )
        query_norm = float(np.linalg.norm(query))
        scores = np.zeros(len(self), dtype=np.float32)
        if query_norm > 0.0:
            query = query / query_norm
            for start in range(0, len(self), _ROWS_PER_STEP):
                rows = np.asarray(self._matrix[start:start + _ROWS_PER_STEP], dtype=np.float32)
                scores[start:start + len(rows)] = rows @ query
            scores *= self._row_norms_inverse()
        if exclude is not None:
            scores[exclude] = -np.inf
        k = min(int(k), len(self) - (exclude is not None))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        words = self.words
        return [(words[row], float(scores[row])) for row in top]

    def _row_norms_inverse(self):
        if self._unit_norms is None:
            norms = np.empty(len(self), dtype=np.float32)
            for start in range(0, len(self), _ROWS_PER_STEP):
                rows = np.asarray(self._matrix[start:start + _ROWS_PER_STEP], dtype=np.float32)
                norms[start:start + len(rows)] = np.sqrt(np.einsum("ij,ij->i", rows, rows))
            with np.errstate(divide="ignore"):
                self._unit_norms = np.where(norms > 0, 1.0 / norms, 0.0).astype(np.float32)
        return self._unit_norms

    # ------------------------------------------------------------- native I/O

    def save(self, path):
        """Save in the native format, which `WordVectors.load` memory-maps.

        Args:
            path: a folder (created if needed) that receives `vectors.npy`
                (the matrix as float32) and `vocab.txt` (one word per line,
                UTF-8). A path ending in `.npy` is used as a prefix instead:
                `x.npy` + `x.vocab.txt`.

        Returns:
            The path of the written `.npy` file.
        """
        path = os.fspath(path)
        vectors_path, vocab_path = _native_paths(path, for_writing=True)
        words = self.words
        for row, word in enumerate(words):
            if "\n" in word:
                raise ValueError(
                    f"Word {row} ({word!r}) contains a newline and cannot be stored "
                    "one per line in vocab.txt; remove or replace it first."
                )
        directory = os.path.dirname(vectors_path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # Write to temporary names and rename: saving over the files that this
        # very object memory-maps must not truncate them under our feet.
        temporary_vectors = vectors_path + ".tmp.npy"
        temporary_vocab = vocab_path + ".tmp"
        with open(temporary_vectors, "wb") as f:
            np.save(f, np.ascontiguousarray(self._matrix, dtype=np.float32), allow_pickle=False)
        with open(temporary_vocab, "wb") as f:
            if words:
                f.write("\n".join(words).encode("utf-8"))
                f.write(b"\n")
        os.replace(temporary_vectors, vectors_path)
        os.replace(temporary_vocab, vocab_path)
        return vectors_path

    @classmethod
    def from_glove_package(cls, folder, vocabulary=None, dtype="float32"):
        """Read the GloVe layout of the `glove50` asset.

        The folder holds `<name>_emb.npy` (the float matrix, memory-mapped) and
        `<name>_index.parquet` (one word per row, column `index`, in matrix
        order), e.g. `glove_6B_50d_emb.npy` + `glove_6B_index.parquet`.

        Example:

        ```python
        import ktransfer
        vectors = WordVectors.from_glove_package(ktransfer.assets.path("glove50"))
        ```
        """
        folder = os.fspath(folder)
        dtype = _check_dtype(dtype)
        vocabulary = _check_vocabulary(vocabulary)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"GloVe package folder not found: {folder!r}.")
        matrix_path, index_path = _glove_package_files(folder)
        if matrix_path is None or index_path is None:
            raise WordVectorsFormatError(
                folder,
                "expected one '*_emb.npy' matrix and one '*_index.parquet' word index "
                f"in the folder; found {sorted(os.listdir(folder))}.",
                "point to the folder of the GloVe asset (`ktransfer.assets.path("
                "'glove50')`) or fetch it again with `ktransfer assets fetch glove50`.",
            )
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(index_path)
        if "index" in table.column_names:
            column = table.column("index")
        else:
            text_columns = [
                name for name, field in zip(table.column_names, table.schema)
                if pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
            ]
            if len(text_columns) != 1:
                raise WordVectorsFormatError(
                    index_path,
                    f"cannot tell which column holds the words (columns: {table.column_names}).",
                    "name the word column 'index'.",
                )
            column = table.column(text_columns[0])
        words = column.combine_chunks().cast(pa.string())
        if words.null_count:
            raise WordVectorsFormatError(
                index_path, f"{words.null_count} words are missing (null).",
                "fetch the asset again with `ktransfer assets fetch glove50 --force`.",
            )
        matrix = _load_npy(matrix_path)
        if len(words) != matrix.shape[0]:
            raise WordVectorsFormatError(
                folder,
                f"the word index has {len(words)} words but the matrix has "
                f"{matrix.shape[0]} rows.",
                "fetch the asset again with `ktransfer assets fetch glove50 --force`.",
            )
        words = _check_unique_arrow(words, index_path)
        return _select(matrix, words, vocabulary, dtype, source=folder)

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, path, format="auto", vocabulary=None, dtype="float32",
             unicode_errors="strict"):
        """Read word vectors from a file (or native folder).

        Args:
            path: a text file (`glove.6B.50d.txt`, `.vec`, word2vec text; may be
                gzip-compressed), a binary word2vec file
                (`GoogleNews-vectors-negative300.bin`), a native folder written
                by `save` (or its `.npy` file), or the GloVe asset folder.
            format: `"auto"` (default: detected from the bytes), `"glove"`,
                `"word2vec"`, `"fasttext"` or `"npy"`.
            vocabulary: optional iterable of words. Only those rows are kept
                (in file order), so memory stays proportional to them; words
                of `vocabulary` missing from the file are simply absent.
            dtype: floating dtype of the matrix (`"float32"`, `"float16"`,
                `"float64"`).
            unicode_errors: how to decode words that are not valid UTF-8:
                `"strict"` (default, raise an error naming the line),
                `"replace"` or `"ignore"`. Some word2vec files cut multi-byte
                characters in the middle and need `"replace"`.

        Returns:
            A `WordVectors`. Native files come back memory-mapped (read-only)
            unless `vocabulary` or a different `dtype` is given.

        Raises:
            FileNotFoundError: `path` does not exist.
            WordVectorsFormatError (a `ValueError`): the file is malformed;
                the message names the line and the fix.
            ValueError: an invalid argument (unknown format, dtype, ...).

        Example:

        ```python
        vectors = WordVectors.load("glove.6B.50d.txt")          # ~0.5 s
        vectors.save("glove50")                                 # once
        vectors = WordVectors.load("glove50")                   # ~10 ms
        small = WordVectors.load("glove.6B.50d.txt", vocabulary=["movie", "good"])
        ```
        """
        if format not in FORMATS:
            raise ValueError(
                f"Unknown word vectors format {format!r}. Use one of {list(FORMATS)} "
                "('auto' detects it from the file)."
            )
        dtype = _check_dtype(dtype)
        vocabulary = _check_vocabulary(vocabulary)
        try:
            codecs.lookup_error(unicode_errors)
        except (LookupError, TypeError):
            raise ValueError(
                f"Unknown `unicode_errors` handler {unicode_errors!r}; use 'strict', "
                "'replace' or 'ignore'."
            ) from None
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Word vectors file not found: {path!r}.")

        if os.path.isdir(path):
            if format not in ("auto", "npy"):
                raise WordVectorsFormatError(
                    path, f"this is a folder, not a {format} file.",
                    "pass the file inside it, or format='npy' for a folder written "
                    "by `WordVectors.save`.",
                )
            if _glove_package_files(path)[0] is not None and not os.path.isfile(
                os.path.join(path, VECTORS_FILE)
            ):
                return cls.from_glove_package(path, vocabulary=vocabulary, dtype=dtype)
            return _load_native(path, vocabulary, dtype)

        with open(path, "rb") as f:
            magic = f.read(8)
        if magic.startswith(_NPY_MAGIC) and format not in ("auto", "npy"):
            raise WordVectorsFormatError(
                path, f"this is a NumPy .npy file, not a {format} file.",
                "pass format='npy' (or 'auto') for files written by `WordVectors.save`.",
            )
        if magic.startswith(_NPY_MAGIC) or format == "npy":
            return _load_native(path, vocabulary, dtype)
        if magic.startswith(_FASTTEXT_BIN_MAGIC):
            raise WordVectorsFormatError(
                path, "this is a fastText model (.bin), not a vectors file.",
                "use the `.vec` file published next to it (text format), or export "
                "vectors from the model with fastText's `print-word-vectors`.",
            )
        if magic.startswith(_ZIP_MAGIC):
            raise WordVectorsFormatError(
                path, "this is a zip archive (GloVe is distributed as glove.6B.zip).",
                "unzip it and load one of the .txt files inside, e.g. "
                "`unzip glove.6B.zip glove.6B.300d.txt`.",
            )
        layout = _sniff(path, format)
        if layout.binary:
            return _load_word2vec_binary(path, layout, vocabulary, dtype, unicode_errors)
        return _load_text(path, layout, vocabulary, dtype, unicode_errors)


# ---------------------------------------------------------------- validation


def _check_dtype(dtype):
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(
            f"Invalid `dtype` {dtype!r}; use 'float32', 'float16' or 'float64'."
        ) from None
    if dtype.kind != "f":
        raise ValueError(f"`dtype` must be a floating type (e.g. 'float32'); got {dtype}.")
    return dtype


def _check_vocabulary(vocabulary):
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


def _build_index(words, source):
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


def _check_unique_arrow(words, source):
    try:
        hashes = _word_hashes(words)
    except _EmptyWord as error:
        raise WordVectorsFormatError(
            source, f"word {error.row} is an empty string.", "words must be non-empty."
        ) from None
    if _repeated_rows(words, hashes) is not None:
        _build_index(words.to_pylist(), source)  # raises, naming the rows
    return words


_HASH_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime


def _word_hashes(words):
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
        raise _EmptyWord(int(np.argmin(lengths)))
    data = np.frombuffer(words.buffers()[2], dtype=np.uint8)[start:start + offsets[-1]]
    position = np.arange(len(data), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    powers = np.cumprod(np.full(int(lengths.max()), _HASH_MULTIPLIER, dtype=np.uint64))
    terms = (data.astype(np.uint64) + np.uint64(1)) * powers[position]  # wraps mod 2**64
    return np.add.reduceat(terms, offsets[:-1]) ^ lengths.astype(np.uint64)


def _repeated_rows(words, hashes):
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


class _EmptyWord(Exception):
    def __init__(self, row):
        super().__init__(row)
        self.row = row


# ------------------------------------------------------------------- native


def _native_paths(path, for_writing=False):
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


def _load_npy(path):
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


def _load_native(path, vocabulary, dtype):
    vectors_path, vocab_path = _native_paths(path)
    for required in (vectors_path, vocab_path):
        if not os.path.isfile(required):
            raise WordVectorsFormatError(
                path, f"the native format needs {os.path.basename(required)!r} "
                f"({required}), which is missing.",
                "pass a folder written by `WordVectors.save` (vectors.npy + vocab.txt).",
            )
    matrix = _load_npy(vectors_path)
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
    # valid WordVectors): loading stays at a few milliseconds.
    if vocabulary is None and dtype == matrix.dtype:
        return WordVectors._create(
            matrix, make_words=lambda: text.split("\n") if text else [], source=vocab_path
        )
    return _select(matrix, text.split("\n") if text else [], vocabulary, dtype,
                   source=vocab_path)


def _select(matrix, words, vocabulary, dtype, source):
    """Keep only the rows of `vocabulary` (if any) and cast to `dtype`."""
    if vocabulary is None:
        if matrix.dtype != dtype:
            matrix = matrix.astype(dtype)
        if isinstance(words, list):
            return WordVectors._create(matrix, words=words, source=source)
        return WordVectors._create(matrix, word_array=words, source=source)
    if not isinstance(words, list):
        import pyarrow.compute as pc

        keep = pc.is_in(words, value_set=_string_array(sorted(vocabulary)))
        rows = _true_positions(keep)
        kept_words = words.filter(keep).to_pylist()
    else:
        rows = np.array(
            [row for row, word in enumerate(words) if word in vocabulary], dtype=np.int64
        )
        kept_words = [words[row] for row in rows]
    return WordVectors._create(
        np.asarray(matrix[rows], dtype=dtype), words=kept_words, source=source
    )


def _glove_package_files(folder):
    names = sorted(os.listdir(folder))
    matrices = [n for n in names if n.endswith("_emb.npy")]
    indexes = [n for n in names if n.endswith("_index.parquet")]
    if len(matrices) != 1 or len(indexes) != 1:
        return None, None
    return os.path.join(folder, matrices[0]), os.path.join(folder, indexes[0])


# ---------------------------------------------------------------- sniffing


@dataclasses.dataclass
class _Layout:
    """What `_sniff` learned about a text or binary vectors file."""

    binary: bool
    compressed: bool
    dim: int
    count: int | None  # from the header, None without one
    data_offset: int  # bytes before the first vector line (BOM, header)
    first_line: int  # line number of the first vector line
    trailing_space: bool  # lines end with " " (fastText .vec, word2vec C tool)
    bytes_per_line: float  # estimate, for preallocation


def _open_binary(path, compressed):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _sniff(path, format):
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    with _open_binary(path, compressed) as f:
        try:
            sample = f.read(_SNIFF_SIZE)
            while b"\n" not in sample and len(sample) < (64 << 20):
                more = f.read(_SNIFF_SIZE)  # very long first lines: read on
                if not more:
                    break
                sample += more
        except (OSError, EOFError) as error:
            raise WordVectorsFormatError(
                path, f"cannot decompress the gzip file ({error}).",
                "download the file again (it is truncated or corrupt).",
            ) from None
    offset = len(_UTF8_BOM) if sample.startswith(_UTF8_BOM) else 0
    if not sample[offset:].strip():
        raise WordVectorsFormatError(
            path, "the file is empty (no vectors)." if not sample else
            "the file contains only blank lines (no vectors).",
            "download or write the file again.", line=1,
        )
    end = sample.find(b"\n", offset)
    first = sample[offset:] if end < 0 else sample[offset:end]
    header = _parse_header(first)
    after_header = b"" if end < 0 else sample[end + 1:]
    binary = header is not None and _looks_binary(after_header, header[1])
    if header is not None and not binary and not _first_line_fits(after_header, header[1]):
        header = None  # e.g. a GloVe file of dim 1 whose first line is "2 3"
    if b"\x00" in first:  # NUL bytes further on are located by the text parser
        raise WordVectorsFormatError(
            path, "the file holds binary data, not text vectors.",
            "pass a GloVe/word2vec/fastText vectors file; binary word2vec files "
            "start with a 'count dim' header (use format='word2vec' or 'auto').",
            line=1,
        )

    if format == "glove" and header is not None:
        kind = "a binary word2vec file" if binary else "word2vec/fastText text"
        raise WordVectorsFormatError(
            path, f"line 1 is a 'count dim' header ({first.decode(errors='replace').strip()!r}): "
            f"this is {kind}, not GloVe text.",
            "pass format='word2vec' (or 'auto').", line=1,
        )
    if format in ("word2vec", "fasttext") and header is None:
        raise WordVectorsFormatError(
            path, f"{format} files start with a 'count dim' header line; line 1 is "
            f"{first[:60].decode(errors='replace')!r}.",
            "pass format='glove' (or 'auto') for text files without a header.", line=1,
        )
    if format == "fasttext" and binary:
        raise WordVectorsFormatError(
            path, "this is a binary word2vec file, not fastText .vec text.",
            "pass format='word2vec' (or 'auto').", line=2,
        )

    if header is not None:
        count, dim = header
        data_offset = end + 1
        first_line = 2
        data_sample = after_header
    else:
        count = None
        data_offset = offset
        first_line = 1
        data_sample = sample[offset:]
        dim = _guess_dim(data_sample, path)
    line_end = data_sample.find(b"\n")
    first_data_line = data_sample if line_end < 0 else data_sample[:line_end]
    trailing_space = not binary and first_data_line.rstrip(b"\r").endswith(b" ")
    lines_in_sample = max(1, data_sample.count(b"\n"))
    return _Layout(
        binary=binary,
        compressed=compressed,
        dim=dim,
        count=count,
        data_offset=data_offset,
        first_line=first_line,
        trailing_space=trailing_space,
        bytes_per_line=max(1.0, len(data_sample) / lines_in_sample),
    )


def _parse_header(line):
    fields = line.split()
    if len(fields) == 2 and all(field.isdigit() for field in fields):
        count, dim = int(fields[0]), int(fields[1])
        if dim > 0:
            return count, dim
    return None


def _looks_binary(data, dim):
    """Whether the bytes after a `count dim` header hold binary records.

    A text line is a word followed by numbers up to the newline; a binary
    record is a word, a space and `dim` raw float32, whose bytes essentially
    never spell only numbers (or contain no NUL) up to the next newline byte.
    """
    if b"\x00" in data[: 4 * dim + 4096]:
        return True
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    space = line.find(b" ")
    if space < 0:
        return False  # a malformed text line; the text parser names it
    numbers = line[space + 1:]
    return not numbers.strip() or any(byte not in _TEXT_NUMBER_BYTES for byte in numbers)


def _first_line_fits(data, dim):
    line = data.split(b"\n", 1)[0].rstrip(b"\r ")
    return not line or len(line.split(b" ")) >= dim + 1


def _guess_dim(sample, path):
    """Vector size of a header-less file: the number of values on line 1,
    unless line 1 is longer than most lines (a word that contains spaces)."""
    lines = sample.split(b"\n")
    if len(lines) > 1:
        lines = lines[:-1]  # the last one may be cut by the sample
    counts = [len(line.rstrip(b"\r ").split(b" ")) - 1 for line in lines[:200] if line.strip()]
    if not counts:  # only the (cut) last line of the sample has content
        counts = [len(sample.strip().split(b"\n")[0].rstrip(b"\r ").split(b" ")) - 1]
    first = counts[0]
    most_common = collections.Counter(counts).most_common(1)[0][0]
    dim = min(first, most_common)
    if dim < 1:
        raise WordVectorsFormatError(
            path, "line 1 has a word but no numbers.",
            "GloVe text has one word and its vector per line ('word v1 v2 ... vd').",
            line=1,
        )
    return dim


# --------------------------------------------------------------- text files


class _RowBuffer:
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


@dataclasses.dataclass
class _Block:
    """One parsed block of text lines."""

    words: object  # pyarrow StringArray of the kept rows
    values: object  # list of per-dimension arrays (fast path) or ndarray [rows, dim]
    num_lines: int  # physical lines in the block
    num_vectors: int  # vector lines in the block, before the vocabulary filter
    hashes: object  # `_word_hashes(words)`, computed in the worker thread
    row_lines: object = None  # line offset of each kept row; None: 0, 1, 2, ...


class _LineError(Exception):
    """A malformed line, located by its offset inside a block; `_load_text`
    adds the block's first line number and the path."""

    def __init__(self, offset, problem, fix):
        super().__init__(problem)
        self.offset = offset
        self.problem = problem
        self.fix = fix


class _NeedsSlowPath(Exception):
    pass


def _usable_cpus(limit=4):
    """Parser threads: the CPUs this process may run on, at most `limit`."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return max(1, min(limit, count))


def _load_text(path, layout, vocabulary, dtype, unicode_errors):
    import pyarrow as pa

    dim = layout.dim
    parser = _TextBlockParser(layout, dtype, vocabulary, unicode_errors)
    file_size = os.path.getsize(path)
    expected_size = file_size * (4 if layout.compressed else 1)
    capacity = int(expected_size / layout.bytes_per_line * 1.1) + 16
    if layout.count is not None:
        capacity = min(capacity, layout.count)
    if vocabulary is not None:
        capacity = min(capacity, len(vocabulary))
    rows = _RowBuffer(capacity, dim, dtype)
    word_pieces, hash_pieces = [], []
    block_starts = []  # (first row, first line, row line offsets or None)
    line = layout.first_line  # line number of the next block's first line
    num_vectors = 0

    def add(block):
        nonlocal line, num_vectors
        count = len(block.words)
        target = rows.reserve(count)
        if isinstance(block.values, list):
            if count:
                np.stack(block.values, axis=1, out=target, casting="same_kind")
        else:
            target[...] = block.values
        block_starts.append((rows.size, line, block.row_lines))
        rows.size += count
        word_pieces.append(block.words)
        hash_pieces.append(block.hashes)
        line += block.num_lines
        num_vectors += block.num_vectors

    try:
        with _open_binary(path, layout.compressed) as stream:
            if layout.compressed:
                stream.read(layout.data_offset)
            else:
                stream.seek(layout.data_offset)
            blocks = _line_blocks(stream, _BLOCK_SIZE)
            workers = _usable_cpus()
            if workers == 1 or file_size <= _BLOCK_SIZE:
                for block in blocks:
                    add(parser.parse(block))
            else:
                # Blocks are parsed in parallel (pyarrow releases the GIL) and
                # added in file order; at most `workers + 1` are in flight.
                with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                    pending = collections.deque()
                    try:
                        for block in blocks:
                            pending.append(pool.submit(parser.parse, block))
                            if len(pending) > workers:
                                add(pending.popleft().result())
                        while pending:
                            add(pending.popleft().result())
                    finally:
                        for future in pending:
                            future.cancel()
    except _LineError as error:
        raise WordVectorsFormatError(
            path, error.problem, error.fix, line=line + error.offset
        ) from None
    except (OSError, EOFError) as error:
        if not layout.compressed:
            raise
        raise WordVectorsFormatError(
            path, f"cannot decompress the gzip file after line {line - 1} ({error}).",
            "download the file again (it is truncated or corrupt).",
        ) from None

    if layout.count is not None and num_vectors != layout.count:
        raise WordVectorsFormatError(
            path,
            f"the header ('{layout.count} {dim}') announces {layout.count} vectors "
            f"but the file has {num_vectors} (lines 2-{line - 1}).",
            "the file is truncated or its header is wrong: download it again, or "
            f"correct line 1 to '{num_vectors} {dim}'.",
            line=1,
        )
    if num_vectors == 0 and layout.count is None:
        raise WordVectorsFormatError(
            path, "the file has no vector lines.", "download or write the file again.",
            line=layout.first_line,
        )
    matrix = rows.finish()
    if len(word_pieces) == 1:
        words = word_pieces[0]
    elif word_pieces:
        words = pa.concat_arrays(word_pieces)
    else:
        words = _string_array([])
    hashes = np.concatenate(hash_pieces) if hash_pieces else np.empty(0, np.uint64)
    words, matrix = _drop_duplicates(path, words, matrix, hashes, block_starts)
    return WordVectors._create(matrix, word_array=words, source=path)


def _drop_duplicates(path, words, matrix, hashes, block_starts):
    """Keep the first occurrence of a repeated word (as gensim does) and warn:
    published files are not always clean and cannot easily be edited."""
    repeated = _repeated_rows(words, hashes)
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


def _line_blocks(stream, block_size):
    """Yield blocks of whole lines as `bytearray`s (the last may lack its
    newline). Each block is read straight into its own buffer (`readinto`),
    after the partial line carried over from the previous block."""
    carry = b""
    while True:
        block = bytearray(len(carry) + block_size)
        block[:len(carry)] = carry
        with memoryview(block) as view:
            size = len(carry) + stream.readinto(view[len(carry):])
        if size == len(carry):  # end of file
            if carry:
                yield bytearray(carry)
            return
        cut = block.rfind(b"\n", 0, size) + 1
        if cut == 0:  # a line longer than the block: read on
            carry = bytes(block[:size])
            continue
        carry = bytes(block[cut:size])
        del block[cut:]
        yield block


# pyarrow's `to_numpy` and `pa.array(list)` import pandas on first use (0.2 s
# and ~50 MB), so the loaders convert through raw buffers instead.


def _to_numpy(column):
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


def _string_array(words):
    """A pyarrow StringArray from a list of str."""
    import pyarrow as pa

    encoded = [word.encode("utf-8") for word in words]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return pa.LargeStringArray.from_buffers(
        len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))
    ).cast(pa.string())


def _true_positions(mask):
    """Row numbers where a pyarrow BooleanArray is true."""
    import pyarrow.compute as pc

    return _to_numpy(pc.indices_nonzero(mask)).astype(np.int64)


class _TextBlockParser:
    """Parses one block of text lines into words and values; thread-safe."""

    def __init__(self, layout, dtype, vocabulary, unicode_errors):
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        self.dim = layout.dim
        self.trailing_space = layout.trailing_space
        self.unicode_errors = unicode_errors
        self.header = layout.count is not None
        self.value_type = pa.float64() if dtype == np.float64 else pa.float32()
        self.vocabulary = vocabulary
        self.value_set = None if vocabulary is None else _string_array(sorted(vocabulary))
        value_names = [f"v{i}" for i in range(self.dim)]
        self.names = ["word"] + value_names + (["trailing"] if self.trailing_space else [])
        self.parse_options = pa_csv.ParseOptions(
            delimiter=" ", quote_char=False, double_quote=False, escape_char=False,
            newlines_in_values=False, ignore_empty_lines=False,
        )
        # The empty field after a trailing space is read (as cheap binary) to
        # check that it is empty: a line with one value too many must not
        # have its last value silently dropped.
        self.convert_options = pa_csv.ConvertOptions(
            column_types={
                "word": pa.string(), **{n: self.value_type for n in value_names},
                "trailing": pa.binary(),
            },
            include_columns=self.names,
            null_values=[], true_values=[], false_values=[],
            strings_can_be_null=False, quoted_strings_can_be_null=False,
            check_utf8=True,
        )
        self.number_options = pa_csv.ConvertOptions(
            column_types={n: self.value_type for n in value_names},
            null_values=[], true_values=[], false_values=[],
        )

    def parse(self, block):
        """Fast path (pyarrow); any block it rejects goes to `_parse_slowly`,
        which handles words with spaces and names the line of any error."""
        import pyarrow as pa

        try:
            if b"\x00" in block:
                raise _NeedsSlowPath()
            table = self._read_csv(block, self.names, self.convert_options)
            num_lines = table.num_rows
            # With quoting off, pyarrow ends rows only at "\n", "\r\n" or a
            # lone "\r"; only the last would make rows and lines differ.
            if b"\r" in block and num_lines != block.count(b"\n") + (not block.endswith(b"\n")):
                raise _NeedsSlowPath()
        except (pa.ArrowInvalid, _NeedsSlowPath):
            return self._parse_slowly(block)
        if self.trailing_space:
            import pyarrow.compute as pc

            if pc.max(pc.binary_length(table.column("trailing"))).as_py():
                return self._parse_slowly(block)  # a line with a value too many
        words = table.column(0).combine_chunks()
        try:
            hashes = _word_hashes(words)
        except _EmptyWord:  # a line starting with a space: located below
            return self._parse_slowly(block)
        row_lines = None
        if self.value_set is not None:
            import pyarrow.compute as pc

            keep = pc.is_in(words, value_set=self.value_set)
            row_lines = _true_positions(keep)
            table = table.filter(keep)
            words = words.filter(keep)
            hashes = hashes[row_lines]
        values = [_to_numpy(table.column(j)) for j in range(1, self.dim + 1)]
        return _Block(words, values, num_lines=num_lines, num_vectors=num_lines,
                      hashes=hashes, row_lines=row_lines)

    def _read_csv(self, data, names, convert_options):
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        return pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(
                column_names=names, block_size=len(data) + 1, use_threads=False
            ),
            parse_options=self.parse_options,
            convert_options=convert_options,
            memory_pool=pa.system_memory_pool(),  # freed blocks go back to the OS
        )

    def _parse_slowly(self, block):
        """Line-by-line parse of a block: words may contain spaces (the last
        `dim` fields are the numbers, everything before them is the word),
        blank lines are skipped, and the first malformed line raises
        `_LineError`. Numbers are still converted by pyarrow, in one call."""
        block = bytes(block)
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines.pop()
            cut_line = -1
        else:
            cut_line = len(lines) - 1  # the file's last line, without its newline
        offsets, words, numbers = [], [], []  # one entry per vector line
        for offset, raw in enumerate(lines):
            try:
                parsed = self._split_line(offset, raw, cut_line)
            except _LineError:
                self._check_numbers(offsets, words, numbers, cut_line)  # earlier errors first
                raise
            if parsed is not None:  # None: a blank line
                offsets.append(offset)
                words.append(parsed[0])
                numbers.append(parsed[1])
        values = self._parse_numbers(offsets, words, numbers, cut_line)
        keep = [row for row, word in enumerate(words)
                if self.vocabulary is None or word in self.vocabulary]
        word_array = _string_array([words[row] for row in keep])
        return _Block(
            word_array, values[keep], num_lines=len(lines), num_vectors=len(words),
            hashes=_word_hashes(word_array),
            row_lines=np.asarray(offsets, dtype=np.int64)[keep],
        )

    def _split_line(self, offset, raw, cut_line):
        """(word, list of number strings) of one line, None for a blank line."""
        dim = self.dim
        if b"\x00" in raw:
            raise _LineError(
                offset, "the line holds binary data (NUL bytes), not text.",
                "if this is a binary word2vec file, pass format='word2vec' or "
                "'auto'; a text vectors file cannot contain NUL bytes.",
            )
        try:
            text = raw.decode("utf-8", errors=self.unicode_errors)
        except UnicodeDecodeError as error:
            raise _LineError(
                offset,
                f"byte 0x{raw[error.start]:02x} at column {error.start + 1} is not "
                "valid UTF-8.",
                "convert the file to UTF-8, or pass unicode_errors='replace' (or "
                "'ignore') to load it anyway.",
            ) from None
        text = text.rstrip("\r")
        if self.trailing_space or text.endswith(" "):
            text = text.rstrip(" ")
        if not text.strip(" "):
            return None
        fields = text.split(" ")
        num_values = len(fields) - 1
        wrong_count_fix = (
            f"every line must hold a word and exactly {dim} numbers: the file mixes "
            "vector sizes or this line is corrupt; remove or repair the line."
        )
        if num_values > dim:
            if all(_NUMBER.fullmatch(field) for field in fields[1:len(fields) - dim]):
                raise _LineError(
                    offset,
                    f"the line has {num_values} values after the word {fields[0][:40]!r}, "
                    f"expected {dim} "
                    f"({'from the header' if self.header else 'as on the lines before'}).",
                    wrong_count_fix,
                )
            # Words with spaces, as in GloVe 840B ("at name@domain.com").
            word = " ".join(fields[:len(fields) - dim])
        elif num_values < dim:
            truncated = offset == cut_line
            raise _LineError(
                offset,
                f"the line has {num_values} values after the word {fields[0][:40]!r}, "
                f"expected {dim}" + (
                    " (it is the last line and has no newline: the file looks truncated)."
                    if truncated else "."
                ),
                "download or write the file again; an interrupted download cuts the "
                "last line." if truncated else wrong_count_fix,
            )
        else:
            word = fields[0]
        if not word:
            raise _LineError(
                offset, "the line starts with a space: the word is empty.",
                "remove the leading space (lines are 'word v1 ... vd').",
            )
        return word, fields[len(fields) - dim:]

    def _check_numbers(self, offsets, words, numbers, cut_line):
        """Raise `_LineError` at the first value that is not a number."""
        for offset, word, values in zip(offsets, words, numbers):
            for position, field in enumerate(values):
                if not _NUMBER.fullmatch(field):
                    truncated = offset == cut_line and position == len(values) - 1
                    raise _LineError(
                        offset,
                        f"value {position + 1} of word {word[:40]!r} is {field[:40]!r}, "
                        "not a number" + (" (the file looks truncated)." if truncated else "."),
                        "download or write the file again." if truncated else
                        "repair or remove the line; values are space-separated "
                        "decimal numbers.",
                    )

    def _parse_numbers(self, offsets, words, numbers, cut_line):
        """Convert the number strings with the same pyarrow conversion as the
        fast path (identical rounding); locate the line of a bad value."""
        import pyarrow as pa

        if not numbers:
            return np.empty((0, self.dim), dtype=np.float32)
        data = "\n".join([" ".join(values) for values in numbers]).encode("utf-8") + b"\n"
        try:
            table = self._read_csv(data, [f"v{i}" for i in range(self.dim)], self.number_options)
        except pa.ArrowInvalid:
            self._check_numbers(offsets, words, numbers, cut_line)
            # Only reached for a spelling Python accepts and pyarrow rejects.
            dtype = np.float64 if self.value_type == pa.float64() else np.float32
            return np.array(numbers, dtype=np.float64).astype(dtype)
        return np.stack([_to_numpy(column) for column in table.columns], axis=1)


# --------------------------------------------------------- binary word2vec


def _load_word2vec_binary(path, layout, vocabulary, dtype, unicode_errors):
    """The GoogleNews format: a `count dim` header line, then per word the
    UTF-8 word, a space and `dim` little-endian float32 (optionally followed
    by a newline). Words are found with `bytes.find` and the vectors of a
    whole block are gathered with one `b"".join` + `np.frombuffer`."""
    import pyarrow as pa

    count, dim = layout.count, layout.dim
    record_size = 4 * dim
    # At least a 1-byte word and a space per record: caps a lying header.
    expected_size = os.path.getsize(path) * (4 if layout.compressed else 1)
    capacity = min(count, expected_size // (record_size + 2) + 16)
    if vocabulary is not None:
        capacity = min(capacity, len(vocabulary))
    rows = _RowBuffer(capacity, dim, dtype)
    word_pieces, hash_pieces, block_starts = [], [], []
    record = 0  # records read so far
    buffer, position, buffer_offset = b"", 0, layout.data_offset  # file offset of buffer[0]

    def where():
        return f"record {record + 1} (byte {buffer_offset + position})"

    try:
        with _open_binary(path, layout.compressed) as stream:
            stream.read(layout.data_offset)
            at_end = False
            while True:
                words, starts = [], []
                while record < count:
                    while position < len(buffer) and buffer[position] == 10:  # b"\n"
                        position += 1
                    space = buffer.find(b" ", position)
                    if space < 0 or space + 1 + record_size > len(buffer):
                        if space < 0 and len(buffer) - position > _SNIFF_SIZE:
                            raise WordVectorsFormatError(
                                path, "no space after the word within 64 KB: this is not "
                                "binary word2vec data.",
                                "check the file format (format='glove' for text without "
                                "a header) or download the file again.", where=where(),
                            )
                        break  # the record continues in the next block
                    if space == position:
                        raise WordVectorsFormatError(
                            path, "empty word: the data is misaligned (wrong dimension in "
                            "the header, or not a binary word2vec file).",
                            "download the file again or check its header.", where=where(),
                        )
                    try:
                        word = buffer[position:space].decode("utf-8", errors=unicode_errors)
                    except UnicodeDecodeError as error:
                        raise WordVectorsFormatError(
                            path, "the word is not valid UTF-8 (byte "
                            f"0x{buffer[position + error.start]:02x}).",
                            "pass unicode_errors='replace' (or 'ignore'): some word2vec "
                            "files cut multi-byte characters.", where=where(),
                        ) from None
                    if vocabulary is None or word in vocabulary:
                        words.append(word)
                        starts.append(space + 1)
                    position = space + 1 + record_size
                    record += 1
                if words:
                    with memoryview(buffer) as view:
                        data = b"".join(view[start:start + record_size] for start in starts)
                    values = np.frombuffer(data, dtype="<f4").reshape(-1, dim)
                    rows.reserve(len(words))[...] = values
                    block_starts.append((rows.size, None, None))
                    rows.size += len(words)
                    word_pieces.append(_string_array(words))
                    hash_pieces.append(_word_hashes(word_pieces[-1]))
                if record == count or at_end:
                    break
                more = stream.read(_BLOCK_SIZE)
                at_end = not more
                buffer_offset += position
                buffer = buffer[position:] + more
                position = 0
            rest = buffer[position:].strip()
            if record == count and not rest:
                rest = stream.read(_SNIFF_SIZE).strip()
    except (OSError, EOFError) as error:
        if not layout.compressed:
            raise
        raise WordVectorsFormatError(
            path, f"cannot decompress the gzip file ({error}).",
            "download the file again (it is truncated or corrupt).", where=where(),
        ) from None
    if record < count:
        raise WordVectorsFormatError(
            path,
            f"the header ('{count} {dim}') announces {count} vectors but the file "
            f"ends inside vector {record + 1}: it is truncated (or the header is wrong).",
            f"download the file again, or correct the header to '{record} {dim}'.",
            where=where(),
        )
    if rest:
        raise WordVectorsFormatError(
            path,
            f"the header ('{count} {dim}') announces {count} vectors but more data "
            "follows them.",
            f"correct the header count on line 1 (more than {count} vectors follow), "
            "or download the file again.",
            where=f"after record {count} (byte {buffer_offset + position})",
        )
    matrix = rows.finish()
    words = pa.concat_arrays(word_pieces) if word_pieces else _string_array([])
    hashes = np.concatenate(hash_pieces) if hash_pieces else np.empty(0, np.uint64)
    words, matrix = _drop_duplicates(path, words, matrix, hashes, block_starts)
    return WordVectors._create(matrix, word_array=words, source=path)
