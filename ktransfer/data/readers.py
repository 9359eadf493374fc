"""Readers: labelled text files and lists as `tf.data.Dataset`s.

Every reader returns an unbatched `tf.data.Dataset` whose elements are

- `(text, label)`: `text` a scalar `tf.string`, `label` a scalar `tf.int32`
  class index (or, with `multi_label=True`, a `float32` multi-hot vector of
  length `len(class_names)`);
- `((text_a, text_b), label)` for sentence pairs (`text=("a", "b")`);
- `text` or `(text_a, text_b)` alone when there are no labels (`label=None`).

The dataset carries two attributes, as `keras.utils.text_dataset_from_directory`
does: `class_names` (the label vocabulary, a list of str; `None` when
unlabelled) and `num_examples` (an int). `class_names[i]` is the name of class
index `i`. Like any Python attribute they are *not* carried over by
`map`/`batch`/...: read them first (`ktransfer.data.prepare` does).

Labels become class indices by these rules:

- String labels (`"pos"`, `"neg"`): `class_names` is the list you pass (its
  order kept) or, by default, the sorted unique labels.
- Integer labels, and strings that are all decimal integers (`"0"`, `"1"` as in
  GLUE TSVs), are used as indices: they must be `>= 0` and, when `class_names`
  is given, `< len(class_names)`. By default `class_names` is
  `["0", "1", ..., str(max_label)]`. When `class_names` is given and contains
  every label string (e.g. star ratings `"1"`..`"5"` with
  `class_names=["1", "2", "3", "4", "5"]`), labels are looked up by name.
- `multi_label=True`: each label is a list of labels (or, in TSV/CSV files, one
  string joined with `label_separator`, e.g. `"sports,politics"`); the result
  is a multi-hot vector. Lists hold class names or indices, not multi-hot
  vectors.
- Booleans, non-integral floats and missing labels (`None`, or an empty
  label field in a file) are errors, naming the line.
- Integer-looking labels mixed with other strings (a typo `l` among `0`/`1`,
  labels `0`..`10` plus one `x`) are an error naming the line of the odd
  one out, not an extra class: integers are never re-sorted as strings
  (`"10"` before `"2"`). Pass `class_names` listing every label to read
  such labels as names.

Files are read whole on the host (the datasets this package targets have at
most ~100k rows) and handed to `tf.data.Dataset.from_tensor_slices`, so the
cardinality is known and errors point at a line of the file before any
training starts. Text is kept byte-exact: no stripping, no NaN conversion of
words like "null" or "NA", empty texts stay `""`.

Example:

```python
import ktransfer as kt
train = kt.data.from_lists(["a great film", "a dull film"], ["pos", "neg"])
train.class_names   # ['neg', 'pos']
next(iter(train))   # (<tf.Tensor: b'a great film'>, <tf.Tensor: 1>)
```
"""

import csv
import io
import json
import numbers
import os
import re

import numpy as np
import tensorflow as tf

QUOTING_MODES = ("auto", "none", "minimal")

# Strings read as integer class indices ("0", "1", "-1", "+1"; not "1.0").
_INTEGER_STRING = re.compile(r"[+-]?[0-9]+")

_QUOTE = '"'

# The largest csv field size limit every platform accepts (a C long).
_MAX_FIELD_LIMIT = 2**31 - 1


# --------------------------------------------------------------------------
# Public readers.
# --------------------------------------------------------------------------


def from_lists(texts, labels=None, class_names=None, multi_label=False):
    """Build a dataset from in-memory texts and labels.

    Args:
        texts: a list (or tuple, numpy array, pandas Series) of str, or of
            `(text_a, text_b)` pairs of str for sentence-pair tasks.
        labels: `None` for unlabelled texts, or one label per text: an int
            class index or a str class name; with `multi_label=True` a list
            of those per text.
        class_names: optional list of class names; fixes the order of the
            classes (see the module docstring for the rules).
        multi_label: each label is a list of labels; yields multi-hot
            `float32` vectors.

    Returns:
        A `tf.data.Dataset` of `(text, label)` (or `text` when `labels` is
        None) with `class_names` and `num_examples` attributes.

    Example:

    ```python
    import ktransfer as kt
    ds = kt.data.from_lists(["fun", "dull", "ok"], [1, 0, 1])
    ds.class_names   # ['0', '1']
    pairs = kt.data.from_lists([("a man eats", "someone eats")], ["entailment"])
    tags = kt.data.from_lists(["goal!"], [["sports"]], multi_label=True)
    ```
    """
    texts = _as_list(texts, "texts")
    if not texts:
        raise ValueError(
            "empty dataset: `texts` is empty. Pass at least one text."
        )
    text_columns = _check_texts(texts)
    if labels is not None:
        labels = _as_list(labels, "labels")
        if len(labels) != len(texts):
            raise ValueError(
                f"`texts` and `labels` have different lengths: {len(texts)} texts "
                f"but {len(labels)} labels. Pass exactly one label per text."
            )
    _check_label_options(labels is not None, class_names, "labels=None")

    def locate(i):
        return f"labels[{i}]"

    return _build_dataset(
        text_columns, labels, class_names, multi_label, locate
    )


