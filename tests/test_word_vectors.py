"""Tests for ktransfer.vectors (WordVectors and its one module per format).

Fast tests use tiny synthetic files for every format and every error. Tests
marked `slow` write a slice of the real GloVe 6B 50d asset back out in the
four published formats and read it through `WordVectors.load`.
"""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from ktransfer import assets
from ktransfer.vectors import text_format
from ktransfer.vectors import word2vec_binary
from ktransfer.vectors.word_vectors import WordVectors, WordVectorsFormatError

GLOVE_MISSING = "GloVe asset not fetched; run `ktransfer assets fetch glove50`"

WORDS = ["the", ",", "movie", "good", "bad", "film", "great", "naïve", '"', "'s"]


def make_matrix(rows=len(WORDS), dim=4, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)


# ------------------------------------------------------------------ writers


def format_row(values):
    # repr of the float64 value of each float32 reads back to the same float32.
    return " ".join(repr(float(value)) for value in values)


def write_text(path, words, matrix, header=False, trailing_space=False, newline="\n",
               final_newline=True):
    lines = []
    if header:
        lines.append(f"{len(words)} {matrix.shape[1]}")
    for word, row in zip(words, matrix):
        lines.append(f"{word} {format_row(row)}" + (" " if trailing_space else ""))
    text = newline.join(lines) + (newline if final_newline else "")
    with open(path, "wb") as f:
        f.write(text.encode("utf-8"))
    return path


def write_word2vec_binary(path, words, matrix, newline=True, count=None):
    with open(path, "wb") as f:
        f.write(f"{len(words) if count is None else count} {matrix.shape[1]}\n".encode())
        for word, row in zip(words, matrix):
            f.write(word.encode("utf-8") + b" " + row.astype("<f4").tobytes())
            if newline:
                f.write(b"\n")
    return path


def write_lines(path, lines, final_newline=True):
    text = "\n".join(lines) + ("\n" if final_newline else "")
    with open(path, "wb") as f:
        f.write(text.encode("utf-8"))
    return path


def assert_same(vectors, words, matrix, exact=True):
    assert vectors.words == list(words)
    assert len(vectors) == len(words)
    assert vectors.dim == matrix.shape[1]
    assert vectors.matrix.shape == matrix.shape
    if exact:
        np.testing.assert_array_equal(np.asarray(vectors.matrix), matrix)
    else:
        np.testing.assert_allclose(np.asarray(vectors.matrix), matrix, atol=1e-5)


def load_error(path, **kwargs):
    with pytest.raises(WordVectorsFormatError) as info:
        WordVectors.load(path, **kwargs)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    assert "Fix:" in str(info.value)
    return str(info.value)


@pytest.fixture
def small_blocks(monkeypatch):
    """Parse in 256-byte blocks so that tiny files take the multi-block,
    thread-pool path and errors must be located across blocks."""
    monkeypatch.setattr(text_format, "BLOCK_SIZE", 256)


# ------------------------------------------------------------- constructor


def test_constructor_and_lookups():
    matrix = make_matrix()
    vectors = WordVectors(WORDS, matrix)
    assert vectors.dim == 4 and len(vectors) == len(WORDS)
    assert vectors.words == WORDS
    assert vectors.matrix is matrix
    assert "movie" in vectors and "cinema" not in vectors
    assert vectors.index("good") == 3
    np.testing.assert_array_equal(vectors["bad"], matrix[4])
    assert isinstance(vectors["bad"], np.ndarray) and vectors["bad"].shape == (4,)
    assert vectors.get("cinema") is None
    assert vectors.get("cinema", default=0) == 0
    np.testing.assert_array_equal(vectors.get("naïve"), matrix[7])
    assert list(vectors) == WORDS
    assert "10 words x 4 dims, float32" in repr(vectors)
    with pytest.raises(KeyError, match="cinema"):
        vectors["cinema"]
    with pytest.raises(KeyError, match="not in the vocabulary"):
        vectors.index("cinema")


