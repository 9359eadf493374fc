"""Token-level data: CoNLL files, tag vocabularies and word-piece tag alignment.

`from_conll` reads the CoNLL format (one token per line, columns separated by
whitespace, a blank line between sentences, `-DOCSTART-` lines skipped) into
an unbatched `tf.data.Dataset` of `(words, tags)`, two 1-D `tf.string`
tensors of the same length. `prepare_tokens` turns it into batches for a
`BertEncoder(pooling=None)` + `TokenClassificationHead` model:

- every word is split into WordPiece sub-tokens by the encoder's tokenizer,
  in the tf.data pipeline (TensorFlow Text ops, no `py_function`);
- the word's tag id goes on its *first* sub-token; the other sub-tokens, the
  special tokens and the padding get sample weight 0, so the loss and the
  weighted metrics ignore them;
- batches are trimmed to length buckets like `ktransfer.data.prepare`.

The same alignment (`align_words`) runs inside the SavedModel written by
`ktransfer.export.save_tagger`, which takes raw sentences and returns one tag
per word.

Example:

```python
import keras, ktransfer as kt
train = kt.data.from_conll("train.txt")      # (words: string[n], tags: string[n])
tags = kt.data.tag_vocabulary(train)         # ["O", "B-LOC", ...]
encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling=None)
batches = kt.data.prepare_tokens(train, encoder.preprocessor, tags, batch_size=32)
features, tag_ids, weights = next(iter(batches))
```
"""


from ktransfer._keras import keras  # noqa: F401  (sets the backend first)

import numpy as np
import tensorflow as tf

from ktransfer.data.pipeline import AUTOTUNE
from ktransfer.data.pipeline import batch_examples
from ktransfer.data.pipeline import bucket_boundaries
from ktransfer.data.readers import read_text_file

SCHEMES = (None, "iob2")
DOCSTART = "-DOCSTART-"


# --------------------------------------------------------------------------
# Reading.
# --------------------------------------------------------------------------


def from_conll(path, columns=(0, -1), scheme=None):
    """Read a CoNLL file into a dataset of `(words, tags)` sentences.

    Args:
        path: a CoNLL-format text file (UTF-8): one token per line, fields
            separated by whitespace, the same number of fields on every
            token line, a blank line between sentences. `-DOCSTART-`
            document separators are skipped. A token line without a tag, a
            line whose field count differs (e.g. a TSV of sentences) and
            bytes that are not UTF-8 are errors naming the line.
        columns: `(word_column, tag_column)` indices into each line's fields;
            the default `(0, -1)` fits both the 4-column CoNLL-2003 release
            (`word POS chunk NER`) and 2-column `word tag` files. Pass
            `tag_column=None`, i.e. `columns=(0, None)`, to read words only.
        scheme: None keeps the tags as written; `"iob2"` converts IOB1 tags
            (CoNLL-2003's scheme: `I-X` opens an entity unless it follows
            another `X`) to IOB2 (every entity opens with `B-X`). The
            entities are the same either way (see `ktransfer.metrics`).

    Returns:
        An unbatched `tf.data.Dataset` of `(words, tags)` (1-D `tf.string`
        each), or of `words` alone with `columns=(i, None)`. It carries
        `num_examples` (the number of sentences).

    Example:

    ```python
    import pathlib, ktransfer as kt
    pathlib.Path("toy.txt").write_text("EU I-ORG\\nrejects O\\n\\nPeter I-PER\\n")
    ds = kt.data.from_conll("toy.txt", scheme="iob2")
    [(list(w.numpy()), list(t.numpy())) for w, t in ds][0]
    # ([b'EU', b'rejects'], [b'B-ORG', b'O'])
    ```
    """
    if scheme not in SCHEMES:
        raise ValueError(f"`scheme` must be one of {SCHEMES}. Received: {scheme!r}")
    if (
        not isinstance(columns, (tuple, list))
        or len(columns) != 2
        or not _is_int(columns[0])
        or not (columns[1] is None or _is_int(columns[1]))
    ):
        raise ValueError(
            "`columns` must be a pair (word_column, tag_column) of int field "
            f"indices (tag_column may be None). Received: {columns!r}"
        )
    word_column, tag_column = columns
    path, content = read_text_file(
        path, expected="one token per line (word and tag), a blank line between sentences"
    )
    sentences, words, tags = [], [], []
    layout = None  # (line number, field count) of the first token line
    for line_number, line in enumerate(content.split("\n"), start=1):
        fields = line.split()
        if not fields or fields[0] == DOCSTART:
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        _check_token_line(path, line_number, line, fields, columns, layout)
        if layout is None:
            layout = (line_number, len(fields))
        words.append(fields[word_column])
        if tag_column is not None:
            tags.append(fields[tag_column])
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise ValueError(f"{path} holds no sentences: is it an empty or non-CoNLL file?")
    if scheme == "iob2":
        sentences = [(w, iob1_to_iob2(t)) for w, t in sentences]
    all_words = tf.ragged.constant([w for w, _ in sentences], dtype=tf.string)
    # Slices of a ragged tensor come out as (rank-1) RaggedTensors; the
    # identity map turns them into the plain 1-D tensors they are.
    if tag_column is None:
        dataset = tf.data.Dataset.from_tensor_slices(all_words).map(lambda w: w)
    else:
        all_tags = tf.ragged.constant([t for _, t in sentences], dtype=tf.string)
        dataset = tf.data.Dataset.from_tensor_slices((all_words, all_tags))
        dataset = dataset.map(lambda w, t: (w, t))
    dataset.num_examples = len(sentences)
    return dataset