def from_tsv(
    path,
    text="sentence",
    label="label",
    class_names=None,
    quoting="auto",
    multi_label=False,
    label_separator=",",
):
    """Read a tab-separated file with a header row (GLUE style or quoted).

    Two kinds of TSV are common and must be read differently:

    - GLUE-style (SST-2, CoLA, ...): no quoting at all. A `"` is an ordinary
      character, can be unbalanced and can start a field; texts often end with
      a space. Read with `quoting="none"`: every line is one row, split on tabs,
      and text is kept byte-exact.
    - Quoted TSV, as written by Python's `csv` module or pandas: fields that
      contain tabs, line breaks or quotes are wrapped in `"..."` with inner
      quotes doubled. Read with `quoting="minimal"` (a CSV parser).

    `quoting="auto"` (the default) reads the file without quote processing and
    switches to `"minimal"` only when that is clearly needed: some line does not
    have as many fields as the header (a quoted field spans tabs or lines), or
    every data row has a field wrapped in quotes. Force the mode when a file
    is ambiguous, e.g. a quoted TSV whose only quoted fields contain `""`.

    Args:
        path: path of the `.tsv` file. Its first line is the header.
        text: the text column, or a `(text_a, text_b)` tuple of two columns
            for sentence-pair tasks.
        label: the label column, or `None` to read texts only.
        class_names: optional list of class names (see the module docstring).
        quoting: `"auto"`, `"none"` or `"minimal"` (see above).
        multi_label: labels are `label_separator`-joined lists of labels;
            yields multi-hot `float32` vectors.
        label_separator: separator of the labels in a multi-label field.

    Returns:
        A `tf.data.Dataset` of `(text, label)` (or `text`) with `class_names`
        and `num_examples` attributes.

    Example:

    ```python
    import pathlib
    import ktransfer as kt
    pathlib.Path("toy.tsv").write_text('sentence\\tlabel\\n"fine , i guess \\t1\\n')
    ds = kt.data.from_tsv("toy.tsv")
    next(iter(ds))   # (<tf.Tensor: b'"fine , i guess '>, <tf.Tensor: 1>)
    ```
    """
    if quoting not in QUOTING_MODES:
        raise ValueError(
            f"`quoting` must be one of {QUOTING_MODES}. Received: {quoting!r}"
        )
    text_columns = _column_spec(text, "text")
    _check_label_column(label)
    _check_label_options(label is not None, class_names, "label=None")
    path, content = read_text_file(path)
    header, rows, lines = _parse_tsv(content, path, quoting)
    return _table_dataset(
        path, header, rows, lines, text_columns, label,
        class_names, multi_label, label_separator, kind="tsv",
    )


