"""kt.data.from_conll, tag_vocabulary, align_words and prepare_tokens."""

import os

import numpy as np
import pytest

import tensorflow as tf

import ktransfer as kt
from ktransfer.data.conll import align_words, iob1_to_iob2

# A tiny CoNLL-2003-style file: 4 columns, -DOCSTART- lines, blank lines.
SAMPLE = """-DOCSTART- -X- -X- O

the DT B-NP O
film NN I-NP I-MISC
is VBZ B-VP O
great JJ B-ADJP I-PER

-DOCSTART- -X- -X- O

films NNS B-NP I-ORG
xyz NN I-NP I-ORG
, , O O
a DT B-NP B-ORG
"""


@pytest.fixture
def sample_file(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    return str(path)


def as_lists(dataset):
    return [
        tuple([x.decode() for x in tensor.numpy()] for tensor in element)
        for element in dataset
    ]


def test_reads_sentences_and_skips_docstart(sample_file):
    ds = kt.data.from_conll(sample_file)
    assert ds.num_examples == 2 and int(ds.cardinality()) == 2
    assert ds.element_spec == (
        tf.TensorSpec([None], tf.string),
        tf.TensorSpec([None], tf.string),
    )
    assert as_lists(ds) == [
        (["the", "film", "is", "great"], ["O", "I-MISC", "O", "I-PER"]),
        (["films", "xyz", ",", "a"], ["I-ORG", "I-ORG", "O", "B-ORG"]),
    ]


def test_columns_and_iob2_conversion(sample_file):
    pos = as_lists(kt.data.from_conll(sample_file, columns=(0, 1)))
    assert pos[0][1] == ["DT", "NN", "VBZ", "JJ"]
    iob2 = as_lists(kt.data.from_conll(sample_file, scheme="iob2"))
    assert iob2[0][1] == ["O", "B-MISC", "O", "B-PER"]
    assert iob2[1][1] == ["B-ORG", "I-ORG", "O", "B-ORG"]
    words_only = kt.data.from_conll(sample_file, columns=(0, None))
    assert [list(w.numpy()) for w in words_only][1] == [b"films", b"xyz", b",", b"a"]


def test_iob1_to_iob2():
    assert iob1_to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]) == [
        "B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"
    ]