def test_constructor_validation():
    matrix = make_matrix()
    with pytest.raises(ValueError, match="10 words but the matrix has 3 rows"):
        WordVectors(WORDS, matrix[:3])
    with pytest.raises(ValueError, match="2-D"):
        WordVectors(WORDS, matrix[:, 0])
    with pytest.raises(ValueError, match="'good' appears twice"):
        WordVectors(["good", "bad", "good"], matrix[:3])
    with pytest.raises(ValueError, match="non-empty string"):
        WordVectors(["good", "", "bad"], matrix[:3])
    with pytest.raises(ValueError, match="non-empty string"):
        WordVectors(["good", 3, "bad"], matrix[:3])
    with pytest.raises(TypeError, match="single string"):
        WordVectors("good", matrix[:4])
    integer = WordVectors(["a", "b"], [[1, 2], [3, 4]])
    assert integer.matrix.dtype == np.float32


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["auto", "glove"])
def test_glove_text(tmp_path, fmt):
    matrix = make_matrix()
    path = write_text(tmp_path / "vectors.txt", WORDS, matrix)
    vectors = WordVectors.load(path, format=fmt)
    assert_same(vectors, WORDS, matrix)
    assert vectors.matrix.dtype == np.float32


def test_glove_text_variants(tmp_path):
    matrix = make_matrix()
    crlf = write_text(tmp_path / "crlf.txt", WORDS, matrix, newline="\r\n")
    assert_same(WordVectors.load(crlf), WORDS, matrix)
    no_final_newline = write_text(tmp_path / "nofinal.txt", WORDS, matrix, final_newline=False)
    assert_same(WordVectors.load(no_final_newline), WORDS, matrix)
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "crlf.txt").read_bytes())
    assert_same(WordVectors.load(bom), WORDS, matrix)
    blank = tmp_path / "blank.txt"
    lines = (tmp_path / "nofinal.txt").read_text(encoding="utf-8").split("\n")
    write_lines(blank, lines[:3] + [""] + lines[3:] + ["", ""])
    assert_same(WordVectors.load(blank), WORDS, matrix)
    compressed = tmp_path / "vectors.txt.gz"
    compressed.write_bytes(gzip.compress((tmp_path / "crlf.txt").read_bytes()))
    assert_same(WordVectors.load(compressed), WORDS, matrix)


@pytest.mark.parametrize("fmt", ["auto", "word2vec", "fasttext"])
def test_word2vec_and_fasttext_text(tmp_path, fmt):
    matrix = make_matrix(dim=7)
    plain = write_text(tmp_path / "w2v.txt", WORDS, matrix, header=True)
    assert_same(WordVectors.load(plain, format=fmt), WORDS, matrix)
    # fastText .vec lines (and word2vec.c text output) end with a space.
    vec = write_text(tmp_path / "wiki.vec", WORDS, matrix, header=True, trailing_space=True)
    assert_same(WordVectors.load(vec, format=fmt), WORDS, matrix)


@pytest.mark.parametrize("fmt", ["auto", "word2vec"])
@pytest.mark.parametrize("newline", [True, False])
def test_word2vec_binary(tmp_path, fmt, newline):
    matrix = make_matrix(dim=6)
    path = write_word2vec_binary(tmp_path / "vectors.bin", WORDS, matrix, newline=newline)
    assert_same(WordVectors.load(path, format=fmt), WORDS, matrix)
    compressed = tmp_path / "vectors.bin.gz"
    compressed.write_bytes(gzip.compress(path.read_bytes()))
    assert_same(WordVectors.load(compressed, format=fmt), WORDS, matrix)


def test_word2vec_binary_many_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(word2vec_binary, "BLOCK_SIZE", 100)
    words = [f"w{i}" for i in range(300)]
    matrix = make_matrix(rows=300, dim=8)
    path = write_word2vec_binary(tmp_path / "vectors.bin", words, matrix)
    assert_same(WordVectors.load(path), words, matrix)
    subset = WordVectors.load(path, vocabulary=["w299", "w5", "absent"])
    assert subset.words == ["w5", "w299"]
    np.testing.assert_array_equal(subset.matrix, matrix[[5, 299]])