def from_csv(
    path,
    text,
    label,
    class_names=None,
    delimiter=",",
    multi_label=False,
    label_separator=",",
):
    """Read a CSV file with a header row (standard `"` quoting).

    Args:
        path: path of the `.csv` file. Its first line is the header.
        text: the text column, or a `(text_a, text_b)` tuple of two columns.
        label: the label column, or `None` to read texts only.
        class_names: optional list of class names (see the module docstring).
        delimiter: field separator, one character.
        multi_label: labels are `label_separator`-joined lists of labels
            (quote the field when the separator is also the delimiter, e.g.
            `"sports,politics"`); yields multi-hot `float32` vectors.
        label_separator: separator of the labels in a multi-label field.

    Returns:
        A `tf.data.Dataset` of `(text, label)` (or `text`) with `class_names`
        and `num_examples` attributes.

    Example:

    ```python
    import pathlib
    import ktransfer as kt
    pathlib.Path("toy.csv").write_text('review,stars\\n"Good, cheap",pos\\nmeh,neg\\n')
    ds = kt.data.from_csv("toy.csv", text="review", label="stars")
    ds.class_names   # ['neg', 'pos']
    ```
    """
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(
            f"`delimiter` must be a single character. Received: {delimiter!r}"
        )
    if delimiter in (_QUOTE, "\n", "\r"):
        raise ValueError(
            f"`delimiter` cannot be a quote or a line break. Received: {delimiter!r}"
        )
    text_columns = _column_spec(text, "text")
    _check_label_column(label)
    _check_label_options(label is not None, class_names, "label=None")
    path, content = read_text_file(path)
    rows, lines = _read_rows(content, path, delimiter, quoted=True)
    header, rows, lines = _split_header(rows, lines, path)
    _check_rectangular(header, rows, lines, path, delimiter, hint="")
    return _table_dataset(
        path, header, rows, lines, text_columns, label,
        class_names, multi_label, label_separator, kind="csv",
    )


def from_jsonl(path, text, label, class_names=None, multi_label=False):
    """Read a JSON Lines file: one JSON object per line.

    Args:
        path: path of the `.jsonl` file. Blank lines are skipped.
        text: the text field, or a `(text_a, text_b)` tuple of two fields.
            Text values must be JSON strings.
        label: the label field (an int, a str, or with `multi_label=True` a
            list of those), or `None` to read texts only.
        class_names: optional list of class names (see the module docstring).
        multi_label: each label is a list of labels; yields multi-hot
            `float32` vectors.

    Returns:
        A `tf.data.Dataset` of `(text, label)` (or `text`) with `class_names`
        and `num_examples` attributes.

    Example:

    ```python
    import pathlib
    import ktransfer as kt
    pathlib.Path("toy.jsonl").write_text(
        '{"text": "goal!", "tags": ["sports"]}\\n'
        '{"text": "vote", "tags": ["politics"]}\\n'
    )
    ds = kt.data.from_jsonl("toy.jsonl", "text", "tags", multi_label=True)
    ds.class_names   # ['politics', 'sports']
    ```
    """
    text_columns = _column_spec(text, "text")
    _check_label_column(label)
    _check_label_options(label is not None, class_names, "label=None")
    path, content = read_text_file(path)
    fields = list(text_columns) + ([label] if label is not None else [])
    columns = [[] for _ in fields]
    lines = []
    for line_number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        record = _parse_json_line(line, line_number, path)
        for name, values in zip(fields, columns):
            if name not in record:
                raise ValueError(
                    f"{path!r}, line {line_number}: missing field {name!r}. The "
                    f"fields on that line are {sorted(record)}. Pass the right "
                    "field name (`text=`, `label=`), or `label=None` for texts "
                    "without labels."
                )
            values.append(record[name])
        lines.append(line_number)
    if not lines:
        raise ValueError(
            f"empty dataset: {path!r} has no JSON lines (only blank lines). "
            "Check the file."
        )
    texts = columns[: len(text_columns)]
    for name, values in zip(text_columns, texts):
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise ValueError(
                    f"{path!r}, line {lines[i]}: field {name!r} is "
                    f"{type(value).__name__} {value!r}, expected a string. Text "
                    "fields must be JSON strings."
                )
    labels = columns[-1] if label is not None else None

    def locate(i):
        return f"line {lines[i]} of {path!r}"

    return _build_dataset(texts, labels, class_names, multi_label, locate)


