"""Tests for kt.encoders.WordVectorEncoder on tiny in-test word vectors."""

import numpy as np
import pytest
import tensorflow as tf

import keras

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_keras_round_trip
from ktransfer.encoders.word_vector_encoder import WordVectorPreprocessor
from ktransfer.encoders.word_vector_encoder import standardize_texts

DIM = 6
WORDS = ["a", "the", "film", "movie", "great", "good", "bad", "dull", "is", "not", "n't", "'s", ",", ".", "café"]
TEXTS = [
    "a great film",
    "the film is dull",
    "a dull dull movie",
    "not a good film , zorg",
    "blorp",
]


def make_vectors(seed=0):
    matrix = np.random.default_rng(seed).normal(size=(len(WORDS), DIM)).astype(np.float32)
    return kt.WordVectors(WORDS, matrix)


@pytest.fixture
def vectors():
    return make_vectors()


def adapted(vectors, texts=TEXTS, **kwargs):
    kwargs.setdefault("standardize", "lower")
    kwargs.setdefault("fill_vocabulary", False)
    encoder = kt.encoders.WordVectorEncoder(vectors, **kwargs)
    encoder.adapt(texts)
    return encoder


def embedding_matrix(encoder):
    return np.asarray(encoder.embedding.embeddings.numpy())


def strings(texts):
    return tf.constant(texts, tf.string)


# ------------------------------------------------------------- vocabulary


def test_vocabulary_is_ordered_by_frequency_then_alphabetically(vectors):
    encoder = adapted(vectors)
    # film x3, a x3, dull x3; then the singletons in alphabetical order.
    assert encoder.vocabulary == [
        "", "[UNK]", "a", "dull", "film", ",", "blorp", "good", "great", "is",
        "movie", "not", "the", "zorg",
    ]
    assert encoder.vocabulary_size == 14
    assert embedding_matrix(encoder).shape == (14, DIM)


def test_max_tokens_counts_the_special_tokens_and_cut_words_become_unk(vectors):
    encoder = adapted(vectors, max_tokens=5)
    assert encoder.vocabulary == ["", "[UNK]", "a", "dull", "film"]
    ids = encoder.token_ids(strings(["a great film", "dull"])).numpy()
    np.testing.assert_array_equal(ids, [[2, 1, 4], [3, 0, 0]])


def test_coverage_counts_words_and_tokens(vectors):
    encoder = adapted(vectors)
    coverage = encoder.coverage
    # 12 words, of which blorp and zorg have no vector; 18 running tokens,
    # of which blorp and zorg (one each) are missed.
    assert coverage["words"] == 12
    assert coverage["words_found"] == 10
    assert coverage["vocabulary"] == pytest.approx(10 / 12)
    assert coverage["tokens_total"] == 18
    assert coverage["tokens"] == pytest.approx(16 / 18)
    assert coverage["missing"] == ["blorp", "zorg"]
    assert coverage["composed"] == 0 and coverage["filled_from_vectors"] == 0


def test_missing_compounds_start_as_the_mean_of_their_parts(vectors):
    encoder = adapted(vectors, texts=["a great-film", "bad/dull", "great-zorg"], oov="zeros")
    matrix = embedding_matrix(encoder)
    vocabulary = encoder.vocabulary
    np.testing.assert_allclose(
        matrix[vocabulary.index("great-film")], (vectors["great"] + vectors["film"]) / 2, rtol=1e-6
    )
    np.testing.assert_allclose(
        matrix[vocabulary.index("bad/dull")], (vectors["bad"] + vectors["dull"]) / 2, rtol=1e-6
    )
    np.testing.assert_array_equal(matrix[vocabulary.index("great-zorg")], np.zeros(DIM))  # a part is unknown
    coverage = encoder.coverage
    assert coverage["composed"] == 2 and coverage["words_found"] == 1
    assert coverage["missing"] == ["great-zorg"]


