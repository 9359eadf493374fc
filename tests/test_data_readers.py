"""Tests for `ktransfer.data.readers`: files and lists to `tf.data`."""

import collections
import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import ktransfer.data.readers as readers

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
requires_shared_data = pytest.mark.skipif(
    not os.path.isdir(SHARED_DATA),
    reason="../shared/data not found: these tests read the real datasets that "
    "CI provides beside the repo",
)


def _write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _items(dataset):
    return list(dataset.as_numpy_iterator())


# GLUE style: no quoting; quotes are ordinary (unbalanced, leading) characters,
# texts end with a space, and words like "null" / "NA" are just words.
GLUE_TEXTS = [
    "it 's a charming and often affecting journey . ",
    '"please set 5 minute timer',
    'he said " no way . ',
    '"Any time," he told her . ',
    "",
    "null",
    "NA",
    "nan",
    "  leading and trailing  ",
    "caf\u00e9 \u597d ",
]
GLUE_LABELS = [1, 0, 0, 1, 0, 1, 0, 1, 1, 0]


@pytest.fixture
def glue_tsv(tmp_path):
    lines = ["sentence\tlabel"] + [
        f"{text}\t{label}" for text, label in zip(GLUE_TEXTS, GLUE_LABELS)
    ]
    return _write(tmp_path / "train.tsv", "\n".join(lines) + "\n")


# --------------------------------------------------------------------------
# TSV
# --------------------------------------------------------------------------


@pytest.mark.parametrize("quoting", ["auto", "none"])
def test_tsv_glue_style_round_trips_text_byte_exact(glue_tsv, quoting):
    dataset = readers.from_tsv(glue_tsv, quoting=quoting)
    items = _items(dataset)
    assert [text.decode("utf-8") for text, _ in items] == GLUE_TEXTS
    assert [int(label) for _, label in items] == GLUE_LABELS
    assert dataset.class_names == ["0", "1"]
    assert dataset.num_examples == len(GLUE_TEXTS)
    assert int(dataset.cardinality()) == len(GLUE_TEXTS)
    assert dataset.element_spec == (
        tf.TensorSpec((), tf.string),
        tf.TensorSpec((), tf.int32),
    )


def test_tsv_quoted_is_detected_and_parsed(tmp_path):
    # As the Amazon multi-domain files: csv-module output, CRLF row ends,
    # fields with embedded LF, tabs and doubled quotes.
    texts = ['Horrible book\n\tI "hated" it.\n\nreally', "fine\tok", 'plain "x"', ""]
    path = tmp_path / "books.tsv"
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\r\n")
        writer.writerow(["sentence", "label"])
        writer.writerows([[text, label] for text, label in zip(texts, [0, 1, 1, 0])])
    for quoting in ("auto", "minimal"):
        items = _items(readers.from_tsv(path, quoting=quoting))
        assert [text.decode("utf-8") for text, _ in items] == texts
        assert [int(label) for _, label in items] == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="quoting='minimal'") as error:
        readers.from_tsv(path, quoting="none")
    assert "line 2" in str(error.value)


def test_tsv_auto_detects_quote_all_files(tmp_path):
    path = tmp_path / "quoted.tsv"
    _write(path, '"sentence"\t"label"\n"a ""b"" c"\t"pos"\n"d"\t"neg"\n')
    dataset = readers.from_tsv(path)
    assert [text for text, _ in _items(dataset)] == [b'a "b" c', b"d"]
    assert dataset.class_names == ["neg", "pos"]


def test_tsv_minimal_quoting_on_glue_file_names_the_fix(glue_tsv):
    with pytest.raises(ValueError, match="quoting='none'"):
        readers.from_tsv(glue_tsv, quoting="minimal")


def test_tsv_pairs_and_string_labels(tmp_path):
    path = _write(
        tmp_path / "mnli.tsv",
        "index\tsentence1\tsentence2\tgold\n"
        "0\ta man eats \tsomeone eats\tentailment\n"
        "1\ta cat\ta dog\tcontradiction\n",
    )
    dataset = readers.from_tsv(path, text=("sentence1", "sentence2"), label="gold")
    assert dataset.element_spec[0] == (
        tf.TensorSpec((), tf.string),
        tf.TensorSpec((), tf.string),
    )
    (pair, label), _ = _items(dataset)
    assert pair == (b"a man eats ", b"someone eats")
    assert dataset.class_names == ["contradiction", "entailment"]
    assert label == 1