def from_tfds(name, split, text, label, data_dir=None, class_names=None):
    """Read a text classification dataset from TensorFlow Datasets.

    The split is downloaded and prepared by TFDS if needed (which needs the
    internet once), then read whole into memory. With a `ClassLabel` label
    feature, `class_names` defaults to its names.

    Args:
        name: TFDS name, e.g. `"glue/sst2"`, `"imdb_reviews"`.
        split: split name or slice, e.g. `"train"`, `"validation[:10%]"`.
        text: the text feature, or a `(text_a, text_b)` tuple of two features
            (e.g. `("sentence1", "sentence2")` for `"glue/mrpc"`).
        label: the label feature, or `None` to read texts only (GLUE test
            splits have no labels: their label is -1).
        data_dir: TFDS data folder (default: `~/tensorflow_datasets`).
        class_names: optional list of class names overriding the dataset's.

    Returns:
        A `tf.data.Dataset` of `(text, label)` (or `text`) with `class_names`
        and `num_examples` attributes.

    Example:

    ```python
    # not run: downloads GLUE from TensorFlow Datasets (needs tensorflow-datasets and the network)
    import ktransfer as kt
    train = kt.data.from_tfds("glue/sst2", "train", text="sentence", label="label")
    train.class_names   # ['negative', 'positive']
    ```
    """
    try:
        # TensorFlow Datasets is optional: only this reader needs it.
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "`from_tfds` needs TensorFlow Datasets: `pip install tensorflow-datasets`."
        ) from error

    text_columns = _column_spec(text, "text")
    _check_label_column(label)
    _check_label_options(label is not None, class_names, "label=None")
    source = f"TFDS {name!r} split {split!r}"
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    wanted = list(text_columns) + ([label] if label is not None else [])
    for feature_name in wanted:
        if feature_name not in features:
            raise ValueError(
                f"{source} has no feature {feature_name!r}. Its features are "
                f"{sorted(features.keys())}. Pass the right `text=` / `label=`."
            )
    for feature_name in text_columns:
        if features[feature_name].dtype != tf.string or features[feature_name].shape != ():
            raise ValueError(
                f"{source}: feature {feature_name!r} is {features[feature_name]!r}, "
                "not a scalar string feature, so it cannot be read as text."
            )
    if label is not None and features[label].shape != ():
        raise ValueError(
            f"{source}: label feature {label!r} has shape "
            f"{features[label].shape}; `from_tfds` reads scalar labels only."
        )
    try:
        builder.download_and_prepare()
    except Exception as error:  # Network, manual-download or disk problems.
        raise RuntimeError(
            f"TFDS could not download or prepare {name!r} into "
            f"{builder.data_dir!r}: {error}. Without internet access, run "
            f"`tfds build {name}` on a connected machine, copy its data folder "
            "here and pass `data_dir=`; or read local files with `from_tsv`."
        ) from error

    dataset = builder.as_dataset(split=split, shuffle_files=False)
    dataset = dataset.map(lambda example: {key: example[key] for key in wanted})
    batches = list(tfds.as_numpy(dataset.batch(8192)))
    if not batches:
        raise ValueError(f"empty dataset: {source} has no examples.")
    columns = [np.concatenate([batch[key] for batch in batches]) for key in wanted]
    texts = columns[: len(text_columns)]
    labels = None
    if label is not None:
        labels = columns[-1]
        label_feature = features[label]
        if class_names is None and isinstance(label_feature, tfds.features.ClassLabel):
            class_names = list(label_feature.names)
        if labels.dtype == object:  # String labels come back as bytes.
            labels = [value.decode("utf-8") for value in labels]

    def locate(i):
        return f"example {i} of {source}"

    return _build_dataset(texts, labels, class_names, False, locate)


# --------------------------------------------------------------------------
# Argument checks.
# --------------------------------------------------------------------------


def _as_list(values, name):
    """`values` as a list; rejects a bare string, which would iterate chars."""
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"`{name}` must be a list, not a single {type(values).__name__}. "
            f"Wrap it: `{name}=[{values!r}]`."
        )
    if isinstance(values, dict) or not hasattr(values, "__iter__"):
        raise TypeError(
            f"`{name}` must be a list (or tuple, numpy array, pandas Series). "
            f"Received: {type(values).__name__}"
        )
    return list(values)


def _check_texts(texts):
    """Validate texts; return them as a 1-tuple or a 2-tuple of columns."""
    if isinstance(texts[0], (tuple, list, np.ndarray)):
        for i, pair in enumerate(texts):
            if not (
                isinstance(pair, (tuple, list, np.ndarray))
                and len(pair) == 2
                and all(isinstance(part, str) for part in pair)
            ):
                raise ValueError(
                    f"texts[{i}] is {pair!r}, but texts[0] is a pair: for "
                    "sentence-pair tasks every item must be a (str, str) pair."
                )
        return ([pair[0] for pair in texts], [pair[1] for pair in texts])
    for i, value in enumerate(texts):
        if not isinstance(value, str):
            raise ValueError(
                f"texts must be strings, but texts[{i}] is "
                f"{type(value).__name__} {value!r}. Convert them first, e.g. "
                "`[str(t) for t in texts]` (or `t.decode('utf-8')` for bytes)."
            )
    return (texts,)