def _check_token_line(path, line_number, line, fields, columns, layout):
    """Raise for a token line that does not fit `columns` or the file's layout."""
    word_column, tag_column = columns
    where = f"{path}, line {line_number}"
    try:
        word_index = range(len(fields))[word_column]
        tag_index = None if tag_column is None else range(len(fields))[tag_column]
    except IndexError:
        raise ValueError(
            f"{where}: {len(fields)} field(s) {fields!r:.200}, but "
            f"`columns={tuple(columns)}` asks for more. Check the file's layout "
            "and the `columns` argument."
        ) from None
    if word_index == tag_index:
        raise ValueError(
            f"{where}: {fields[word_index]!r} has no tag: the line has "
            f"{len(fields)} field(s), so `columns={tuple(columns)}` reads the "
            "word as its own tag. Every token line needs a word and a tag "
            "separated by whitespace (`Paris B-LOC`): fix the line, or, for a "
            "file of words without tags, pass `columns=(0, None)`."
        )
    if layout is not None and len(fields) != layout[1]:
        message = (
            f"{where} has {len(fields)} whitespace-separated fields but line "
            f"{layout[0]} has {layout[1]}: a CoNLL file has the same columns on "
            "every token line (one token per line, a blank line between "
            "sentences)."
        )
        cells = line.rstrip("\r").split("\t")
        if len(cells) > 1 and any(len(cell.split()) > 1 for cell in cells):
            message += (
                " This looks like a TSV file (tab-separated columns holding "
                "texts with spaces), not CoNLL: read it with "
                "`kt.data.from_tsv(path, text=..., label=...)`."
            )
        elif max(len(fields), layout[1]) > 4:
            message += (
                " If each line is a sentence, the file is not CoNLL (one "
                "token per line): read it with `kt.data.from_tsv` or "
                "`kt.data.from_lists`."
            )
        raise ValueError(message + f" Line {line_number}: {line.strip()!r:.200}")


def iob1_to_iob2(tags):
    """Convert one sentence's IOB1 tags to IOB2 (a list of str in, out).

    An `I-X` that does not continue an `X` entity (`B-X` or `I-X` before it)
    becomes `B-X`; everything else is kept.
    """
    converted, previous = [], "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        converted.append(tag)
        previous = tag
    return converted


def tag_vocabulary(dataset):
    """The sorted tag names of a `(words, tags)` dataset, `"O"` first.

    Args:
        dataset: a dataset from `from_conll` (or any unbatched dataset of
            `(words, tags)` string tensors).

    Returns:
        A list of str: `"O"` (when present) and then the other tags sorted
        (`["O", "B-LOC", "B-MISC", ..., "I-PER"]`). Tag index `i` is
        `tags[i]`, as `prepare_tokens` and the tagging head use it.
    """
    check_token_dataset(dataset, need_tags=True)
    seen = set()
    for _, tags in dataset.ragged_batch(4096):
        seen.update(np.unique(tags.flat_values.numpy()).tolist())
    names = sorted(tag.decode("utf-8") for tag in seen)
    if not names:
        raise ValueError("The dataset has no tags: every sentence is empty.")
    if "O" in names:
        names.remove("O")
        names.insert(0, "O")
    return names


# --------------------------------------------------------------------------
# Word-piece alignment.
# --------------------------------------------------------------------------