def test_tsv_unlabelled_and_multi_label(tmp_path):
    path = _write(
        tmp_path / "tags.tsv", "sentence\tlabel\ngoal\tsports\nvote\tpolitics, sports\nhm\t\n"
    )
    texts = readers.from_tsv(path, label=None)
    assert texts.element_spec == tf.TensorSpec((), tf.string)
    assert texts.class_names is None
    assert _items(texts) == [b"goal", b"vote", b"hm"]

    tags = readers.from_tsv(path, multi_label=True)
    assert tags.class_names == ["politics", "sports"]
    assert tags.element_spec[1] == tf.TensorSpec((2,), tf.float32)
    np.testing.assert_array_equal(
        np.stack([label for _, label in _items(tags)]), [[0, 1], [1, 1], [0, 0]]
    )


def test_tsv_ragged_row_names_the_line(tmp_path):
    path = _write(tmp_path / "bad.tsv", "sentence\tlabel\nok\t1\nno label here\nfine\t0\n")
    with pytest.raises(ValueError, match=r"line 3: expected 2 fields"):
        readers.from_tsv(path)


def test_tsv_rejects_unknown_quoting(glue_tsv):
    with pytest.raises(ValueError, match="quoting"):
        readers.from_tsv(glue_tsv, quoting="csv")


# --------------------------------------------------------------------------
# Labels (via from_lists unless a file matters)
# --------------------------------------------------------------------------


def test_string_labels_become_sorted_indices():
    dataset = readers.from_lists(["a", "b", "c"], ["pos", "neg", "pos"])
    assert dataset.class_names == ["neg", "pos"]
    assert [int(label) for _, label in _items(dataset)] == [1, 0, 1]
    assert dataset.num_examples == 3
    from_numpy = readers.from_lists(np.array(["a", "b"]), np.array(["pos", "neg"]))
    assert from_numpy.class_names == ["neg", "pos"]


def test_explicit_class_names_keep_their_order():
    dataset = readers.from_lists(
        ["a", "b", "c"], ["pos", "neg", "pos"], class_names=["pos", "neg", "neutral"]
    )
    assert dataset.class_names == ["pos", "neg", "neutral"]
    assert [int(label) for _, label in _items(dataset)] == [0, 1, 0]


def test_integer_labels_default_and_explicit_class_names():
    dataset = readers.from_lists(["a", "b"], [0, 2])
    assert dataset.class_names == ["0", "1", "2"]
    assert [int(label) for _, label in _items(dataset)] == [0, 2]
    named = readers.from_lists(["a", "b"], np.array([1, 0]), class_names=["neg", "pos"])
    assert named.class_names == ["neg", "pos"]
    assert [int(label) for _, label in _items(named)] == [1, 0]
    # Integral floats (as JSON or pandas give them) are integers.
    assert _items(readers.from_lists(["a"], [1.0]))[0][1] == 1


def test_digit_string_labels_map_by_name_when_class_names_list_them(tmp_path):
    path = _write(tmp_path / "stars.tsv", "sentence\tlabel\nbad\t1\ngreat\t5\n")
    assert readers.from_tsv(path).class_names == ["0", "1", "2", "3", "4", "5"]
    stars = readers.from_tsv(path, class_names=["1", "2", "3", "4", "5"])
    assert [int(label) for _, label in _items(stars)] == [0, 4]


def test_integer_labels_keep_numeric_order_and_a_stray_label_is_an_error(tmp_path):
    # Issue 22, defect 4: labels 0..10 plus one "x" were sorted as strings
    # ('0', '1', '10', '2', ..., 'x'), so "2" trained as class 3.
    rows = "".join(f"text {i}\t{i}\n" for i in range(11))
    clean = _write(tmp_path / "clean.tsv", "sentence\tlabel\n" + rows)
    dataset = readers.from_tsv(clean)
    assert dataset.class_names == [str(i) for i in range(11)]
    assert [int(label) for _, label in _items(dataset)] == list(range(11))

    stray = _write(tmp_path / "stray.tsv", "sentence\tlabel\n" + rows + "odd one\tx\n")
    with pytest.raises(ValueError, match="Label 'x' at line 13 of .*stray.tsv.* is not an integer"):
        readers.from_tsv(stray)
    # Named explicitly, the same labels are class names in the given order.
    names = [str(i) for i in range(11)] + ["x"]
    named = readers.from_tsv(stray, class_names=names)
    assert [int(label) for _, label in _items(named)] == list(range(12))

    typo = _write(tmp_path / "typo.tsv", "sentence\tlabel\na\t0\nb\t1\nc\tl\nd\t1\n")
    with pytest.raises(ValueError, match="Label 'l' at line 4 of .*typo.tsv") as error:
        readers.from_tsv(typo)
    assert "['0', '1']" in str(error.value) and "class_names" in str(error.value)
    # One integer among names is the same mistake the other way round.
    with pytest.raises(ValueError, match=r"Label '1' at labels\[2\] is an integer"):
        readers.from_lists(["a", "b", "c"], ["pos", "neg", "1"])