def _column_spec(columns, argument):
    """A column name, or a pair of them, as a tuple of 1 or 2 names."""
    if isinstance(columns, str):
        return (columns,)
    if (
        isinstance(columns, (tuple, list))
        and len(columns) == 2
        and all(isinstance(column, str) for column in columns)
    ):
        return tuple(columns)
    raise TypeError(
        f"`{argument}` must be a column name (str) or a pair of names for "
        f"sentence pairs, e.g. ('sentence1', 'sentence2'). Received: {columns!r}"
    )


def _check_label_column(label):
    if label is not None and not isinstance(label, str):
        raise TypeError(
            f"`label` must be a column name (str) or None. Received: {label!r}"
        )


def _check_label_options(has_labels, class_names, unlabelled):
    if class_names is not None and not has_labels:
        raise ValueError(
            f"`class_names` was given with {unlabelled}: class names only apply "
            "to labelled data. Drop `class_names`, or pass the labels."
        )


def _check_class_names(class_names):
    if isinstance(class_names, str) or not hasattr(class_names, "__iter__"):
        raise TypeError(
            "`class_names` must be a list of str, e.g. ['negative', 'positive']. "
            f"Received: {class_names!r}"
        )
    class_names = list(class_names)
    if not class_names:
        raise ValueError("`class_names` is empty. Pass at least one class name.")
    for name in class_names:
        if not isinstance(name, str):
            raise TypeError(
                f"`class_names` must hold str, but it contains {name!r} "
                f"({type(name).__name__})."
            )
    duplicates = sorted({name for name in class_names if class_names.count(name) > 1})
    if duplicates:
        raise ValueError(f"`class_names` has duplicates: {duplicates}.")
    return class_names


# --------------------------------------------------------------------------
# Files.
# --------------------------------------------------------------------------