def test_fill_vocabulary_adds_the_vectors_words_the_encoder_can_produce():
    words = ["the", "Paris", ",", "bad", "film", "new york", "café", "a", "great", "n't"]
    matrix = np.arange(len(words) * DIM, dtype=np.float32).reshape(len(words), DIM)
    vectors = kt.WordVectors(words, matrix)
    encoder = adapted(vectors, texts=["a great film", "a film"], fill_vocabulary=True, max_tokens=8)
    # Texts' words first; then, in file order, words that "lower" can produce:
    # not "Paris" (uppercase), not "new york" (two tokens); "," and "n't" are fine.
    assert encoder.vocabulary == ["", "[UNK]", "a", "film", "great", "the", ",", "bad"]
    assert encoder.coverage["filled_from_vectors"] == 3
    assert encoder.coverage["words"] == 3  # coverage is about the texts' own words
    np.testing.assert_array_equal(embedding_matrix(encoder)[7], vectors["bad"])
    # A word never seen in training gets its pretrained vector, not [UNK].
    np.testing.assert_array_equal(encoder(["bad"]).numpy()[0, 0], vectors["bad"])
    stripped = adapted(vectors, texts=["a film"], fill_vocabulary=True, standardize="lower_and_strip_punctuation")
    assert "," not in stripped.vocabulary and "n't" not in stripped.vocabulary
    assert stripped.vocabulary[-3:] == ["bad", "café", "great"]


def test_tokens_beyond_max_tokens_count_as_missed(vectors):
    coverage = adapted(vectors, max_tokens=5).coverage
    assert coverage["words"] == 3 and coverage["vocabulary"] == 1.0
    assert coverage["tokens"] == pytest.approx(9 / 18)  # a, dull, film x3 each


def test_adapt_reads_a_labelled_dataset_like_a_list(vectors):
    from_list = adapted(vectors)
    dataset = kt.data.from_lists(TEXTS, [0, 1, 0, 1, 0])
    from_dataset = adapted(vectors, texts=dataset)
    assert from_dataset.vocabulary == from_list.vocabulary
    assert from_dataset.coverage == from_list.coverage
    batched = adapted(vectors, texts=tf.data.Dataset.from_tensor_slices(TEXTS).batch(2))
    assert batched.vocabulary == from_list.vocabulary


# ---------------------------------------------------------- embedding rows


def test_embedding_rows_are_the_pretrained_vectors(vectors):
    encoder = adapted(vectors)
    matrix = embedding_matrix(encoder)
    np.testing.assert_array_equal(matrix[0], np.zeros(DIM))  # padding
    for row, word in enumerate(encoder.vocabulary):
        if word in vectors:
            np.testing.assert_array_equal(matrix[row], vectors[word])


def missing_rows(encoder, vectors):
    return [1] + [row for row, word in enumerate(encoder.vocabulary) if row > 1 and word not in vectors]


def test_oov_zeros(vectors):
    encoder = adapted(vectors, oov="zeros")
    matrix = embedding_matrix(encoder)
    assert missing_rows(encoder, vectors) == [1, 6, 13]
    np.testing.assert_array_equal(matrix[[1, 6, 13]], np.zeros((3, DIM)))
    np.testing.assert_array_equal(matrix[0], np.zeros(DIM))


def test_oov_mean_is_the_mean_of_all_vectors(vectors):
    encoder = adapted(vectors, oov="mean")
    matrix = embedding_matrix(encoder)
    expected = vectors.matrix.astype(np.float64).mean(axis=0)
    for row in missing_rows(encoder, vectors):
        np.testing.assert_allclose(matrix[row], expected, rtol=0, atol=1e-6)