def test_bad_files_and_arguments(sample_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file.*missing.txt"):
        kt.data.from_conll(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("-DOCSTART- O\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no sentences"):
        kt.data.from_conll(empty)
    with pytest.raises(ValueError, match="line 3: 4 field"):
        kt.data.from_conll(sample_file, columns=(0, 7))
    with pytest.raises(ValueError, match="`columns`"):
        kt.data.from_conll(sample_file, columns=3)
    with pytest.raises(ValueError, match="`scheme`"):
        kt.data.from_conll(sample_file, scheme="bio")


def test_a_token_without_a_tag_is_an_error_naming_the_line(tmp_path):
    # Issue 22, defect 8: "Paris" alone on a line became the tag "Paris".
    path = tmp_path / "tagless.txt"
    path.write_text("EU B-ORG\nrejects O\n\nParis\nwins O\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"tagless.txt, line 4: 'Paris' has no tag") as error:
        kt.data.from_conll(path)
    assert "columns=(0, None)" in str(error.value)
    # A file of words without tags reads with columns=(0, None).
    path.write_text("EU\nrejects\n\nParis\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: 'EU' has no tag"):
        kt.data.from_conll(path)
    words = kt.data.from_conll(path, columns=(0, None))
    assert [list(w.numpy()) for w in words] == [[b"EU", b"rejects"], [b"Paris"]]


def test_a_tsv_read_as_conll_is_an_error_that_says_so(tmp_path):
    # Issue 22, defect 8: a TSV of sentences was read as tokens and tags.
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\na fine film\t1\na dull one\t0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.tsv, line 2 has 4 .*line 1 has 2") as error:
        kt.data.from_conll(path)
    assert "looks like a TSV file" in str(error.value) and "from_tsv" in str(error.value)
    uneven = tmp_path / "uneven.txt"
    uneven.write_text("EU NNP B-ORG\nrejects O\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 has 2 whitespace-separated fields but line 1 has 3"):
        kt.data.from_conll(uneven)


def test_non_utf8_file_names_the_line_and_the_fix(tmp_path):
    # Issue 22, defect 8: a bare UnicodeDecodeError.
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"EU B-ORG\n\ncaf\xe9 O\n")
    with pytest.raises(ValueError, match="latin1.txt' is not valid UTF-8: byte 0xe9 at line 3") as error:
        kt.data.from_conll(path)
    assert "iconv -f latin1 -t utf-8" in str(error.value)
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"EU B-ORG\r\nrejects O\r\n\r\nx O\r\n")
    assert as_lists(kt.data.from_conll(crlf)) == [(["EU", "rejects"], ["B-ORG", "O"]), (["x"], ["O"])]


def test_tag_vocabulary_is_sorted_with_o_first(sample_file):
    tags = kt.data.tag_vocabulary(kt.data.from_conll(sample_file))
    assert tags == ["O", "B-ORG", "I-MISC", "I-ORG", "I-PER"]
    with pytest.raises(ValueError, match=r"\(words, tags\)"):
        kt.data.tag_vocabulary(kt.data.from_lists(["a film"], [0]))


@pytest.fixture(scope="module")
def tokenizer(tiny_preset):
    return kt.encoders.BertEncoder.from_preset(tiny_preset).preprocessor.tokenizer


def test_align_words_labels_first_sub_tokens_only(tokenizer):
    vocab = tokenizer.get_vocabulary()
    ids = {token: i for i, token in enumerate(vocab)}
    words = tf.ragged.constant([["the", "films", "xyz", ""], ["great"]])
    tag_ids = tf.ragged.constant([[0, 3, 2, 1], [4]])
    features, starts, labels, weights = align_words(words, tokenizer, 8, tag_ids)
    cls, sep, unk = ids["[CLS]"], ids["[SEP]"], ids["[UNK]"]
    # films -> film ##s ; xyz -> [UNK] ; "" (no sub-token) -> [UNK]
    np.testing.assert_array_equal(
        features["token_ids"],
        [
            [cls, ids["the"], ids["film"], ids["##s"], unk, unk, sep, 0],
            [cls, ids["great"], sep, 0, 0, 0, 0, 0],
        ],
    )
    np.testing.assert_array_equal(features["padding_mask"], [[1] * 7 + [0], [1] * 3 + [0] * 5])
    np.testing.assert_array_equal(features["segment_ids"], np.zeros((2, 8)))
    assert starts.to_list() == [[1, 2, 4, 5], [1]]
    np.testing.assert_array_equal(weights, [[0, 1, 1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(labels.numpy() * (weights.numpy() > 0), [[0, 0, 3, 0, 2, 1, 0, 0], [0, 4, 0, 0, 0, 0, 0, 0]])


def test_align_words_truncates_and_marks_cut_words(tokenizer):
    words = tf.ragged.constant([["films", "films", "films"]])  # 6 sub-tokens
    features, starts, labels, weights = align_words(
        words, tokenizer, 6, tf.ragged.constant([[1, 2, 3]])
    )
    assert features["token_ids"].shape == (1, 6)
    assert starts.to_list() == [[1, 3, 6]]  # the third word is cut: position 6
    np.testing.assert_array_equal(weights, [[0, 1, 0, 1, 0, 0]])
    assert int(features["padding_mask"].numpy().sum()) == 6


def test_prepare_tokens_batches(sample_file, tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=64)
    ds = kt.data.from_conll(sample_file)
    tags = kt.data.tag_vocabulary(ds)
    batches = kt.data.prepare_tokens(ds, encoder.preprocessor, tags, batch_size=2)
    assert batches.tags == tags and int(batches.cardinality()) == 1
    features, tag_ids, weights = next(iter(batches))
    # The longest sentence packs to 7 tokens: the batch is cut to the bucket holding 7.
    width = min(b for b in kt.data.bucket_boundaries(64) if b >= 7)
    assert features["token_ids"].shape == (2, width) and width < 64
    assert tag_ids.shape == weights.shape == (2, width)
    first = weights.numpy() > 0
    assert first.sum(axis=1).tolist() == [4, 4]  # one weighted token per word
    names = [[tags[i] for i in row[mask]] for row, mask in zip(tag_ids.numpy(), first)]
    assert names == [["O", "I-MISC", "O", "I-PER"], ["I-ORG", "I-ORG", "O", "B-ORG"]]
    shuffled = kt.data.prepare_tokens(ds, encoder.preprocessor, tags, batch_size=1, shuffle=True, seed=1)
    assert sum(float(w.numpy().sum()) for _, _, w in shuffled) == 8.0
    words_only = kt.data.prepare_tokens(
        kt.data.from_conll(sample_file, columns=(0, None)), encoder.preprocessor, tags
    )
    assert set(next(iter(words_only))) == {"token_ids", "segment_ids", "padding_mask"}


def test_prepare_tokens_rejects_unknown_tags_and_bad_arguments(sample_file, tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset)
    ds = kt.data.from_conll(sample_file)
    batches = kt.data.prepare_tokens(ds, encoder.preprocessor, ["O", "I-ORG"], batch_size=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not in `tags`"):
        next(iter(batches))
    with pytest.raises(ValueError, match="duplicates"):
        kt.data.prepare_tokens(ds, encoder.preprocessor, ["O", "O"])
    with pytest.raises(ValueError, match="list of tag names"):
        kt.data.prepare_tokens(ds, encoder.preprocessor, "O")
    with pytest.raises(TypeError, match="KerasHub text preprocessor"):
        kt.data.prepare_tokens(ds, lambda x: x, ["O"])
    with pytest.raises(ValueError, match=r"\(words, tags\)"):
        kt.data.prepare_tokens(kt.data.from_lists(["a"], [0]), encoder.preprocessor, ["O"])


@pytest.mark.shared_data
def test_real_conll2003_counts_match_the_readme(shared_data):
    folder = os.path.join(shared_data, "conll2003")
    train = kt.data.from_conll(os.path.join(folder, "train.txt"))
    assert int(train.cardinality()) == 14041
    words = sum(int(tf.size(w.flat_values)) for w, _ in train.ragged_batch(4096))
    assert words == 203621
    assert kt.data.tag_vocabulary(train) == [
        "O", "B-LOC", "B-MISC", "B-ORG", "I-LOC", "I-MISC", "I-ORG", "I-PER"
    ]
    dev = kt.data.from_conll(os.path.join(folder, "dev.txt"))
    assert int(dev.cardinality()) == 3250