def read_text_file(path, expected="a header line and data rows"):
    """Read a whole UTF-8 text file; return `(path, content)`.

    The readers of this package (`from_tsv`, `from_csv`, `from_jsonl`,
    `from_conll`) share it, so that their file errors read the same: a
    missing file lists what its folder holds, an empty file says what was
    `expected`, and bytes that are not UTF-8 are named by line and column
    with the command that re-encodes the file. A leading BOM is dropped.

    Args:
        path: the file (str or path-like).
        expected: what the file should hold, for the empty-file error.

    Returns:
        `(path, content)`: `path` as a str, `content` the decoded text.

    Example:

    ```python
    import pathlib
    from ktransfer.data.readers import read_text_file
    pathlib.Path("toy.txt").write_bytes(b"caf\\xc3\\xa9\\n")
    read_text_file("toy.txt")   # ('toy.txt', 'café\\n')
    ```
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"{path!r} is a folder; pass the path of a data file inside it."
        )
    if not os.path.isfile(path):
        message = f"No such file: {path!r}"
        if not os.path.isabs(path):
            message += f" (relative to the working directory {os.getcwd()!r})"
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(folder):
            entries = sorted(os.listdir(folder))
            shown = ", ".join(entries[:10]) + (", ..." if len(entries) > 10 else "")
            message += f". That folder contains: {shown or 'nothing'}"
        raise FileNotFoundError(message + ". Check the path.")
    with open(path, "rb") as file:
        data = file.read()
    if not data.strip():
        raise ValueError(
            f"empty dataset: {path!r} is empty. Expected {expected}."
        )
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        byte = data[error.start : error.start + 1]
        name = os.path.basename(path)
        raise ValueError(
            f"{path!r} is not valid UTF-8: byte 0x{byte.hex()} at line {line}, "
            f"column {column}. Re-save the file as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {name} > utf8-{name}` if it is Latin-1 "
            "(`cp1252` for Windows files)."
        ) from None
    return path, content.removeprefix("\ufeff")


def _read_rows(content, path, delimiter, quoted):
    """Split `content` into rows of fields; also return each row's line number.

    The standard `csv` module (not pandas) does the splitting: it keeps every
    field as an exact str (no type or NaN inference), its `QUOTE_NONE` mode reads
    GLUE-style files without touching quotes, and it reports line numbers.
    Blank lines are skipped. Line endings may be LF or CRLF.
    """
    stream = io.StringIO(content, newline="")
    if quoted:
        reader = csv.reader(
            stream, delimiter=delimiter, quotechar=_QUOTE, doublequote=True, strict=True
        )
    else:
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    rows, lines = [], []
    start = 1
    # The csv module refuses fields over 131,072 characters by default. No
    # field can be longer than the file, so the limit is raised to its size
    # for this read only (it is process-wide) and restored afterwards.
    previous_limit = csv.field_size_limit()
    csv.field_size_limit(max(previous_limit, min(len(content) + 1, _MAX_FIELD_LIMIT)))
    try:
        for row in reader:
            if row:
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as error:
        raise ValueError(
            f"{path!r}: cannot parse the row starting at line {start}: {error}. "
            + (
                "Look for an unbalanced or stray quote (\") in that row; a file "
                "that does not quote its fields (GLUE style) must be read "
                "without quote processing (`from_tsv(..., quoting='none')`)."
                if quoted
                else ""
            )
        ) from None
    finally:
        csv.field_size_limit(previous_limit)
    return rows, lines


def _split_header(rows, lines, path):
    if len(rows) < 2:
        raise ValueError(
            f"empty dataset: {path!r} has a header line but no data rows."
            if rows
            else f"empty dataset: {path!r} has no lines."
        )
    return rows[0], rows[1:], lines[1:]


def _first_ragged_row(header, rows):
    for i, row in enumerate(rows):
        if len(row) != len(header):
            return i
    return None


def _check_rectangular(header, rows, lines, path, delimiter, hint):
    i = _first_ragged_row(header, rows)
    if i is not None:
        raise ValueError(
            f"{path!r}, line {lines[i]}: expected {len(header)} fields separated "
            f"by {delimiter!r} (header: {header}) but found {len(rows[i])}: "
            f"{rows[i]!r:.200}. {hint}"
        )


def _parse_tsv(content, path, quoting):
    """Parse a TSV as `quoting` says; return `(header, rows, lines)`."""
    if quoting == "minimal":
        rows, lines = _read_rows(content, path, "\t", quoted=True)
        header, rows, lines = _split_header(rows, lines, path)
        _check_rectangular(
            header, rows, lines, path, "\t",
            hint="If the file does not quote its fields (GLUE style), pass "
            "`quoting='none'`.",
        )
        return header, rows, lines

    rows, lines = _read_rows(content, path, "\t", quoted=False)
    header, data, data_lines = _split_header(rows, lines, path)
    ragged = _first_ragged_row(header, data)
    if quoting == "none" or (ragged is None and not _all_rows_quoted(data)):
        _check_rectangular(
            header, data, data_lines, path, "\t",
            hint="If the text fields are quoted and contain tabs or line "
            "breaks, pass `quoting='minimal'`.",
        )
        return header, data, data_lines
    # "auto", and the file needs quote processing.
    if ragged is not None and _QUOTE not in content:
        _check_rectangular(header, data, data_lines, path, "\t", hint="")
    try:
        return _parse_tsv(content, path, "minimal")
    except ValueError as error:
        if ragged is None:
            raise
        raise ValueError(
            f"{path!r}: `quoting='auto'` could not read the file. Without quote "
            f"processing, line {data_lines[ragged]} has {len(data[ragged])} "
            f"fields but the header {header} has {len(header)}; with quote "
            f"processing: {error}"
        ) from None


def _all_rows_quoted(rows):
    """True when every row has a field wrapped in quotes (a quoting writer)."""

    def wrapped(field):
        return len(field) >= 2 and field[0] == _QUOTE and field[-1] == _QUOTE

    return bool(rows) and all(any(wrapped(field) for field in row) for row in rows)


def _table_dataset(
    path, header, rows, lines, text_columns, label,
    class_names, multi_label, label_separator, kind,
):
    """Select the text and label columns of a parsed TSV/CSV file."""
    wanted = list(text_columns) + ([label] if label is not None else [])
    indices = []
    for name in wanted:
        count = header.count(name)
        if count == 0:
            if label is not None and name == label:
                fix = "Pass the right `label=` column, or `label=None` for texts without labels."
            else:
                fix = "Pass the right `text=` column."
            if kind == "tsv" and len(header) == 1 and ("," in header[0] or ";" in header[0]):
                fix += " The header has no tab: is this a CSV file? Use `from_csv`."
            raise ValueError(
                f"{path!r} has no column {name!r}. Its columns are {header}. {fix}"
            )
        if count > 1:
            raise ValueError(
                f"{path!r}: column {name!r} appears {count} times in the header "
                f"{header}. Rename the duplicates."
            )
        indices.append(header.index(name))
    texts = [[row[index] for row in rows] for index in indices[: len(text_columns)]]
    labels = None
    if label is not None:
        labels = [row[indices[-1]].strip() for row in rows]
        if multi_label:
            if not isinstance(label_separator, str) or not label_separator:
                raise ValueError(
                    "`label_separator` must be a non-empty str. Received: "
                    f"{label_separator!r}"
                )
            labels = [
                [part.strip() for part in value.split(label_separator) if part.strip()]
                for value in labels
            ]

    def locate(i):
        return f"line {lines[i]} of {path!r}"

    return _build_dataset(texts, labels, class_names, multi_label, locate)


def _parse_json_line(line, line_number, path):
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        hint = ""
        if line_number == 1 and line.lstrip().startswith("["):
            hint = (
                " This looks like a JSON array; `from_jsonl` reads JSON Lines "
                "(one object per line)."
            )
        raise ValueError(
            f"{path!r}, line {line_number}: invalid JSON ({error.msg} at column "
            f"{error.colno}). Each line must be one JSON object.{hint}"
        ) from None
    if not isinstance(record, dict):
        raise ValueError(
            f"{path!r}, line {line_number}: expected a JSON object, got "
            f"{type(record).__name__}. Each line must be one JSON object such "
            'as {"text": "...", "label": 0}.'
        )
    return record


# --------------------------------------------------------------------------
# Labels and the dataset.
# --------------------------------------------------------------------------


def _scalar_label(value, where):
    """A label as an int or a str; errors for bool, float, None, ..."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"Boolean label {value!r} at {where}: use integer class indices "
            "(0/1) or class-name strings instead."
        )
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not np.isfinite(value) or value != int(value):
            raise ValueError(
                f"Label {value!r} at {where} is not an integer: labels must be "
                "integer class indices or class-name strings (this reader does "
                "not do regression)."
            )
        return int(value)
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(
                f"Missing label (an empty label field) at {where}. Every example "
                "needs a label: fill it in or drop the example; read texts only "
                "with `label=None`."
            )
        return str(value)  # Plain str, also for numpy.str_.
    if value is None:
        raise ValueError(
            f"Missing label (None) at {where}. Every example needs a label; "
            "read texts only with `label=None`."
        )
    raise ValueError(
        f"Label {value!r} at {where} is a {type(value).__name__}; labels must be "
        "ints or strs (lists of them with `multi_label=True`)."
    )


