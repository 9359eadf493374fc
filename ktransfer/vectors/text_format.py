"""GloVe, word2vec and fastText text files: a parallel block parser over pyarrow.

`load_text(path, layout, ...)` reads a text vectors file (`word v1 ... vd`
per line, optionally after a `count dim` header, optionally gzip-compressed)
into one preallocated row-major matrix.

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
Values that parse but are not finite (`nan`, `inf`) are refused, naming the
line.

Example:

```python
import os, tempfile, numpy as np
from ktransfer.vectors import formats, text_format
path = os.path.join(tempfile.mkdtemp(), "tiny.txt")
open(path, "w").write("cat 1.0 0.0\\ndog 0.8 0.6\\n")
layout = formats.sniff(path, "glove")
matrix, words, _ = text_format.load_text(path, layout, None, np.dtype("float32"), "strict")
words.to_pylist()         # ['cat', 'dog']
```
"""

import collections
import concurrent.futures
import dataclasses
import os
import re

import numpy as np

from ktransfer.vectors.common import EmptyWordError
from ktransfer.vectors.common import RowBuffer
from ktransfer.vectors.common import check_finite
from ktransfer.vectors.common import drop_duplicates
from ktransfer.vectors.common import string_array
from ktransfer.vectors.common import to_numpy
from ktransfer.vectors.common import true_positions
from ktransfer.vectors.common import word_hashes
from ktransfer.vectors.formats import WordVectorsFormatError
from ktransfer.vectors.formats import open_binary

BLOCK_SIZE = 2 << 20  # bytes of text per pyarrow parse call (~1.6x the matrix at peak)
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", re.I)


@dataclasses.dataclass
class _Block:
    """One parsed block of text lines."""

    words: object  # pyarrow StringArray of the kept rows
    values: object  # list of per-dimension arrays (fast path) or ndarray [rows, dim]
    num_lines: int  # physical lines in the block
    num_vectors: int  # vector lines in the block, before the vocabulary filter
    hashes: object  # `word_hashes(words)`, computed in the worker thread
    row_lines: object = None  # line offset of each kept row; None: 0, 1, 2, ...


class _LineError(Exception):
    """A malformed line, located by its offset inside a block; `load_text`
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


def load_text(path, layout, vocabulary, dtype, unicode_errors):
    """Read a text vectors file: `(matrix, words, source)`.

    Args:
        path: the file (plain or gzip-compressed).
        layout: what `formats.sniff` read from it.
        vocabulary: None, or a set of words to keep (in file order).
        dtype: a floating numpy dtype.
        unicode_errors: `"strict"`, `"replace"` or `"ignore"`, for words
            that are not valid UTF-8.

    `words` is a pyarrow StringArray. A repeated word keeps its first vector
    (with a warning); a malformed line, or a value that is not a finite
    number, raises `WordVectorsFormatError` naming the line.
    """
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
    rows = RowBuffer(capacity, dim, dtype)
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

        def where(row):
            offset = row if block.row_lines is None else int(block.row_lines[row])
            return line + offset, None, block.words[row].as_py()

        check_finite(path, target, where)
        block_starts.append((rows.size, line, block.row_lines))
        rows.size += count
        word_pieces.append(block.words)
        hash_pieces.append(block.hashes)
        line += block.num_lines
        num_vectors += block.num_vectors

    try:
        with open_binary(path, layout.compressed) as stream:
            if layout.compressed:
                stream.read(layout.data_offset)
            else:
                stream.seek(layout.data_offset)
            blocks = _line_blocks(stream, BLOCK_SIZE)
            workers = _usable_cpus()
            if workers == 1 or file_size <= BLOCK_SIZE:
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
        words = string_array([])
    hashes = np.concatenate(hash_pieces) if hash_pieces else np.empty(0, np.uint64)
    words, matrix = drop_duplicates(path, words, matrix, hashes, block_starts)
    return matrix, words, path


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
        self.value_set = None if vocabulary is None else string_array(sorted(vocabulary))
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
            hashes = word_hashes(words)
        except EmptyWordError:  # a line starting with a space: located below
            return self._parse_slowly(block)
        row_lines = None
        if self.value_set is not None:
            import pyarrow.compute as pc

            keep = pc.is_in(words, value_set=self.value_set)
            row_lines = true_positions(keep)
            table = table.filter(keep)
            words = words.filter(keep)
            hashes = hashes[row_lines]
        values = [to_numpy(table.column(j)) for j in range(1, self.dim + 1)]
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
        word_array = string_array([words[row] for row in keep])
        return _Block(
            word_array, values[keep], num_lines=len(lines), num_vectors=len(words),
            hashes=word_hashes(word_array),
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
        return np.stack([to_numpy(column) for column in table.columns], axis=1)