def test_oov_random_is_seeded_and_scaled_like_the_vectors(vectors):
    first = embedding_matrix(adapted(vectors, oov="random", seed=3))
    again = embedding_matrix(adapted(vectors, oov="random", seed=3))
    other = embedding_matrix(adapted(vectors, oov="random", seed=4))
    rows = [6, 13]  # blorp, zorg
    np.testing.assert_array_equal(first[1], np.zeros(DIM))  # [UNK]: no training text maps to it
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[rows], other[rows])
    limit = np.sqrt(3.0) * vectors.matrix.astype(np.float64).std()
    assert np.abs(first[rows]).max() <= limit
    assert np.abs(first[rows]).max() > limit / 4  # not a tiny init
    # Without a seed it follows NumPy's global generator (keras.utils.set_random_seed).
    keras.utils.set_random_seed(7)
    unseeded = embedding_matrix(adapted(vectors))
    keras.utils.set_random_seed(7)
    np.testing.assert_array_equal(embedding_matrix(adapted(vectors)), unseeded)


# ----------------------------------------------------------------- forward


def test_per_token_output_zeroes_padding_and_carries_the_mask(vectors):
    encoder = adapted(vectors)
    outputs = encoder(strings(["a great film", "dull"]))
    assert outputs.shape == (2, 3, DIM)  # padded to the longest text only
    np.testing.assert_array_equal(outputs._keras_mask.numpy(), [[True] * 3, [True, False, False]])
    np.testing.assert_array_equal(outputs[1, 1:].numpy(), np.zeros((2, DIM)))
    np.testing.assert_allclose(outputs[0, 1].numpy(), vectors["great"])