def align_words(words, tokenizer, sequence_length, tag_ids=None):
    """Tokenise a batch of pre-split sentences and align word-level tags.

    Runs in TensorFlow graph ops only (tf.data pipelines, SavedModels).

    Args:
        words: a `tf.RaggedTensor` `[batch, (words)]` of `tf.string`.
        tokenizer: a KerasHub WordPiece tokenizer (`preprocessor.tokenizer`)
            with `cls_token_id`, `sep_token_id` and `pad_token_id`.
        sequence_length: the packed length, [CLS] and [SEP] included.
            Sentences with more sub-tokens are truncated; their last words
            get no position (see `word_starts`).
        tag_ids: optional `tf.RaggedTensor` `[batch, (words)]` of int tag ids.

    Returns:
        `(features, word_starts, labels, weights)`: `features` the dict that
        `BertEncoder` takes (`token_ids`, `segment_ids`, `padding_mask`, each
        int32 `[batch, sequence_length]`); `word_starts` an int32
        `tf.RaggedTensor` `[batch, (words)]`, the position of each word's
        first sub-token, or `sequence_length` for a word cut off by
        truncation; with `tag_ids`, `labels` (int32, the word's tag id on
        every one of its sub-tokens, 0 elsewhere) and `weights` (float32, 1
        on first sub-tokens that fit, 0 elsewhere), both
        `[batch, sequence_length]`; otherwise both None.
    """
    if tf.executing_eagerly():
        # KerasHub tokenizers run their TensorFlow (ragged) path in graphs only.
        return tf.function(align_words, autograph=False)(
            words, tokenizer, sequence_length, tag_ids
        )
    unk_id = tokenizer.token_to_id(tokenizer.oov_token)
    pieces = tokenizer(words.flat_values)  # [total_words, (pieces)]
    if not isinstance(pieces, tf.RaggedTensor):
        raise TypeError(
            "align_words needs a tokenizer that returns ragged sub-tokens, i.e. "
            "one without a fixed `sequence_length` (use `preprocessor.tokenizer`)."
        )
    pieces = tf.cast(pieces, tf.int32)
    # A word with no sub-token (empty, or only characters the tokenizer
    # drops) becomes [UNK], so that every word keeps a position and a tag.
    counts = pieces.row_lengths()
    unk = tf.RaggedTensor.from_row_lengths(
        tf.fill([tf.size(counts)], tf.constant(unk_id, tf.int32)),
        tf.ones_like(counts),
    )
    pieces = tf.ragged.boolean_mask(
        tf.concat([pieces, unk], axis=1),
        tf.ragged.range(counts + 1) < tf.maximum(counts, 1)[:, None],
    )
    counts = pieces.row_lengths()

    tokens = words.with_flat_values(pieces).merge_dims(1, 2)  # [batch, (tokens)]
    room = sequence_length - 2
    # Position of each word's first sub-token in its packed sentence.
    starts = tf.cumsum(counts, exclusive=True) - tf.gather(
        tokens.row_starts(), words.value_rowids()
    )
    starts = tf.cast(tf.where(starts < room, starts + 1, sequence_length), tf.int32)
    word_starts = words.with_flat_values(starts)

    def pack(values, start, end, pad):
        values = values[:, :room]
        batch = values.nrows()
        first = tf.fill([batch, 1], tf.cast(start, values.dtype))
        last = tf.fill([batch, 1], tf.cast(end, values.dtype))
        packed = tf.concat([first, values, last], axis=1)
        return packed.to_tensor(default_value=pad, shape=[None, sequence_length])

    token_ids = pack(tokens, tokenizer.cls_token_id, tokenizer.sep_token_id,
                     tokenizer.pad_token_id)
    padding_mask = pack(tf.ones_like(tokens), 1, 1, 0)
    features = {
        "token_ids": token_ids,
        "segment_ids": tf.zeros_like(token_ids),
        "padding_mask": padding_mask,
    }
    if tag_ids is None:
        return features, word_starts, None, None
    token_tags = tokens.with_flat_values(
        tf.repeat(tf.cast(tag_ids.flat_values, tf.int32), counts)
    )
    # Sub-token i of its word, in the flat order of `tokens`: 0 marks a first.
    piece_index = tf.ragged.range(counts).flat_values
    is_first = tokens.with_flat_values(tf.cast(piece_index == 0, tf.float32))
    labels = pack(token_tags, 0, 0, 0)
    weights = pack(is_first, 0.0, 0.0, 0.0)
    return features, word_starts, labels, weights


# --------------------------------------------------------------------------
# The training pipeline.
# --------------------------------------------------------------------------


