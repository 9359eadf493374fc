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

`WordVectors.from_encoder(bert_encoder)` reads a pretrained encoder's input
token embeddings instead: one static vector per piece of its subword
tokenizer (multilingual for multilingual-e5), with the tokenizer kept for
tokenising (`kt.encoders.WordVectorEncoder` uses it) and saved by `save`.

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
from ktransfer.vectors.native import native_paths
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
        self._tokenizer = None
        self._tokenizer_record = None

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
        vectors._tokenizer = None
        vectors._tokenizer_record = None
        return vectors

    # ------------------------------------------------------- from an encoder

    @classmethod
    def from_encoder(cls, encoder, tokenizer=None):
        """A pretrained encoder's input token embeddings as static subword vectors.

        One vector per piece of the encoder's tokenizer: the rows of its
        token-embedding matrix (a copy, in float32), the words being the
        tokenizer's pieces (`"▁good"`, `"好"` for e5's SentencePiece,
        `"good"`, `"##ing"` for a WordPiece BERT such as MiniLM). For a
        multilingual encoder (multilingual-e5-small) the vocabulary is shared
        across languages, so these are multilingual vectors that need no
        alignment. For an encoder trimmed with `trim_vocabulary`, only the
        kept rows are taken (each under the piece whose id maps to it), so
        the vectors are as small as the trimmed embedding. Rows past the
        tokenizer's pieces (a padded table: e5 has 250,037 rows for 250,002
        pieces) are never looked up and are left out.

        The vectors remember the tokenizer (`vectors.tokenizer`, the same
        KerasHub tokenizer object) and describe it (`vectors.tokenizer_record`:
        its class, configuration, vocabulary size and a SHA-256 of its
        pieces), and `kt.encoders.WordVectorEncoder(vectors)` then tokenises
        with it (inside the graph, so tf.data, `.keras` files and exported
        SavedModels all tokenise the same way) instead of splitting words.

        Args:
            encoder: a `kt.encoders.BertEncoder` (its `preprocessor.tokenizer`
                is used), or a `keras_hub.models.BertBackbone` together with
                `tokenizer`.
            tokenizer: the KerasHub tokenizer whose ids index the embedding;
                default the encoder's.

        Returns:
            A `WordVectors` of `[num_pieces, hidden_dim]`.

        Raises:
            TypeError: `encoder` is not a BERT encoder / backbone.
            ValueError: it has no token embedding (or a quantised one), or no
                tokenizer to name its rows.

        Example:

        ```python
        import ktransfer as kt
        bert = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=32)
        vectors = kt.WordVectors.from_encoder(bert.trim_vocabulary(["a great film", "a dull film"]))
        vectors.tokenizer_record["class"]             # 'BertTokenizer'
        encoder = kt.encoders.WordVectorEncoder(vectors, sequence_length=32)
        encoder.adapt(["a great film", "a dull film"])   # pieces, as the tokenizer cuts them
        model = kt.models.TextCNN(encoder, num_classes=2, num_filters=8)
        model.fit(x=["a great film", "a dull film"], y=[1, 0], epochs=1, verbose=0)
        ```
        """
        import hashlib
        import json

        from ktransfer._keras import keras
        from ktransfer.encoders import keras_hub_adapter as adapter
        from ktransfer.encoders.base import Encoder

        backbone, token_id_map = encoder, None
        if isinstance(encoder, Encoder):
            backbone = getattr(encoder, "backbone", None)
            if backbone is None:
                raise ValueError(
                    f"{type(encoder).__name__} has no BERT backbone, so no token embedding to "
                    "read: `WordVectors.from_encoder` takes a kt.encoders.BertEncoder (a "
                    "WordVectorEncoder already holds word vectors: use them directly)."
                )
            if tokenizer is None:
                tokenizer = getattr(getattr(encoder, "preprocessor", None), "tokenizer", None)
            token_id_map = getattr(encoder, "token_id_map", None)
        elif not isinstance(encoder, keras.layers.Layer):
            raise TypeError(
                "`encoder` must be a kt.encoders.BertEncoder (or a keras_hub BertBackbone with "
                f"`tokenizer=`). Received: {type(encoder).__name__}"
            )
        matrix = adapter.token_embedding_matrix(backbone)
        if tokenizer is None:
            raise ValueError(
                "The encoder has no tokenizer (`encoder.preprocessor.tokenizer`) to name its "
                "embedding rows: pass `tokenizer=` (the KerasHub tokenizer whose ids index "
                "the token embedding)."
            )
        pieces = adapter.tokenizer_pieces(tokenizer)
        # A checkpoint may pad its table past the tokenizer (e5: 250,037 rows for
        # 250,002 pieces); rows no piece names are never looked up and are left out.
        if token_id_map is None:
            if len(pieces) > matrix.shape[0]:
                raise ValueError(
                    f"The tokenizer has {len(pieces):,} pieces but the token embedding has only "
                    f"{matrix.shape[0]:,} rows: pass the tokenizer the encoder was trained with."
                )
            words, matrix = pieces, matrix[: len(pieces)]
        else:  # trimmed: tokenizer id -> row; unseen ids all map to <unk>'s row
            table = np.asarray(keras.ops.convert_to_numpy(token_id_map), dtype=np.int64)
            if len(pieces) > len(table):
                raise ValueError(
                    f"The tokenizer has {len(pieces):,} pieces but the encoder's `token_id_map` "
                    f"has only {len(table):,} entries: pass the tokenizer it was trimmed with."
                )
            table = table[: len(pieces)]
            unknown = adapter.tokenizer_unknown_id(tokenizer)
            unknown_row = table[unknown] if unknown is not None else -1
            ids = np.flatnonzero(table != unknown_row)
            if unknown is not None:
                ids = np.sort(np.append(ids, unknown))
            rows = table[ids]
            order = np.argsort(rows, kind="stable")
            ids, rows = ids[order], rows[order]
            if len(np.unique(rows)) != len(rows) or (len(rows) and rows[-1] >= matrix.shape[0]):
                raise ValueError(
                    "The encoder's `token_id_map` does not map each kept piece to its own "
                    f"embedding row ({len(rows):,} pieces for {matrix.shape[0]:,} rows)."
                )
            words, matrix = [pieces[i] for i in ids], matrix[rows]
        vectors = cls(words, matrix)
        config = keras.saving.serialize_keras_object(tokenizer)
        vectors._tokenizer = tokenizer
        vectors._tokenizer_record = {
            "class": type(tokenizer).__name__,
            "config": json.loads(json.dumps(config, default=str)),
            "vocabulary_size": len(pieces),
            "vocabulary_sha256": hashlib.sha256("\n".join(pieces).encode("utf-8")).hexdigest(),
            "rows": len(words),
            "trimmed": token_id_map is not None,
        }
        return vectors

    @property
    def tokenizer(self):
        """The KerasHub tokenizer the vectors' words are pieces of (`from_encoder`), or None."""
        return self._tokenizer

    @property
    def tokenizer_record(self):
        """What `from_encoder` recorded about the tokenizer (a dict), or None.

        `class`, `config` (KerasHub's serialised config, without the
        vocabulary), `vocabulary_size`, `vocabulary_sha256` (of the pieces
        in id order, joined by newlines), `rows` and `trimmed`.
        """
        return None if self._tokenizer_record is None else dict(self._tokenizer_record)

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

        Vectors from `from_encoder` also write their tokenizer beside the
        `.npy` file (`<name>.tokenizer/`: `tokenizer.json`, KerasHub's
        config and `tokenizer_record`, and the tokenizer's own assets, e.g.
        its SentencePiece model), and `WordVectors.load` restores it, so a
        `WordVectorEncoder` over the loaded vectors tokenises the same way.

        Returns:
            The path of the written `.npy` file.
        """
        written = save_native(path, self.words, self._matrix)
        if self._tokenizer is not None:
            _save_tokenizer(self._tokenizer, self._tokenizer_record, _tokenizer_folder(written))
        return written

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
            tokenizer = _load_tokenizer(_tokenizer_folder(native_paths(path)[0]))
            if tokenizer is not None:
                vectors = cls.from_validated(matrix, words, source=source)
                vectors._tokenizer, vectors._tokenizer_record = tokenizer
                return vectors
        elif kind == "word2vec_binary":
            matrix, words, source = load_word2vec_binary(
                path, layout, vocabulary, dtype, unicode_errors
            )
        else:
            matrix, words, source = load_text(path, layout, vocabulary, dtype, unicode_errors)
        return cls.from_validated(matrix, words, source=source)


TOKENIZER_CONFIG_FILE = "tokenizer.json"


def _tokenizer_folder(vectors_path):
    """Where the tokenizer of the vectors saved at `vectors_path` (a `.npy` file) lives."""
    return vectors_path[: -len(".npy")] + ".tokenizer"


def _save_tokenizer(tokenizer, record, folder):
    import json

    from ktransfer._keras import keras

    os.makedirs(folder, exist_ok=True)
    tokenizer.save_assets(folder)
    with open(os.path.join(folder, TOKENIZER_CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump({"keras": keras.saving.serialize_keras_object(tokenizer), "record": record}, f,
                  indent=1, default=str)


def _load_tokenizer(folder):
    """`(tokenizer, record)` saved by `_save_tokenizer`, or None when there is none."""
    import json

    config_path = os.path.join(folder, TOKENIZER_CONFIG_FILE)
    if not os.path.isfile(config_path):
        return None
    from ktransfer._keras import keras

    with open(config_path, encoding="utf-8") as f:
        saved = json.load(f)
    tokenizer = keras.saving.deserialize_keras_object(saved["keras"])
    tokenizer.load_assets(folder)
    return tokenizer, saved["record"]