def test_sequence_length_truncates(vectors):
    encoder = adapted(vectors, sequence_length=2)
    assert encoder(strings(["a great film", "dull"])).shape == (2, 2, DIM)
    assert encoder(strings([""])).shape == (1, 1, DIM)  # empty text: one padding position


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_pooling_ignores_padding(vectors, pooling):
    encoder = adapted(vectors, pooling=pooling)
    reduce = np.mean if pooling == "mean" else np.max
    words = ["a", "great", "film"]
    expected = reduce(np.stack([vectors[w] for w in words]), axis=0)
    alone = encoder(strings(["a great film"])).numpy()
    padded = encoder(strings(["a great film", "the film is not a good dull movie", ""])).numpy()
    np.testing.assert_allclose(alone[0], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(padded[0], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(padded[2], np.zeros(DIM))  # empty text


def test_takes_a_column_of_strings(vectors):
    encoder = adapted(vectors, pooling="mean")
    column = encoder(tf.constant([["a great film"], ["dull"]])).numpy()
    flat = encoder(strings(["a great film", "dull"])).numpy()
    np.testing.assert_array_equal(column, flat)


# ------------------------------------------------------------- preprocessor


def test_preprocessor_gives_fixed_length_ids_and_mask(vectors):
    encoder = adapted(vectors, sequence_length=5)
    preprocessor = encoder.preprocessor
    assert isinstance(preprocessor, WordVectorPreprocessor)
    assert preprocessor.sequence_length == 5 and encoder.vectorizer is preprocessor.vectorizer
    features = preprocessor(["a great film", "dull zorg blorp a a a a", ""])
    assert sorted(features) == ["padding_mask", "token_ids"]
    ids = features["token_ids"].numpy()
    assert features["token_ids"].dtype == tf.int32 and ids.shape == (3, 5)  # padded to sequence_length
    vocabulary = encoder.vocabulary
    assert ids[0].tolist() == [vocabulary.index(w) for w in ("a", "great", "film")] + [0, 0]
    assert ids[1].tolist() == [3, vocabulary.index("zorg"), vocabulary.index("blorp"), 2, 2]  # cut at 5
    np.testing.assert_array_equal(features["padding_mask"].numpy(), ids != 0)
    assert not ids[2].any()
    # In tf.data the shape is static, as TPUs want.
    mapped = tf.data.Dataset.from_tensor_slices(TEXTS).batch(2).map(preprocessor)
    assert mapped.element_spec["token_ids"].shape.as_list() == [None, 5]


def test_encoder_reads_preprocessor_output_like_raw_strings(vectors):
    texts = ["a great film", "dull", "", "not a good film , zorg"]
    for pooling in (None, "mean", "max"):
        encoder = adapted(vectors, pooling=pooling)
        from_strings = encoder(strings(texts))
        features = encoder.preprocessor(texts)
        from_features = encoder(features)
        from_ids = encoder(features["token_ids"])
        width = from_strings.shape[1] if pooling is None else None
        expected = from_strings.numpy()
        for outputs in (from_features, from_ids):
            actual = outputs.numpy()[:, :width] if pooling is None else outputs.numpy()
            np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
            if pooling is None:
                assert not outputs.numpy()[:, width:].any()  # the extra padding is exactly zero
                np.testing.assert_array_equal(outputs._keras_mask.numpy(), features["padding_mask"].numpy())


def test_functional_model_over_ids_carries_the_mask_and_round_trips(vectors, tmp_path):
    encoder = adapted(vectors, trainable=True)
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask"),
    }
    tokens = encoder(inputs)
    assert tokens.shape == (None, None, DIM)
    pooled = keras.layers.GlobalAveragePooling1D()(tokens)  # reads the mask
    model = keras.Model(inputs, kt.heads.ClassificationHead(2)(pooled))
    features = encoder.preprocessor(["a great film", "a great film dull dull dull", ""])
    short = encoder.preprocessor(["a great film"])
    short = {key: value[:, :3] for key, value in short.items()}
    # Padding does not change the answer: the mask reached the pooling.
    np.testing.assert_allclose(model(short).numpy()[0], model(features).numpy()[0], rtol=0, atol=1e-6)
    loaded = assert_keras_round_trip(model, features, tmp_path)
    restored = next(layer for layer in loaded.layers if isinstance(layer, kt.encoders.WordVectorEncoder))
    assert restored.preprocessor.vocabulary == encoder.vocabulary
    np.testing.assert_array_equal(
        restored.preprocessor(["a great film"])["token_ids"].numpy(),
        encoder.preprocessor(["a great film"])["token_ids"].numpy(),
    )


def test_prepare_buckets_the_preprocessor_output(vectors):
    encoder = adapted(vectors, sequence_length=16)
    dataset = kt.data.from_lists(TEXTS, [0, 1, 0, 1, 0])
    batches = list(kt.data.prepare(dataset, encoder.preprocessor, batch_size=2, bucket=[4, 8]))
    assert [features["token_ids"].shape[1] for features, _ in batches] == [4, 8, 4]  # trimmed
    first, labels = batches[0]
    assert labels.numpy().tolist() == [0, 1]
    np.testing.assert_array_equal(first["token_ids"].numpy(), encoder.token_ids(TEXTS[:2]).numpy()[:, :4])
    np.testing.assert_array_equal(first["padding_mask"].numpy(), first["token_ids"].numpy() != 0)


def test_preprocessor_config_round_trip(vectors):
    encoder = adapted(vectors, sequence_length=7, max_tokens=30, standardize="lower_and_split_punctuation")
    revived = assert_config_round_trip(encoder.preprocessor)
    assert (revived.sequence_length, revived.max_tokens, revived.standardize) == (
        7, 30, "lower_and_split_punctuation"
    )


def test_layer_groups_output_dim_and_set_trainable(vectors):
    encoder = adapted(vectors)
    assert isinstance(encoder, kt.encoders.Encoder)
    assert encoder.layer_groups() == [[encoder.embedding], []] and encoder.num_blocks == 0
    assert encoder.output_dim == DIM
    assert kt.encoders.WordVectorEncoder(vectors).layer_groups() == [[], []]  # before adapt
    encoder.set_trainable(True)
    assert encoder.trainable and encoder.embedding.trainable
    encoder.set_trainable(0)  # the top 0 blocks: frozen, as False
    assert not encoder.trainable and encoder.trainable_weights == []
    with pytest.raises(ValueError, match="no blocks"):
        encoder.set_trainable(1)


def test_place_in_strategy_scope_moves_the_matrix_and_keeps_it(vectors):
    encoder = adapted(vectors, trainable=True)
    before = embedding_matrix(encoder)
    expected = encoder(strings(["a great film"])).numpy()
    assert not encoder.place_in_strategy_scope()  # no strategy: nothing to do
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        assert encoder.place_in_strategy_scope()
        assert not encoder.place_in_strategy_scope()  # already the scope's
    assert [type(w.value).__name__ for w in encoder.weights] == ["MirroredVariable"]
    np.testing.assert_array_equal(embedding_matrix(encoder), before)
    np.testing.assert_array_equal(encoder(strings(["a great film"])).numpy(), expected)


def test_bad_ids_get_clear_errors(vectors):
    encoder = adapted(vectors)
    with pytest.raises(ValueError, match="token_ids"):
        encoder({"ids": tf.constant([[2, 3]])})
    with pytest.raises(ValueError, match="bool"):
        encoder(tf.constant([[True, False]]))
    # Float ids are read as ids, as keras.layers.Embedding reads them.
    np.testing.assert_array_equal(encoder(tf.constant([[2.0, 3.0]])).numpy(), encoder(tf.constant([[2, 3]])).numpy())
    with pytest.raises(ValueError, match="not a single string"):
        encoder("a great film")


# ------------------------------------------------------------- standardize


def tokens(texts, standardize):
    return [t.decode() for t in tf.strings.split(standardize_texts(texts, standardize)).to_list()[0]]


def test_split_punctuation_matches_ptb_tokens():
    text = ["It's not GOOD, isn\u2019t it? 10,000 u.s. films... (sigh) Café."]
    assert tokens(text, "lower_and_split_punctuation") == [
        "it", "'s", "not", "good", ",", "is", "n't", "it", "?", "10,000", "u.s.",
        "films", "...", "(", "sigh", ")", "café", ".",
    ]
    # Already tokenised text (SST-2) comes out unchanged.
    tokenised = "it 's a charming and often affecting journey . "
    assert tokens([tokenised], "lower_and_split_punctuation") == tokenised.split()


def test_standardize_modes():
    text = ["Isn't CAFÉ-great!"]
    assert tokens(text, "lower") == ["isn't", "café-great!"]  # Unicode-aware lowercasing
    assert tokens(text, "lower_and_strip_punctuation") == ["isnt", "cafégreat"]
    assert tokens(text, "strip_punctuation") == ["Isnt", "CAFÉgreat"]
    assert tokens(text, None) == ["Isn't", "CAFÉ-great!"]
    # Line separators that Python's splitlines would break a saved vocabulary on.
    assert tokens(["a\u2028b\x85c\x1cd"], None) == ["a", "b", "c", "d"]


# ------------------------------------------------------ trainable toggle


def fit_once(model, texts, labels):
    model.fit(tf.data.Dataset.from_tensor_slices((texts, labels)).batch(2), epochs=2, verbose=0)


def test_frozen_embedding_is_bit_identical_after_fit_and_trains_once_toggled(vectors):
    encoder = adapted(vectors, pooling="mean")
    text = keras.Input(shape=(), dtype="string")
    head = kt.heads.ClassificationHead(2)
    model = keras.Model(text, head(encoder(text)))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=head.default_loss())
    labels = np.array([1, 0, 0, 1, 0])
    before = embedding_matrix(encoder).copy()
    assert encoder.embedding.embeddings.path not in [v.path for v in model.trainable_variables]
    fit_once(model, TEXTS, labels)
    np.testing.assert_array_equal(embedding_matrix(encoder), before)

    encoder.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=head.default_loss())
    fit_once(model, TEXTS, labels)
    after = embedding_matrix(encoder)
    assert not np.allclose(after[2:], before[2:])
    np.testing.assert_array_equal(after[0], np.zeros(DIM))  # padding gets no gradient

    encoder.set_trainable(False)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=head.default_loss())
    fit_once(model, TEXTS, labels)
    np.testing.assert_array_equal(embedding_matrix(encoder), after)