def test_many_blocks_in_parallel(tmp_path, small_blocks):
    words = [f"word{i}" for i in range(500)]
    matrix = make_matrix(rows=500, dim=5)
    path = write_text(tmp_path / "vectors.txt", words, matrix)
    assert os.path.getsize(path) > 50 * 256
    assert_same(WordVectors.load(path), words, matrix)
    header = write_text(tmp_path / "vectors.vec", words, matrix, header=True, trailing_space=True)
    assert_same(WordVectors.load(header), words, matrix)


def test_words_with_spaces(tmp_path, small_blocks):
    # GloVe 840B style: the last `dim` fields are numbers, the rest is the word.
    words = [f"w{i}" for i in range(200)]
    words[3] = "at name@domain.com"
    words[150] = ". . ."
    words[151] = "2 1/2"
    matrix = make_matrix(rows=200, dim=3)
    path = write_text(tmp_path / "glove.840B.txt", words, matrix)
    vectors = WordVectors.load(path)
    assert_same(vectors, words, matrix)
    np.testing.assert_array_equal(vectors["at name@domain.com"], matrix[3])
    first_line_spaces = write_text(tmp_path / "first.txt", words[3:10], matrix[3:10])
    assert_same(WordVectors.load(first_line_spaces), words[3:10], matrix[3:10])


def test_dtype(tmp_path):
    matrix = make_matrix()
    path = write_text(tmp_path / "vectors.txt", WORDS, matrix)
    half = WordVectors.load(path, dtype="float16")
    assert half.matrix.dtype == np.float16
    np.testing.assert_array_equal(half.matrix, matrix.astype(np.float16))
    double = WordVectors.load(path, dtype=np.float64)
    assert double.matrix.dtype == np.float64
    np.testing.assert_allclose(double.matrix, matrix, rtol=1e-7)
    with pytest.raises(ValueError, match="floating"):
        WordVectors.load(path, dtype="int32")


def test_vocabulary_loads_only_those_rows(tmp_path, small_blocks):
    words = [f"word{i}" for i in range(400)]
    matrix = make_matrix(rows=400, dim=4)
    wanted = ["word399", "word7", "word200", "not-there"]
    text = write_text(tmp_path / "vectors.txt", words, matrix)
    binary = write_word2vec_binary(tmp_path / "vectors.bin", words, matrix)
    native = WordVectors(words, matrix)
    native.save(tmp_path / "native")
    for path in (text, binary, tmp_path / "native"):
        subset = WordVectors.load(path, vocabulary=iter(wanted))
        assert subset.words == ["word7", "word200", "word399"]  # file order
        assert subset.matrix.shape == (3, 4)
        np.testing.assert_array_equal(subset.matrix, matrix[[7, 200, 399]])
        assert "not-there" not in subset and "word8" not in subset
    assert len(WordVectors.load(text, vocabulary=[])) == 0
    with pytest.raises(TypeError, match="iterable of words"):
        WordVectors.load(text, vocabulary="word7")


def test_repeated_words_keep_first_with_warning(tmp_path, small_blocks):
    words = [f"w{i}" for i in range(100)] + ["w3"]
    matrix = make_matrix(rows=101, dim=3)
    path = write_text(tmp_path / "vectors.txt", words, matrix)
    with pytest.warns(UserWarning, match="'w3' on line 4 and line 101"):
        vectors = WordVectors.load(path)
    assert len(vectors) == 100
    np.testing.assert_array_equal(vectors["w3"], matrix[3])


