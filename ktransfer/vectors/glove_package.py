"""The GloVe layout of the `glove50` asset: a `*_emb.npy` matrix and a `*_index.parquet` word list.

`load_glove_package(folder)` memory-maps the matrix and reads the words
(one per row of the parquet file, column `index`, in matrix order), e.g.
`glove_6B_50d_emb.npy` + `glove_6B_index.parquet`. The asset is verified by
its checksum when fetched, so the memory-mapped matrix is not scanned for
NaN / inf (a copy, with `vocabulary` or another dtype, is).

Example:

```python
import numpy as np
import ktransfer
from ktransfer.vectors import glove_package
matrix, words, _ = glove_package.load_glove_package(
    ktransfer.assets.path("glove50"), None, np.dtype("float32"))
matrix.shape              # (400000, 50)
```
"""

import os

from ktransfer.vectors.common import check_finite
from ktransfer.vectors.common import check_unique_words
from ktransfer.vectors.common import select_rows
from ktransfer.vectors.formats import WordVectorsFormatError
from ktransfer.vectors.formats import glove_package_files
from ktransfer.vectors.native import load_npy


def load_glove_package(folder, vocabulary, dtype):
    """Read a GloVe asset folder: `(matrix, words, source)`.

    Args:
        folder: the asset folder (`ktransfer.assets.path("glove50")`).
        vocabulary: None, or a set of words to keep (in matrix order).
        dtype: a floating numpy dtype (see `common.check_dtype`).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"GloVe package folder not found: {folder!r}.")
    matrix_path, index_path = glove_package_files(folder)
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
    matrix = load_npy(matrix_path)
    matrix_dtype = matrix.dtype
    if len(words) != matrix.shape[0]:
        raise WordVectorsFormatError(
            folder,
            f"the word index has {len(words)} words but the matrix has "
            f"{matrix.shape[0]} rows.",
            "fetch the asset again with `ktransfer assets fetch glove50 --force`.",
        )
    words = check_unique_words(words, index_path)
    matrix, words = select_rows(matrix, words, vocabulary, dtype)
    if vocabulary is not None or dtype != matrix_dtype:  # a copy: check it (cheap now)
        check_finite(matrix_path, matrix, lambda row: (None, f"row {row}", _word(words, row)))
    return matrix, words, folder


def _word(words, row):
    return words[row] if isinstance(words, list) else words[row].as_py()