def _label_indices(values, class_names, where):
    """Map scalar labels (ints or strs) to indices; return (indices, names)."""
    kinds = {type(value) for value in values}
    if kinds == {int, str}:
        first_int = next(i for i, v in enumerate(values) if isinstance(v, int))
        first_str = next(i for i, v in enumerate(values) if isinstance(v, str))
        raise ValueError(
            "Labels mix integers and strings: "
            f"{values[first_int]!r} at {where(first_int)} and "
            f"{values[first_str]!r} at {where(first_str)}. Use one kind."
        )
    if str in kinds:
        by_name = class_names is not None and set(values) <= set(class_names)
        if not by_name:
            integral = [bool(_INTEGER_STRING.fullmatch(v)) for v in values]
            if all(integral):
                values = [int(v) for v in values]
                kinds = {int}
            elif any(integral):
                _mixed_integer_labels(values, integral, class_names, where)
    if int in kinds:
        array = np.asarray(values, dtype=np.int64)
        return _check_indices(array, class_names, where)
    if class_names is None:
        class_names = sorted(set(values))
    index = {name: i for i, name in enumerate(class_names)}
    indices = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        if value not in index:
            raise ValueError(
                f"Unknown label {value!r} at {where(i)}: it is not in class_names "
                f"{_short(class_names)}. Fix the label, add it to `class_names`, "
                "or pass `class_names=None` to use the sorted unique labels."
            )
        indices[i] = index[value]
    return indices, class_names


