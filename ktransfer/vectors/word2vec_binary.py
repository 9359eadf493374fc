"""The binary word2vec format (GoogleNews-vectors-negative300.bin).

A `count dim` header line, then per word the UTF-8 word, a space and `dim`
little-endian float32 (optionally followed by a newline). `load_word2vec_binary`
finds the words with `bytes.find` and gathers a whole block's vectors with one
`b"".join` + `np.frombuffer`. Vectors that are not finite (NaN, inf) are
refused, naming the record.

Example:

```python
import os, tempfile, numpy as np
from ktransfer.vectors import formats, word2vec_binary
path = os.path.join(tempfile.mkdtemp(), "tiny.bin")
with open(path, "wb") as f:
    f.write(b"2 2\\n")
    for word, vector in [(b"cat", [1, 0]), (b"dog", [0.8, 0.6])]:
        f.write(word + b" " + np.asarray(vector, "<f4").tobytes())
layout = formats.sniff(path, "word2vec")
matrix, words, _ = word2vec_binary.load_word2vec_binary(
    path, layout, None, np.dtype("float32"), "strict")
words.to_pylist()         # ['cat', 'dog']
```
"""

import os

import numpy as np

from ktransfer.vectors.common import RowBuffer
from ktransfer.vectors.common import check_finite
from ktransfer.vectors.common import drop_duplicates
from ktransfer.vectors.common import string_array
from ktransfer.vectors.common import word_hashes
from ktransfer.vectors.formats import SNIFF_SIZE
from ktransfer.vectors.formats import WordVectorsFormatError
from ktransfer.vectors.formats import open_binary

BLOCK_SIZE = 2 << 20  # bytes read per step


def load_word2vec_binary(path, layout, vocabulary, dtype, unicode_errors):
    """The GoogleNews format: a `count dim` header line, then per word the
    UTF-8 word, a space and `dim` little-endian float32 (optionally followed
    by a newline). Words are found with `bytes.find` and the vectors of a
    whole block are gathered with one `b"".join` + `np.frombuffer`.

    Returns `(matrix, words, source)`, `words` a pyarrow StringArray; a
    malformed record, or a vector that is not finite, raises
    `WordVectorsFormatError` naming the record and its byte offset."""
    import pyarrow as pa

    count, dim = layout.count, layout.dim
    record_size = 4 * dim
    # At least a 1-byte word and a space per record: caps a lying header.
    expected_size = os.path.getsize(path) * (4 if layout.compressed else 1)
    capacity = min(count, expected_size // (record_size + 2) + 16)
    if vocabulary is not None:
        capacity = min(capacity, len(vocabulary))
    rows = RowBuffer(capacity, dim, dtype)
    word_pieces, hash_pieces, block_starts = [], [], []
    record = 0  # records read so far
    buffer, position, buffer_offset = b"", 0, layout.data_offset  # file offset of buffer[0]

    def where():
        return f"record {record + 1} (byte {buffer_offset + position})"

    try:
        with open_binary(path, layout.compressed) as stream:
            stream.read(layout.data_offset)
            at_end = False
            while True:
                words, starts, records = [], [], []
                while record < count:
                    while position < len(buffer) and buffer[position] == 10:  # b"\n"
                        position += 1
                    space = buffer.find(b" ", position)
                    if space < 0 or space + 1 + record_size > len(buffer):
                        if space < 0 and len(buffer) - position > SNIFF_SIZE:
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
                        records.append(record)
                    position = space + 1 + record_size
                    record += 1
                if words:
                    with memoryview(buffer) as view:
                        data = b"".join(view[start:start + record_size] for start in starts)
                    values = np.frombuffer(data, dtype="<f4").reshape(-1, dim)
                    check_finite(path, values, lambda row: (
                        None,
                        f"record {records[row] + 1} (byte {buffer_offset + starts[row]})",
                        words[row],
                    ))
                    rows.reserve(len(words))[...] = values
                    block_starts.append((rows.size, None, None))
                    rows.size += len(words)
                    word_pieces.append(string_array(words))
                    hash_pieces.append(word_hashes(word_pieces[-1]))
                if record == count or at_end:
                    break
                more = stream.read(BLOCK_SIZE)
                at_end = not more
                buffer_offset += position
                buffer = buffer[position:] + more
                position = 0
            rest = buffer[position:].strip()
            if record == count and not rest:
                rest = stream.read(SNIFF_SIZE).strip()
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
    words = pa.concat_arrays(word_pieces) if word_pieces else string_array([])
    hashes = np.concatenate(hash_pieces) if hash_pieces else np.empty(0, np.uint64)
    words, matrix = drop_duplicates(path, words, matrix, hashes, block_starts)
    return matrix, words, path