def test_trainable_at_construction(vectors):
    encoder = adapted(vectors, trainable=True)
    assert [v.path for v in encoder.trainable_weights] == [encoder.embedding.embeddings.path]
    assert adapted(vectors).trainable_weights == []


# ------------------------------------------------------------ serialisation


def test_config_round_trip(vectors):
    encoder = adapted(vectors, pooling="max", oov="mean", seed=5, max_tokens=100, sequence_length=16)
    revived = assert_config_round_trip(encoder)
    assert revived.vocabulary_size == 14 and revived.coverage == encoder.coverage
    assert revived.vectors is None
    assert encoder.get_config()["vectors"] is None  # the vectors file is not in the config


def test_keras_round_trip_keeps_vocabulary_weights_and_coverage(vectors, tmp_path):
    encoder = adapted(vectors, texts=TEXTS + ["café au lait"], pooling="mean", trainable=True)
    text = keras.Input(shape=(), dtype="string")
    model = keras.Model(text, kt.heads.ClassificationHead(2)(encoder(text)))
    inputs = strings(["a great film", "café zorg", "", "unknown words only"])
    loaded = assert_keras_round_trip(model, inputs, tmp_path)
    restored = loaded.layers[1]
    assert isinstance(restored, kt.encoders.WordVectorEncoder)
    assert restored.vocabulary == encoder.vocabulary  # including the non-ASCII "café"
    np.testing.assert_array_equal(embedding_matrix(restored), embedding_matrix(encoder))
    assert restored.coverage == encoder.coverage
    assert restored.trainable is True
    with pytest.raises(ValueError, match="loaded without its word vectors"):
        restored.adapt(["more text"])