def test_empty_label_is_an_error_naming_the_line(tmp_path):
    # Issue 22, defect 4: an empty label field became an extra class "".
    path = _write(tmp_path / "gap.tsv", "sentence\tlabel\na\t0\nb\t \nc\t1\n")
    with pytest.raises(ValueError, match="Missing label .* at line 3 of .*gap.tsv"):
        readers.from_tsv(path)
    csv_path = _write(tmp_path / "gap.csv", "text,label\na,pos\nb,\n")
    with pytest.raises(ValueError, match="Missing label .* at line 3 of .*gap.csv"):
        readers.from_csv(csv_path, "text", "label")
    jsonl = _write(tmp_path / "gap.jsonl", '{"t": "a", "y": "pos"}\n{"t": "b", "y": ""}\n')
    with pytest.raises(ValueError, match="Missing label .* at line 2 of .*gap.jsonl"):
        readers.from_jsonl(jsonl, "t", "y")
    with pytest.raises(ValueError, match=r"Missing label .* at labels\[1\]"):
        readers.from_lists(["a", "b"], ["pos", ""])
    # With multi_label=True an empty field is an example with no labels.
    tags = _write(tmp_path / "tags.tsv", "sentence\tlabel\na\tx,y\nb\t\n")
    multi = readers.from_tsv(tags, multi_label=True)
    np.testing.assert_array_equal(np.stack([y for _, y in _items(multi)]), [[1, 1], [0, 0]])


@pytest.mark.parametrize("kind", ["none", "minimal", "csv"])
def test_fields_longer_than_the_csv_default_limit_are_read(tmp_path, kind):
    # Issue 22, defect 8: the csv module refuses fields over 131,072 characters.
    long_text = "word " * 30_000  # 150,000 characters
    limit = csv.field_size_limit()
    if kind == "csv":
        path = _write(tmp_path / "long.csv", f'text,label\n"{long_text}",1\nshort,0\n')
        dataset = readers.from_csv(path, "text", "label")
    else:
        path = _write(tmp_path / "long.tsv", f"sentence\tlabel\n{long_text}\t1\nshort\t0\n")
        dataset = readers.from_tsv(path, quoting=kind)
    assert _items(dataset) == [(long_text.encode(), 1), (b"short", 0)]
    assert csv.field_size_limit() == limit  # the process-wide limit is restored


def test_label_out_of_range_names_value_and_line(tmp_path):
    path = _write(tmp_path / "x.tsv", "sentence\tlabel\na\t0\nb\t1\nc\t2\n")
    with pytest.raises(ValueError, match="label out of range") as error:
        readers.from_tsv(path, class_names=["neg", "pos"])
    message = str(error.value)
    assert "2 at line 4" in message and "x.tsv" in message and "class_names" in message
    with pytest.raises(ValueError, match=r"label out of range: -1 at labels\[1\]"):
        readers.from_lists(["a", "b"], [0, -1])


def test_unknown_string_label_names_label_line_and_fix(tmp_path):
    path = _write(tmp_path / "x.tsv", "sentence\tlabel\na\tpos\nb\tneutral\n")
    with pytest.raises(ValueError, match="Unknown label 'neutral' at line 3") as error:
        readers.from_tsv(path, class_names=["neg", "pos"])
    assert "add it to `class_names`" in str(error.value)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([True, False], "Boolean label"),
        ([0.5, 1.0], "not an integer"),
        ([0, None], "Missing label"),
        ([0, "pos"], "mix integers and strings"),
        ([["a"], ["b"]], "multi_label=True"),
    ],
)
def test_bad_label_values(labels, message):
    with pytest.raises(ValueError, match=message):
        readers.from_lists(["a", "b"], labels)