def test_unicode_errors_replace(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9 0.5 1.5\nok 1 2\n")
    vectors = WordVectors.load(path, unicode_errors="replace")
    assert vectors.words == ["caf\ufffd", "ok"]
    np.testing.assert_array_equal(vectors.matrix, [[0.5, 1.5], [1, 2]])
    with pytest.raises(ValueError, match="unicode_errors"):
        WordVectors.load(path, unicode_errors="nope")


def test_short_numbers_with_header_are_text(tmp_path):
    # "1 2" after the word must not be mistaken for binary float32 bytes.
    path = write_lines(tmp_path / "ints.txt", ["3 4", "a 1 2 3 4", "b 5 6 7 8", "c 0 0 0 1"])
    vectors = WordVectors.load(path)
    assert vectors.words == ["a", "b", "c"]
    np.testing.assert_array_equal(vectors.matrix[1], [5, 6, 7, 8])


def test_carriage_return_inside_a_word(tmp_path, small_blocks):
    # pyarrow ends rows at a lone "\r"; such blocks are re-read line by line.
    words = [f"w{i}" for i in range(100)]
    words[60] = "odd\rword"
    matrix = make_matrix(rows=100, dim=3)
    path = write_text(tmp_path / "cr.txt", words, matrix)
    assert_same(WordVectors.load(path), words, matrix)


# ------------------------------------------------------------------ errors


def test_error_missing_file(tmp_path):
    missing = tmp_path / "nope" / "glove.txt"
    with pytest.raises(FileNotFoundError, match="glove.txt"):
        WordVectors.load(missing)


def test_error_unknown_format(tmp_path):
    path = write_text(tmp_path / "vectors.txt", WORDS, make_matrix())
    with pytest.raises(ValueError, match="Unknown word vectors format 'gloove'.*'glove'"):
        WordVectors.load(path, format="gloove")


def test_error_empty_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert "empty" in load_error(empty) and "line 1" in load_error(empty)
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b"\n\n  \n")
    assert "only blank lines" in load_error(blank)