def prepare_tokens(
    dataset,
    preprocessor,
    tags,
    batch_size=32,
    shuffle=False,
    seed=None,
    shuffle_buffer=10_000,
    cache=False,
    bucket=True,
    drop_remainder=False,
    tokenize_batch_size=256,
    window_batches=32,
):
    """Turn `(words, tags)` sentences into batches for a token classifier.

    Args:
        dataset: unbatched `(words, tags)` dataset (`from_conll`), or of
            `words` alone (then the batches hold features only).
        preprocessor: the encoder's preprocessor (`encoder.preprocessor`);
            its `tokenizer` and `sequence_length` are used.
        tags: the tag names (`tag_vocabulary(train)`); tag index `i` is
            `tags[i]`. A tag missing from it stops the pipeline with an error.
        batch_size, shuffle, seed, shuffle_buffer, cache, bucket,
        drop_remainder, tokenize_batch_size, window_batches: as in
            `ktransfer.data.prepare` (sentences of similar length are
            batched together and batches trimmed to length buckets).

    Returns:
        A batched, prefetched `tf.data.Dataset` of
        `(features, tag_ids, sample_weights)`: `tag_ids` int32 and
        `sample_weights` float32, both `[batch, length]`, the weight 1 on
        each word's first sub-token and 0 elsewhere. Keras' `fit` applies the
        weights to the loss and to `weighted_metrics`. It carries `tags`.

    Example:

    ```python
    model.compile(
        optimizer=keras.optimizers.AdamW(5e-5),
        loss=head.default_loss(),
        weighted_metrics=["accuracy"],
    )
    model.fit(kt.data.prepare_tokens(train, encoder.preprocessor, tags, shuffle=True))
    ```
    """
    has_tags = check_token_dataset(dataset, need_tags=False)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    sequence_length = getattr(preprocessor, "sequence_length", None)
    if tokenizer is None or not sequence_length:
        raise TypeError(
            "`preprocessor` must be a KerasHub text preprocessor with a "
            "`tokenizer` and a `sequence_length`, e.g. `encoder.preprocessor` "
            f"of a BertEncoder. Received: {type(preprocessor).__name__}"
        )
    tags = check_tags(tags)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    num_examples = int(dataset.cardinality())
    if num_examples == 0:
        raise ValueError("The dataset is empty: there is nothing to train or evaluate on.")
    table = tag_table(tags)

    def align(*element):
        words = element[0]
        tag_ids = None
        if has_tags:
            tag_ids = tf.ragged.map_flat_values(table.lookup, element[1])
            tf.debugging.assert_non_negative(
                tag_ids.flat_values,
                message=(
                    "a tag of the dataset is not in `tags`: build `tags` with "
                    "kt.data.tag_vocabulary(train) over data that has every tag"
                ),
            )
        features, _, labels, weights = align_words(
            words, tokenizer, sequence_length, tag_ids
        )
        return (features, labels, weights) if has_tags else features

    dataset = dataset.ragged_batch(tokenize_batch_size)
    dataset = dataset.map(align, num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = dataset.unbatch()
    dataset = batch_examples(
        dataset,
        num_examples,
        batch_size,
        boundaries=bucket_boundaries(sequence_length) if bucket else None,
        shuffle=shuffle,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        cache=cache,
        drop_remainder=drop_remainder,
        window_batches=window_batches,
        after_trim=_trim_targets if has_tags else None,  # cut targets to the features
    )
    dataset = dataset.prefetch(AUTOTUNE)
    dataset.tags = list(tags)
    return dataset


def _trim_targets(features, labels, weights):
    width = tf.shape(features["token_ids"])[1]
    return features, labels[:, :width], weights[:, :width]


def tag_table(tags):
    """A `tf.lookup` table from tag name to tag index (-1 for unknown tags)."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(tags), tf.range(len(tags), dtype=tf.int32)
        ),
        default_value=-1,
    )


def check_tags(tags):
    """Validate a tag list (non-empty, unique, non-empty strings); return it as a list."""
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)) or not tags:
        raise ValueError(
            "`tags` must be a non-empty list of tag names, e.g. "
            f"kt.data.tag_vocabulary(train). Received: {tags!r}"
        )
    tags = list(tags)
    if not all(isinstance(t, str) and t for t in tags):
        raise ValueError(f"`tags` must hold non-empty strings. Received: {tags!r}")
    if len(set(tags)) != len(tags):
        raise ValueError(f"`tags` has duplicates: {tags!r}")
    return tags


def check_token_dataset(dataset, need_tags):
    """Validate a `(words, tags)` or `words` dataset; return whether it has tags."""
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            "`dataset` must be a tf.data.Dataset of (words, tags), e.g. from "
            f"`ktransfer.data.from_conll`. Received: {type(dataset).__name__}"
        )
    spec = dataset.element_spec

    def is_words(s):
        return (
            isinstance(s, (tf.TensorSpec, tf.RaggedTensorSpec))
            and s.dtype == tf.string
            and s.shape.rank == 1
        )

    if isinstance(spec, tuple) and len(spec) == 2 and is_words(spec[0]) and is_words(spec[1]):
        return True
    if is_words(spec) and not need_tags:
        return False
    raise ValueError(
        "`dataset` must yield unbatched (words, tags) pairs of 1-D tf.string "
        f"tensors{'' if need_tags else ' (or words alone)'}, as "
        f"`kt.data.from_conll` does. Its element_spec is {spec}."
    )


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