def test_multi_label_lists():
    dataset = readers.from_lists(
        ["a", "b", "c"], [["sports", "politics"], [], ["sports"]], multi_label=True
    )
    assert dataset.class_names == ["politics", "sports"]
    np.testing.assert_array_equal(
        np.stack([label for _, label in _items(dataset)]), [[1, 1], [0, 0], [0, 1]]
    )
    with pytest.raises(ValueError, match="must be a list of labels"):
        readers.from_lists(["a"], ["sports"], multi_label=True)


# --------------------------------------------------------------------------
# from_lists input checks
# --------------------------------------------------------------------------


def test_from_lists_pairs_and_unlabelled():
    pairs = readers.from_lists([("a", "b"), ("c", "d")], [1, 0])
    assert [pair for pair, _ in _items(pairs)] == [(b"a", b"b"), (b"c", b"d")]
    texts = readers.from_lists(["x", ""])
    assert _items(texts) == [b"x", b""]
    assert texts.class_names is None and texts.num_examples == 2


def test_from_lists_input_errors():
    with pytest.raises(ValueError, match="different lengths: 2 texts but 1 labels"):
        readers.from_lists(["a", "b"], [0])
    with pytest.raises(ValueError, match=r"texts must be strings, but texts\[1\] is int"):
        readers.from_lists(["a", 3], [0, 1])
    with pytest.raises(ValueError, match="empty dataset"):
        readers.from_lists([], [])
    with pytest.raises(TypeError, match="not a single str"):
        readers.from_lists("a text", [0])
    with pytest.raises(ValueError, match="class_names"):
        readers.from_lists(["a"], class_names=["x"])


# --------------------------------------------------------------------------
# File errors
# --------------------------------------------------------------------------


