"""What a word-vectors file is: the formats, sniffing them from the bytes, and the error.

`detect(path, format)` tells which reader a path needs (`"native"`,
`"glove_package"`, `"text"` or `"word2vec_binary"`) and, for the text and
binary formats, the `Layout` that `sniff` read from the first bytes (header,
dimension, compression, trailing spaces). `WordVectorsFormatError` is the
error every reader raises, naming the file, the line (or record) and the fix.

Example:

```python
import os, tempfile
from ktransfer.vectors import formats
path = os.path.join(tempfile.mkdtemp(), "tiny.txt")
open(path, "w").write("cat 1.0 0.0\\ndog 0.8 0.6\\n")
kind, layout = formats.detect(path, "auto")
kind, layout.dim, layout.count      # ('text', 2, None): GloVe text, no header
```
"""

import collections
import dataclasses
import gzip
import os

FORMATS = ("auto", "glove", "word2vec", "fasttext", "npy")

# Native format file names (inside the folder given to `save`/`load`).
VECTORS_FILE = "vectors.npy"
VOCAB_FILE = "vocab.txt"

SNIFF_SIZE = 1 << 16  # bytes read to sniff a file
_NPY_MAGIC = b"\x93NUMPY"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_FASTTEXT_BIN_MAGIC = (793712314).to_bytes(4, "little")
_UTF8_BOM = b"\xef\xbb\xbf"
# Characters that can appear in the numeric part of a text vectors line.
_TEXT_NUMBER_BYTES = frozenset(b"0123456789+-.eEnNaAiIfFtTyY \t\r\n")


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


def detect(path, format):
    """Which reader `path` needs: `(kind, layout)`.

    Args:
        path: an existing file or folder.
        format: one of `FORMATS`; `"auto"` detects it from the bytes.

    Returns:
        `("native", None)` for a folder or `.npy` file written by
        `WordVectors.save`, `("glove_package", None)` for the GloVe asset
        folder (`*_emb.npy` + `*_index.parquet`), and `("text", layout)` or
        `("word2vec_binary", layout)` with the `Layout` of the file.

    Raises:
        WordVectorsFormatError: the file is of another kind than `format`
            says, or of a kind no reader takes (a fastText model `.bin`, a
            zip archive), with what to do instead.
    """
    if os.path.isdir(path):
        if format not in ("auto", "npy"):
            raise WordVectorsFormatError(
                path, f"this is a folder, not a {format} file.",
                "pass the file inside it, or format='npy' for a folder written "
                "by `WordVectors.save`.",
            )
        if glove_package_files(path)[0] is not None and not os.path.isfile(
            os.path.join(path, VECTORS_FILE)
        ):
            return "glove_package", None
        return "native", None

    with open(path, "rb") as f:
        magic = f.read(8)
    if magic.startswith(_NPY_MAGIC) and format not in ("auto", "npy"):
        raise WordVectorsFormatError(
            path, f"this is a NumPy .npy file, not a {format} file.",
            "pass format='npy' (or 'auto') for files written by `WordVectors.save`.",
        )
    if magic.startswith(_NPY_MAGIC) or format == "npy":
        return "native", None
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
    layout = sniff(path, format)
    return ("word2vec_binary" if layout.binary else "text"), layout


def glove_package_files(folder):
    """`(matrix .npy, word index .parquet)` of a GloVe asset folder, or `(None, None)`."""
    names = sorted(os.listdir(folder))
    matrices = [n for n in names if n.endswith("_emb.npy")]
    indexes = [n for n in names if n.endswith("_index.parquet")]
    if len(matrices) != 1 or len(indexes) != 1:
        return None, None
    return os.path.join(folder, matrices[0]), os.path.join(folder, indexes[0])



@dataclasses.dataclass
class Layout:
    """What `sniff` learned about a text or binary vectors file."""

    binary: bool
    compressed: bool
    dim: int
    count: int | None  # from the header, None without one
    data_offset: int  # bytes before the first vector line (BOM, header)
    first_line: int  # line number of the first vector line
    trailing_space: bool  # lines end with " " (fastText .vec, word2vec C tool)
    bytes_per_line: float  # estimate, for preallocation


def open_binary(path, compressed):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def sniff(path, format):
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    with open_binary(path, compressed) as f:
        try:
            sample = f.read(SNIFF_SIZE)
            while b"\n" not in sample and len(sample) < (64 << 20):
                more = f.read(SNIFF_SIZE)  # very long first lines: read on
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
    return Layout(
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
