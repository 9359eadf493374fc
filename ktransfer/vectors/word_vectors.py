"""`WordVectors`: pretrained word vectors (GloVe, word2vec, fastText), fast loading and lookup.

`WordVectors` holds a vocabulary and a `[num_words, dim]` matrix. It reads the
common published formats and a native format that loads memory-mapped in
milliseconds, one module per format:

| `format=`    | Files                                                         | module |
|--------------|---------------------------------------------------------------|--------|
| `"glove"`    | text, no header: `word v1 ... vd` per line (`glove.6B.50d.txt`) | `text_format` |
| `"word2vec"` | text with a `count dim` header line, or the binary GoogleNews  | `text_format`, |
|              | format (header, then `word` + space + `dim` float32 per word)  | `word2vec_binary` |
| `"fasttext"` | `.vec` text: like word2vec text (header line)                 | `text_format` |
| `"npy"`      | native: a folder with `vectors.npy` + `vocab.txt` (`save`)     | `native` |
| `"auto"`     | detected from the file's bytes (magic, header, binary data)    | `formats` |

The `glove50` asset's folder (`*_emb.npy` + `*_index.parquet`) is read by
`glove_package`; what the readers share (checks, row buffers, pyarrow
helpers) is in `common`. Every reader refuses values that are not finite
(NaN, inf), naming the file and line.

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
"""

import codecs
import os

import numpy as np

from ktransfer.vectors.common import build_index
from ktransfer.vectors.common import check_dtype
from ktransfer.vectors.common import check_finite_vectors
from ktransfer.vectors.common import check_vocabulary
from ktransfer.vectors.formats import FORMATS
from ktransfer.vectors.formats import VECTORS_FILE  # noqa: F401  (public here too, as before)
from ktransfer.vectors.formats import VOCAB_FILE  # noqa: F401
from ktransfer.vectors.formats import WordVectorsFormatError
from ktransfer.vectors.formats import detect
from ktransfer.vectors.glove_package import load_glove_package
from ktransfer.vectors.native import load_native
from ktransfer.vectors.native import save_native
from ktransfer.vectors.text_format import load_text
from ktransfer.vectors.word2vec_binary import load_word2vec_binary

__all__ = ["FORMATS", "WordVectors", "WordVectorsFormatError"]

_ROWS_PER_STEP = 1 << 16  # rows per matmul step in most_similar (bounded temporaries)


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
        check_finite_vectors(words, matrix)
        self._matrix = matrix
        self._words = words
        self._make_words = None
        self._source = None
        self._index = build_index(words, source=None)
        self._unit_norms = None

    @classmethod
    def from_validated(cls, matrix, words, source=None):
        """A `WordVectors` over data a format reader has already checked (no copy).

        For the readers of `ktransfer.vectors` (and new ones): `matrix` is a
        `[num_words, dim]` float array, kept as it is (a memory map stays
        one); `words` is a list of str, a pyarrow `StringArray`, or a
        function returning the list (the last two become a list on first
        use). Words are checked for uniqueness when the lookup index is
        first built, naming `source` (the file) in the error.

        Example:

        ```python
        import numpy as np
        from ktransfer.vectors import WordVectors
        vectors = WordVectors.from_validated(np.eye(2, dtype="float32"), ["cat", "dog"])
        vectors.index("dog")      # 1
        ```
        """
        vectors = cls.__new__(cls)
        vectors._matrix = matrix
        if isinstance(words, list):
            vectors._words, vectors._make_words = words, None
        elif callable(words):
            vectors._words, vectors._make_words = None, words
        else:  # a pyarrow StringArray
            vectors._words, vectors._make_words = None, words.to_pylist
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
            self._index = build_index(self.words, source=self._source)
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
        return save_native(path, self.words, self._matrix)

    @classmethod
    def from_glove_package(cls, folder, vocabulary=None, dtype="float32"):
        """Read the GloVe layout of the `glove50` asset.

        The folder holds `<name>_emb.npy` (the float matrix, memory-mapped) and
        `<name>_index.parquet` (one word per row, column `index`, in matrix
        order), e.g. `glove_6B_50d_emb.npy` + `glove_6B_index.parquet`
        (`ktransfer.vectors.glove_package`).

        Example:

        ```python
        import ktransfer
        from ktransfer.vectors import WordVectors
        vectors = WordVectors.from_glove_package(ktransfer.assets.path("glove50"))
        ```
        """
        matrix, words, source = load_glove_package(
            folder, check_vocabulary(vocabulary), check_dtype(dtype)
        )
        return cls.from_validated(matrix, words, source=source)

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
            WordVectorsFormatError (a `ValueError`): the file is malformed
                or holds a value that is not a finite number (NaN, inf); the
                message names the file, the line (or record) and the fix.
            ValueError: an invalid argument (unknown format, dtype, ...).

        Example:

        ```python
        from ktransfer.vectors import WordVectors
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
        dtype = check_dtype(dtype)
        vocabulary = check_vocabulary(vocabulary)
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

        kind, layout = detect(path, format)
        if kind == "glove_package":
            matrix, words, source = load_glove_package(path, vocabulary, dtype)
        elif kind == "native":
            matrix, words, source = load_native(path, vocabulary, dtype)
        elif kind == "word2vec_binary":
            matrix, words, source = load_word2vec_binary(
                path, layout, vocabulary, dtype, unicode_errors
            )
        else:
            matrix, words, source = load_text(path, layout, vocabulary, dtype, unicode_errors)
        return cls.from_validated(matrix, words, source=source)