def test_missing_file(tmp_path):
    _write(tmp_path / "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(FileNotFoundError, match="train.tsv") as error:
        readers.from_tsv(tmp_path / "train.tsv")
    assert "dev.tsv" in str(error.value)  # lists what the folder does hold


@pytest.mark.parametrize("content", ["", "\n\n", "sentence\tlabel\n"])
def test_empty_file_or_header_only(tmp_path, content):
    path = _write(tmp_path / "empty.tsv", content)
    with pytest.raises(ValueError, match="empty dataset"):
        readers.from_tsv(path)


def test_missing_column_lists_existing_columns(glue_tsv):
    with pytest.raises(ValueError, match="no column 'text'") as error:
        readers.from_tsv(glue_tsv, text="text")
    assert "['sentence', 'label']" in str(error.value)


def test_non_utf8_byte_names_the_line(tmp_path):
    path = _write(tmp_path / "latin1.tsv", b"sentence\tlabel\nok\t1\ncaf\xe9\t0\n")
    with pytest.raises(ValueError, match="not valid UTF-8: byte 0xe9 at line 3"):
        readers.from_tsv(path)


# --------------------------------------------------------------------------
# CSV and JSONL
# --------------------------------------------------------------------------


def test_csv_quoted_fields_pairs_and_multi_label(tmp_path):
    path = _write(
        tmp_path / "reviews.csv",
        'title,body,tags\n"Good, cheap","line one\nline ""two"" ",\"a,b\"\nmeh,,c\n',
    )
    dataset = readers.from_csv(path, text=("title", "body"), label="tags", multi_label=True)
    items = _items(dataset)
    assert [pair for pair, _ in items] == [
        (b"Good, cheap", b'line one\nline "two" '),
        (b"meh", b""),
    ]
    assert dataset.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(np.stack([y for _, y in items]), [[1, 1, 0], [0, 0, 1]])

    semicolons = _write(tmp_path / "x.csv", "text;label\nnull;pos\nNA;neg\n")
    dataset = readers.from_csv(semicolons, "text", "label", delimiter=";")
    assert _items(dataset) == [(b"null", 1), (b"NA", 0)]


def test_jsonl_labels_of_each_kind(tmp_path):
    records = [
        {"text": "goal ", "label": 1, "tags": ["sports"], "topic": "sports"},
        {"text": '"vote', "label": 0, "tags": ["politics", "sports"], "topic": "politics"},
    ]
    path = tmp_path / "data.jsonl"
    _write(path, "\n".join(json.dumps(r) for r in records) + "\n\n")
    ints = readers.from_jsonl(path, "text", "label")
    assert _items(ints) == [(b"goal ", 1), (b'"vote', 0)]
    assert ints.class_names == ["0", "1"]
    names = readers.from_jsonl(path, "text", "topic", class_names=["sports", "politics"])
    assert [int(y) for _, y in _items(names)] == [0, 1]
    tags = readers.from_jsonl(path, "text", "tags", multi_label=True)
    np.testing.assert_array_equal(np.stack([y for _, y in _items(tags)]), [[0, 1], [1, 1]])


def test_jsonl_errors_name_the_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", '{"text": "a", "label": 0}\n{"text": "b", label: 1}\n')
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        readers.from_jsonl(path, "text", "label")
    path = _write(tmp_path / "missing.jsonl", '{"text": "a", "label": 0}\n{"text": "b"}\n')
    with pytest.raises(ValueError, match=r"line 2: missing field 'label'.*\['text'\]"):
        readers.from_jsonl(path, "text", "label")
    path = _write(tmp_path / "number.jsonl", '{"text": 5, "label": 0}\n')
    with pytest.raises(ValueError, match="line 1: field 'text' is int"):
        readers.from_jsonl(path, "text", "label")


# --------------------------------------------------------------------------
# TFDS (offline, with mock data)
# --------------------------------------------------------------------------


def test_from_tfds_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    # Mock examples come from the builder's metadata shipped inside the TFDS
    # package: no download, no network.
    with tfds.testing.mock_data(num_examples=6):
        dataset = readers.from_tfds("glue/sst2", "train", text="sentence", label="label")
        items = _items(dataset)
        with pytest.raises(ValueError, match="no feature 'text'.*'sentence'"):
            readers.from_tfds("glue/sst2", "train", text="text", label="label")
    assert dataset.class_names == ["negative", "positive"]
    assert dataset.num_examples == 6 and len(items) == 6
    assert dataset.element_spec == (
        tf.TensorSpec((), tf.string),
        tf.TensorSpec((), tf.int32),
    )
    assert all(label in (0, 1) for _, label in items)


# --------------------------------------------------------------------------
# Real datasets (provided by CI beside the repo)
# --------------------------------------------------------------------------


def _texts_and_labels(dataset):
    """All texts and labels at once (one batch: fast on the real files)."""
    texts, labels = next(iter(dataset.batch(dataset.num_examples).as_numpy_iterator()))
    return list(texts), collections.Counter(labels.tolist())


@pytest.mark.shared_data
@requires_shared_data
def test_shared_sst2_dev():
    dataset = readers.from_tsv(os.path.join(SHARED_DATA, "sst2", "dev.tsv"))
    texts, label_counts = _texts_and_labels(dataset)
    assert dataset.num_examples == len(texts) == 872
    assert label_counts == {0: 428, 1: 444}
    assert texts[0] == b"it 's a charming and often affecting journey . "


@pytest.mark.shared_data
@requires_shared_data
def test_shared_amazon_books_quoted_tsv():
    # README: 2,000 reviews, 1,000 per label, 1,956 distinct texts; every text
    # is a quoted "<title>\n\t<body>".
    dataset = readers.from_tsv(os.path.join(SHARED_DATA, "amazon_multidomain", "books.tsv"))
    texts, label_counts = _texts_and_labels(dataset)
    assert dataset.num_examples == len(texts) == 2000
    assert label_counts == {0: 1000, 1: 1000}
    assert len(set(texts)) == 1956
    assert texts[0].startswith(b"Horrible book, horrible.\n\tTHis book was horrible.")
    assert all(b"\n\t" in text for text in texts)


@pytest.mark.shared_data
@requires_shared_data
@pytest.mark.parametrize(
    "relative_path, num_examples, label, label_count, quoted_text",
    [
        # GLUE-style files whose texts start with an unbalanced quote: "auto"
        # must not switch to quote processing.
        ("clinc150/train.tsv", 15100, 150, 100, b'"please set 5 minute timer'),
        ("semeval2010_task8/train.tsv", 8000, 0, 1410, b'"Suzy" probably refers'),
    ],
)
def test_shared_glue_style_files_with_leading_quotes(
    relative_path, num_examples, label, label_count, quoted_text
):
    dataset = readers.from_tsv(os.path.join(SHARED_DATA, *relative_path.split("/")))
    texts, label_counts = _texts_and_labels(dataset)
    assert dataset.num_examples == len(texts) == num_examples
    assert label_counts[label] == label_count
    assert any(text.startswith(quoted_text) for text in texts)