def test_error_truncated_last_line(tmp_path, small_blocks):
    words = [f"w{i}" for i in range(60)]
    path = write_text(tmp_path / "vectors.txt", words, make_matrix(rows=60, dim=8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # cut inside the last line
    message = load_error(path)
    assert "line 60" in message and "truncated" in message
    path.write_bytes(data[: data.rindex(b" ")] + b" -")  # cut after a minus sign
    message = load_error(path)
    assert "line 60" in message and "'-', not a number" in message and "truncated" in message
    path.write_bytes(data[: data.rindex(b" ") + 1])  # cut right after a space
    message = load_error(path)
    assert "line 60" in message and "7 values" in message


def test_error_wrong_number_of_values(tmp_path, small_blocks):
    words = [f"w{i}" for i in range(80)]
    matrix = make_matrix(rows=80, dim=5)
    lines = [f"{w} {format_row(row)}" for w, row in zip(words, matrix)]
    fewer = list(lines)
    fewer[56] = "w56 " + format_row(matrix[56][:4])
    message = load_error(write_lines(tmp_path / "fewer.txt", fewer))
    assert "line 57" in message and "4 values" in message and "expected 5" in message
    more = list(lines)
    more[41] = "w41 " + format_row(np.append(matrix[41], 1.0))
    message = load_error(write_lines(tmp_path / "more.txt", more))
    assert "line 42" in message and "6 values" in message and "expected 5" in message


def test_error_extra_value_in_vec_file(tmp_path, small_blocks):
    # .vec lines end with a space; a line with one more value and no trailing
    # space has the same number of fields and must still be rejected.
    words = [f"w{i}" for i in range(60)]
    matrix = make_matrix(rows=60, dim=4)
    lines = ["60 4"] + [f"{w} {format_row(row)} " for w, row in zip(words, matrix)]
    lines[45] = "w44 1.0 2.0 3.0 4.0 5.0"
    message = load_error(write_lines(tmp_path / "extra.vec", lines))
    assert "line 46" in message and "5 values" in message and "expected 4" in message


def test_error_mixed_dimensions(tmp_path):
    lines = [f"a{i} " + format_row(make_matrix(1, 3, i)[0]) for i in range(5)]
    lines += [f"b{i} " + format_row(make_matrix(1, 6, i)[0]) for i in range(5)]
    message = load_error(write_lines(tmp_path / "mixed.txt", lines))
    assert "line 6" in message and "6 values" in message and "expected 3" in message


def test_error_not_a_number(tmp_path, small_blocks):
    lines = [f"w{i} 1.0 2.0 3.0" for i in range(50)]
    lines[33] = "w33 1.0 abc 3.0"
    message = load_error(write_lines(tmp_path / "nan.txt", lines))
    assert "line 34" in message and "'abc'" in message


def test_error_first_problem_wins(tmp_path):
    # A bad number on line 3 is reported before the short line 5 of the same block.
    lines = ["a 1 2 3", "b 4 5 6", "c 7 x 9", "d 1 1 1", "e 1 1", "f 2 2 2"]
    message = load_error(write_lines(tmp_path / "two.txt", lines))
    assert "line 3" in message and "'x'" in message


def test_words_with_spaces_and_vocabulary(tmp_path):
    lines = ["a 1 2", ". . . 3 4", "b c 5 6", "d 7 8"]
    path = write_lines(tmp_path / "spaces.txt", lines)
    subset = WordVectors.load(path, vocabulary=["b c", "d", ". . ."])
    assert subset.words == [". . .", "b c", "d"]
    np.testing.assert_array_equal(subset.matrix, [[3, 4], [5, 6], [7, 8]])


def test_error_non_utf8(tmp_path, small_blocks):
    lines = [f"w{i} 1.0 2.0" for i in range(70)]
    path = write_lines(tmp_path / "latin1.txt", lines)
    data = path.read_bytes().replace(b"w65 ", b"caf\xe9 ")
    path.write_bytes(data)
    message = load_error(path)
    assert "line 66" in message and "0xe9" in message and "UTF-8" in message
    assert "unicode_errors='replace'" in message


def test_error_binary_file_given_as_text(tmp_path):
    path = write_word2vec_binary(tmp_path / "GoogleNews.bin", WORDS, make_matrix(dim=50))
    message = load_error(path, format="glove")
    assert "line 1" in message and "binary word2vec" in message and "format='word2vec'" in message
    assert "binary word2vec" in load_error(path, format="fasttext")
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(b"word 1.0\x00\x01\x02 2.0\n")
    assert "binary data" in load_error(garbage)


def test_error_header_count_mismatch(tmp_path):
    matrix = make_matrix()
    path = write_text(tmp_path / "w2v.txt", WORDS, matrix, header=True)
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[0] = "12 4"
    write_lines(path, lines[:-1])
    message = load_error(path)
    assert "line 1" in message and "announces 12 vectors but the file has 10" in message
    assert "'10 4'" in message
    lines[0] = "8 4"
    write_lines(path, lines[:-1])
    assert "announces 8 vectors but the file has 10" in load_error(path)
    binary = write_word2vec_binary(tmp_path / "short.bin", WORDS, matrix, count=12)
    message = load_error(binary)
    assert "announces 12 vectors" in message and "record 11" in message
    binary = write_word2vec_binary(tmp_path / "long.bin", WORDS, matrix, count=8)
    message = load_error(binary)
    assert "announces 8 vectors but more data follows" in message


def test_error_truncated_binary(tmp_path):
    path = write_word2vec_binary(tmp_path / "vectors.bin", WORDS, make_matrix(dim=6))
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    message = load_error(path)
    assert "truncated" in message and "record 10" in message


def test_error_empty_word(tmp_path, small_blocks):
    lines = [f"w{i} 1.0 2.0" for i in range(90)]
    lines[77] = " 1.0 2.0"
    message = load_error(write_lines(tmp_path / "space.txt", lines))
    assert "line 78" in message and "empty" in message


def test_error_zip_and_npy_given_as_text(tmp_path):
    archive = tmp_path / "glove.6B.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    assert "unzip" in load_error(archive)
    vectors = WordVectors(WORDS, make_matrix())
    vectors.save(tmp_path / "native.npy")
    assert "format='npy'" in load_error(tmp_path / "native.npy", format="glove")


def test_error_format_mismatch(tmp_path):
    matrix = make_matrix()
    glove = write_text(tmp_path / "glove.txt", WORDS, matrix)
    message = load_error(glove, format="word2vec")
    assert "line 1" in message and "format='glove'" in message
    w2v = write_text(tmp_path / "w2v.txt", WORDS, matrix, header=True)
    message = load_error(w2v, format="glove")
    assert "line 1" in message and "format='word2vec'" in message
    assert "vectors.npy" in load_error(glove, format="npy")


# ------------------------------------------------------------- similarity


def brute_force_most_similar(words, matrix, query, k, exclude=None):
    scores = []
    for row, word in enumerate(words):
        if word == exclude:
            continue
        vector = matrix[row].astype(np.float64)
        denominator = np.linalg.norm(vector) * np.linalg.norm(query)
        scores.append((word, float(vector @ query / denominator) if denominator else 0.0))
    return sorted(scores, key=lambda pair: -pair[1])[:k]


def test_most_similar_matches_brute_force():
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(600)]
    matrix = rng.normal(size=(600, 16)).astype(np.float32)
    matrix[17] = 0.0  # a zero vector scores 0
    vectors = WordVectors(words, matrix)
    for word in ["w0", "w123", "w599"]:
        got = vectors.most_similar(word, k=7)
        query = matrix[words.index(word)].astype(np.float64)
        expected = brute_force_most_similar(words, matrix, query, 7, exclude=word)
        assert [w for w, _ in got] == [w for w, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-5)
        assert word not in [w for w, _ in got]
    query = rng.normal(size=16)
    got = vectors.most_similar(query, k=3)
    expected = brute_force_most_similar(words, matrix, query, 3)
    assert [w for w, _ in got] == [w for w, _ in expected]
    assert len(vectors.most_similar("w1", k=10_000)) == 599
    with pytest.raises(KeyError):
        vectors.most_similar("unknown")
    with pytest.raises(ValueError, match="positive integer"):
        vectors.most_similar("w1", k=0)
    with pytest.raises(ValueError, match="shape"):
        vectors.most_similar(np.ones(3))


# ---------------------------------------------------------------- native


def test_save_load_round_trip_is_exact_and_memory_mapped(tmp_path):
    matrix = make_matrix(rows=len(WORDS), dim=9)
    vectors = WordVectors(WORDS, matrix)
    written = vectors.save(tmp_path / "saved")
    assert written == str(tmp_path / "saved" / "vectors.npy")
    assert sorted(os.listdir(tmp_path / "saved")) == ["vectors.npy", "vocab.txt"]
    assert (tmp_path / "saved" / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == WORDS
    for path, fmt in [(tmp_path / "saved", "auto"), (tmp_path / "saved", "npy"),
                      (tmp_path / "saved" / "vectors.npy", "auto")]:
        loaded = WordVectors.load(path, format=fmt)
        assert isinstance(loaded.matrix, np.memmap)
        assert not loaded.matrix.flags.writeable
        assert_same(loaded, WORDS, matrix)
        np.testing.assert_array_equal(loaded["naïve"], matrix[7])
    # Saving over the files the loaded vectors are mapped from is safe.
    loaded = WordVectors.load(tmp_path / "saved")
    loaded.save(tmp_path / "saved")
    assert_same(WordVectors.load(tmp_path / "saved"), WORDS, matrix)
    # The native matrix is float32 whatever the dtype in memory.
    WordVectors(WORDS, matrix.astype(np.float64)).save(tmp_path / "double")
    double = WordVectors.load(tmp_path / "double")
    assert isinstance(double.matrix, np.memmap) and double.matrix.dtype == np.float32
    # A path ending in .npy is a prefix: x.npy + x.vocab.txt.
    vectors.save(tmp_path / "flat" / "glove.npy")
    assert sorted(os.listdir(tmp_path / "flat")) == ["glove.npy", "glove.vocab.txt"]
    assert_same(WordVectors.load(tmp_path / "flat" / "glove.npy"), WORDS, matrix)


def test_text_to_native_round_trip(tmp_path, small_blocks):
    words = [f"w{i}" for i in range(300)]
    matrix = make_matrix(rows=300, dim=6)
    text = WordVectors.load(write_text(tmp_path / "vectors.txt", words, matrix))
    text.save(tmp_path / "native")
    native = WordVectors.load(tmp_path / "native")
    assert_same(native, words, matrix)
    assert native.most_similar("w3", k=3) == text.most_similar("w3", k=3)


def test_native_errors(tmp_path):
    vectors = WordVectors(WORDS, make_matrix())
    vectors.save(tmp_path / "saved")
    (tmp_path / "saved" / "vocab.txt").write_text("a\nb\n", encoding="utf-8")
    assert "2 words for 10 rows" in load_error(tmp_path / "saved")
    (tmp_path / "saved" / "vocab.txt").write_text("\n".join(WORDS[:4] + [""] + WORDS[5:]) + "\n")
    message = load_error(tmp_path / "saved")
    assert "line 5" in message and "empty" in message
    os.remove(tmp_path / "saved" / "vocab.txt")
    assert "vocab.txt" in load_error(tmp_path / "saved")
    with pytest.raises(ValueError, match="newline"):
        WordVectors(["a\nb", "c"], make_matrix(2)).save(tmp_path / "bad")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="existing file"):
        vectors.save(tmp_path / "file")


def test_modules_do_not_import_tensorflow():
    # The vectors package alone, without the ktransfer package __init__ (which
    # pulls in Keras): a stand-in `ktransfer` package whose path is the source tree.
    package = os.path.dirname(os.path.dirname(text_format.__file__))
    code = (
        "import sys, types\n"
        "stub = types.ModuleType('ktransfer'); stub.__path__ = [%r]\n"
        "sys.modules['ktransfer'] = stub\n"
        "import ktransfer.vectors.word_vectors, ktransfer.vectors.formats\n"
        "import ktransfer.vectors.text_format, ktransfer.vectors.word2vec_binary\n"
        "import ktransfer.vectors.native, ktransfer.vectors.glove_package\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "assert 'pyarrow' not in sys.modules and 'pandas' not in sys.modules\n"
    ) % package
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_old_and_new_import_paths_name_one_class():
    import ktransfer as kt
    import ktransfer.word_vectors as old

    assert kt.WordVectors is kt.vectors.WordVectors is old.WordVectors is WordVectors


# ------------------------------------------------------------ NaN and inf


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN", "1e50"])  # 1e50: inf in float32
def test_text_values_that_are_not_finite_are_refused_naming_the_line(tmp_path, bad):
    lines = [f"w{i} 1.0 2.0 3.0" for i in range(8)]
    lines[5] = f"dog 0.5 {bad} 1.0"
    message = load_error(write_lines(tmp_path / "vectors.txt", lines))
    assert "line 6" in message and "'dog'" in message and "finite" in message
    assert "value 2" in message


def test_not_finite_is_found_in_any_block_and_format(tmp_path, small_blocks):
    words = [f"w{i}" for i in range(200)]
    matrix = make_matrix(rows=200, dim=3)
    matrix[150, 1] = np.nan
    path = write_text(tmp_path / "vectors.vec", words, matrix, header=True, trailing_space=True)
    message = load_error(path)
    assert "line 152" in message and "'w150'" in message  # after the header line
    # Only the words kept are read: a vocabulary without w150 loads.
    assert WordVectors.load(path, vocabulary=["w1", "w2"]).words == ["w1", "w2"]
    binary = write_word2vec_binary(tmp_path / "vectors.bin", words, matrix)
    message = load_error(binary)
    assert "record 151" in message and "'w150'" in message and "finite" in message


def test_not_finite_vectors_are_refused_in_memory_and_on_save(tmp_path):
    matrix = make_matrix()
    matrix[2, 0] = np.inf
    with pytest.raises(ValueError, match="'movie'.*finite"):
        WordVectors(WORDS, matrix)
    vectors = WordVectors(WORDS, make_matrix())
    vectors.matrix[2, 0] = np.nan  # a matrix changed in place after the checks
    with pytest.raises(ValueError, match="'movie'.*NaN or infinite"):
        vectors.save(tmp_path / "saved")
    assert not os.path.exists(tmp_path / "saved")  # nothing half-written


def test_most_similar_after_a_nan_file_cannot_happen(tmp_path):
    """The failure this guards against: `most_similar('dog')` answering `('dog', -inf)`."""
    lines = ["dog nan nan", "cat 0.9 0.1", "car 0.0 1.0"]
    with pytest.raises(WordVectorsFormatError, match="line 1"):
        WordVectors.load(write_lines(tmp_path / "vectors.txt", lines))


# --------------------------------------------------------- native, atomically


def test_save_into_a_folder_is_atomic_and_keeps_other_files(tmp_path, monkeypatch):
    vectors = WordVectors(WORDS, make_matrix())
    vectors.save(tmp_path / "saved")
    other = WordVectors(WORDS[:3], make_matrix(rows=3))

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        other.save(tmp_path / "saved")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["saved"]  # no staging folder left
    assert_same(WordVectors.load(tmp_path / "saved"), WORDS, make_matrix())  # untouched
    # A folder that holds other files keeps them; each file is replaced whole.
    (tmp_path / "saved" / "README").write_text("mine")
    other.save(tmp_path / "saved")
    assert sorted(os.listdir(tmp_path / "saved")) == ["README", "vectors.npy", "vocab.txt"]
    assert_same(WordVectors.load(tmp_path / "saved"), WORDS[:3], make_matrix(rows=3))


# ------------------------------------------------------------ real GloVe


def write_glove_text(path, words, matrix, header=False, trailing_space=False):
    """Write like the published files, with pyarrow's shortest round-trip
    float formatting (the same digits as glove.6B.50d.txt)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = [pa.array(words, pa.string())]
    columns += [pc.cast(pa.array(matrix[:, j]), pa.string()) for j in range(matrix.shape[1])]
    lines = pc.binary_join_element_wise(*columns, " ").to_pylist()
    suffix = " \n" if trailing_space else "\n"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        if header:
            f.write(f"{len(words)} {matrix.shape[1]}\n")
        f.write(suffix.join(lines) + suffix)
    return path


@pytest.fixture(scope="module")
def glove_slice():
    if not assets.is_cached("glove50"):
        pytest.skip(GLOVE_MISSING)
    package = WordVectors.from_glove_package(assets.path("glove50"))
    rows = list(range(20_000)) + [399_999, 250_000]
    words = [package.words[row] for row in rows]
    for word in ["movie", "good", "bad"]:
        assert word in words
    return words, np.array(package.matrix[rows]), package


@pytest.mark.slow
def test_real_glove_package(glove_slice):
    _, _, package = glove_slice
    assert len(package) == 400_000 and package.dim == 50
    assert package.words[:3] == ["the", ",", "."]
    assert isinstance(package.matrix, np.memmap)
    neighbours = [word for word, _ in package.most_similar("good", k=10)]
    assert "better" in neighbours and "good" not in neighbours
    assert package.most_similar("movie", k=1)[0][0] in ("film", "movies")


@pytest.mark.slow
def test_real_glove_slice_in_every_format(tmp_path, glove_slice):
    words, matrix, _ = glove_slice
    files = {
        "glove": write_glove_text(tmp_path / "glove.6B.50d.txt", words, matrix),
        "word2vec text": write_glove_text(tmp_path / "glove.w2v.txt", words, matrix, header=True),
        "fasttext": write_glove_text(tmp_path / "glove.vec", words, matrix, header=True,
                                     trailing_space=True),
        "word2vec binary": write_word2vec_binary(tmp_path / "glove.bin", words, matrix),
    }
    first_line = (tmp_path / "glove.6B.50d.txt").read_text(encoding="utf-8").split("\n")[0]
    assert first_line.startswith("the 0.418 0.24968 -0.41242 0.1217 0.34527 ")
    for name, path in files.items():
        vectors = WordVectors.load(path, format="auto")
        assert_same(vectors, words, matrix)  # exact: shortest round-trip digits
        np.testing.assert_array_equal(vectors["movie"], matrix[words.index("movie")])
    subset = WordVectors.load(files["glove"], vocabulary=["bad", "good", "movie", "zzzz-absent"])
    assert subset.words == sorted(["bad", "good", "movie"], key=words.index)  # file order
    np.testing.assert_array_equal(subset["bad"], matrix[words.index("bad")])
    native = tmp_path / "native"
    WordVectors.load(files["fasttext"]).save(native)
    loaded = WordVectors.load(native)
    assert isinstance(loaded.matrix, np.memmap)
    assert_same(loaded, words, matrix)