# --------------------------------------------------------------- bad input


def test_bad_arguments_get_clear_errors(vectors):
    make = kt.encoders.WordVectorEncoder
    with pytest.raises(TypeError, match="WordVectors"):
        make(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="`vectors` is required"):
        make(None)
    with pytest.raises(ValueError, match="`standardize` must be one of"):
        make(vectors, standardize="upper")
    with pytest.raises(ValueError, match="`oov` must be one of"):
        make(vectors, oov="unk")
    with pytest.raises(ValueError, match="`pooling` must be one of"):
        make(vectors, pooling="cls")
    with pytest.raises(ValueError, match="`max_tokens`"):
        make(vectors, max_tokens=2)
    with pytest.raises(ValueError, match="`sequence_length`"):
        make(vectors, sequence_length=0)
    with pytest.raises(ValueError, match="`trainable` must be True or False"):
        make(vectors, trainable=2)
    with pytest.raises(FileNotFoundError):
        make("/nonexistent/glove.txt")


def test_misuse_gets_clear_errors(vectors):
    encoder = kt.encoders.WordVectorEncoder(vectors)
    with pytest.raises(ValueError, match="call `encoder.adapt"):
        encoder(strings(["a film"]))
    with pytest.raises(ValueError, match="`texts` is empty"):
        encoder.adapt([])
    with pytest.raises(ValueError, match="not a single string"):
        encoder.adapt("a great film")
    with pytest.raises(ValueError, match="found no words"):
        encoder.adapt(["", "  "])
    with pytest.raises(ValueError, match="texts\\[1\\] is int"):
        encoder.adapt(["a film", 3])
    encoder.adapt(TEXTS)
    with pytest.raises(ValueError, match="already adapted"):
        encoder.adapt(TEXTS)
    with pytest.raises(ValueError, match="shape \\[batch\\] or"):
        encoder(tf.constant([["a", "b"]]))