def _mixed_integer_labels(values, integral, class_names, where):
    """Raise for integer-looking labels mixed with other strings.

    Names the first label of the smaller kind (the likely typo): one `x`
    among `0..10`, or one `1` among `pos`/`neg`.
    """
    num_integral = sum(integral)
    stray_is_integer = num_integral * 2 < len(values)
    i = integral.index(True) if stray_is_integer else integral.index(False)
    count = num_integral if stray_is_integer else len(values) - num_integral
    others = sorted({v for v, is_int in zip(values, integral) if is_int != stray_is_integer})
    if stray_is_integer:
        kind, other_kind = "an integer", "names"
    else:
        kind, other_kind = "not an integer", "integers"
        others = sorted(others, key=int)
    named = (
        "" if class_names is None
        else f"; `class_names` {_short(class_names)} does not list them all"
    )
    raise ValueError(
        f"Label {values[i]!r} at {where(i)} is {kind}, but the other labels are "
        f"{other_kind} {_short(others)} ({count} of {len(values)} labels like "
        f"it{named}). Fix the label (a typo such as 'l' for '1'?), or, if "
        "these are all class names, pass `class_names` listing every label in "
        "the order you want."
    )


def _check_indices(indices, class_names, where):
    """Range-check integer labels; default class_names to '0'..str(max)."""
    negative = np.flatnonzero(indices < 0)
    if negative.size:
        i = int(negative[0])
        raise ValueError(
            f"label out of range: {int(indices[i])} at {where(i)}. Integer labels "
            "must be >= 0. (GLUE test splits have no labels and use -1: read them "
            "with `label=None`. If -1 is a class name, pass e.g. "
            "`class_names=['-1', '1']`.)"
        )
    if class_names is None:
        class_names = [str(i) for i in range(int(indices.max()) + 1)]
    too_big = np.flatnonzero(indices >= len(class_names))
    if too_big.size:
        i = int(too_big[0])
        raise ValueError(
            f"label out of range: {int(indices[i])} at {where(i)}, but class_names "
            f"has {len(class_names)} entries {_short(class_names)}, so integer labels "
            f"must be in [0, {len(class_names) - 1}]. Fix the label, pass the full "
            "`class_names`, or `class_names=None` to infer them."
        )
    return indices, class_names


def _encode_labels(labels, class_names, multi_label, where):
    """Turn raw labels into int32 indices or float32 multi-hot vectors."""
    if class_names is not None:
        class_names = _check_class_names(class_names)
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and not multi_label:
        indices, class_names = _check_indices(labels.astype(np.int64), class_names, where)
        return indices.astype(np.int32), class_names
    if not multi_label:
        values = []
        for i, value in enumerate(labels):
            if isinstance(value, (list, tuple, np.ndarray)):
                raise ValueError(
                    f"Label {value!r} at {where(i)} is a list; pass "
                    "`multi_label=True` for examples with several labels."
                )
            values.append(_scalar_label(value, where(i)))
        indices, class_names = _label_indices(values, class_names, where)
        return indices.astype(np.int32), class_names

    flat, owners = [], []
    for i, value in enumerate(labels):
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if not isinstance(value, (list, tuple)):
            raise ValueError(
                f"With `multi_label=True` each label must be a list of labels, but "
                f"the label at {where(i)} is {value!r}. Wrap it: [{value!r}]."
            )
        for item in value:
            flat.append(_scalar_label(item, where(i)))
            owners.append(i)
    if not flat and class_names is None:
        raise ValueError(
            "No labels found: every example has an empty label list. Pass "
            "`class_names` to fix the classes."
        )
    indices, class_names = _label_indices(flat, class_names, lambda k: where(owners[k]))
    multi_hot = np.zeros((len(labels), len(class_names)), dtype=np.float32)
    multi_hot[np.asarray(owners, dtype=np.int64), indices] = 1.0
    return multi_hot, class_names


def _build_dataset(texts, labels, class_names, multi_label, where):
    """`from_tensor_slices` over text columns (1 or 2) and encoded labels."""
    text_tensors = [tf.constant(column, dtype=tf.string) for column in texts]
    text_part = text_tensors[0] if len(text_tensors) == 1 else tuple(text_tensors)
    num_examples = int(text_tensors[0].shape[0])
    if labels is None:
        dataset = tf.data.Dataset.from_tensor_slices(text_part)
        class_names = None
    else:
        encoded, class_names = _encode_labels(labels, class_names, multi_label, where)
        dataset = tf.data.Dataset.from_tensor_slices((text_part, encoded))
    dataset.class_names = class_names
    dataset.num_examples = num_examples
    return dataset


def _short(names, limit=10):
    """`names` for an error message, cut after `limit` entries."""
    if len(names) <= limit:
        return repr(list(names))
    return repr(list(names[:limit]))[:-1] + f", ... ({len(names)} in all)]"
