"""Static subword vectors from a pretrained encoder (`kt.WordVectors.from_encoder`), issue 20.

The encoder's input token embedding as word vectors, and a
`WordVectorEncoder` that tokenises with the encoder's own subword tokenizer
(SentencePiece for e5, WordPiece for MiniLM), so that TextCNN / BiLSTM run
over them. On a tiny BERT over a SentencePiece (XLM-R) tokenizer trained
here, and on the tiny WordPiece BERT of tests/conftest.py.
"""

import io

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_keras_round_trip
from harness import assert_preprocessor_contract
from harness import assert_task_contract
from ktransfer.encoders import keras_hub_adapter as adapter
from ktransfer.encoders.word_vector_encoder import WordVectorPreprocessor

SPM_TEXTS = [
    "the film was great", "the plot was dull", "a fine movie", "not good at all",
    "电影很好", "剧情很无聊", "我喜欢这部电影", "une belle histoire", "very very bad",
]
ENGLISH = ["the film was great", "a fine movie", "the plot was dull", "very very bad"]
CHINESE = ["电影很好", "我喜欢这部电影", "剧情很无聊", "不好"]
LABELS = [1, 1, 0, 0]


@pytest.fixture
def spm_encoder():
    """A tiny BERT over an XLM-R (SentencePiece) tokenizer trained here.

    One per test, made after conftest's seeding: `tf.random.set_seed` (in
    `keras.utils.set_random_seed`) drops the SentencePiece op's kernel-owned
    resource, after which graph-mode tokenisation by an earlier tokenizer
    fails (see benchmarks/crosslingual.py's `reseed`). The tests below do not
    reseed after making it.
    """
    spm = pytest.importorskip("sentencepiece")
    import keras_hub

    keras.utils.set_random_seed(0)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_TEXTS * 20), model_writer=model, vocab_size=40,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
    )
    tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=model.getvalue())
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=32,
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=16)
    return kt.encoders.BertEncoder(backbone, preprocessor, pooling="mean")


@pytest.fixture(scope="module")
def wordpiece_encoder(tiny_preset):
    return kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="mean")


def embedding(encoder):
    return adapter.token_embedding_matrix(encoder.backbone)


# --- WordVectors.from_encoder ----------------------------------------------------------


@pytest.mark.parametrize("which", ["spm_encoder", "wordpiece_encoder"])
def test_vectors_are_the_token_embedding_rows_named_by_the_pieces(which, request):
    encoder = request.getfixturevalue(which)
    tokenizer = encoder.preprocessor.tokenizer
    vectors = kt.WordVectors.from_encoder(encoder)
    assert vectors.words == [str(p) for p in tokenizer.get_vocabulary()]
    np.testing.assert_array_equal(vectors.matrix, embedding(encoder))
    assert vectors.matrix.dtype == np.float32 and vectors.dim == encoder.output_dim
    assert vectors.tokenizer is tokenizer
    record = vectors.tokenizer_record
    assert record["class"] == type(tokenizer).__name__
    assert record["vocabulary_size"] == len(vectors) == record["rows"]
    assert not record["trimmed"] and len(record["vocabulary_sha256"]) == 64
    piece = vectors.words[7]
    np.testing.assert_array_equal(vectors[piece], embedding(encoder)[7])


def test_a_trimmed_encoder_gives_only_its_kept_rows(spm_encoder):
    tokenizer = spm_encoder.preprocessor.tokenizer
    small = spm_encoder.trim_vocabulary(["the film was great", "电影很好"])
    vectors = kt.WordVectors.from_encoder(small)
    assert len(vectors) == small.vocabulary_size < spm_encoder.vocabulary_size
    assert vectors.tokenizer_record["trimmed"] and vectors.tokenizer_record["rows"] == len(vectors)
    full = kt.WordVectors.from_encoder(spm_encoder)
    table = small.token_id_map.numpy()
    for row, piece in enumerate(vectors.words):
        token_id = tokenizer.token_to_id(piece)
        assert table[token_id] == row
        np.testing.assert_array_equal(vectors[piece], full[piece])  # the same pretrained row
    assert {"<unk>", "<s>", "</s>", "<pad>"} <= set(vectors.words)


def test_clear_errors_for_what_has_no_token_embedding(spm_encoder):
    with pytest.raises(TypeError, match="BertEncoder"):
        kt.WordVectors.from_encoder("multilingual-e5-small")
    glove = kt.encoders.WordVectorEncoder(kt.WordVectors(["a"], np.ones((1, 2), "float32")))
    with pytest.raises(ValueError, match="no BERT backbone"):
        kt.WordVectors.from_encoder(glove)
    bare = kt.encoders.BertEncoder(spm_encoder.backbone, preprocessor=None)
    with pytest.raises(ValueError, match="pass `tokenizer=`"):
        kt.WordVectors.from_encoder(bare)
    with pytest.raises(ValueError, match="no token embedding"):
        kt.WordVectors.from_encoder(keras.layers.Dense(2), tokenizer=spm_encoder.preprocessor.tokenizer)
    vectors = kt.WordVectors.from_encoder(spm_encoder.backbone, tokenizer=spm_encoder.preprocessor.tokenizer)
    assert len(vectors) == spm_encoder.vocabulary_size
    with pytest.raises(TypeError, match="KerasHub tokenizer"):
        kt.encoders.WordVectorEncoder(vectors, tokenizer="sentencepiece")


# --- tokenising with the encoder's tokenizer --------------------------------------------


@pytest.mark.parametrize("which", ["spm_encoder", "wordpiece_encoder"])
def test_tokens_are_the_encoder_tokenizers_pieces(which, request):
    encoder = request.getfixturevalue(which)
    tokenizer = encoder.preprocessor.tokenizer
    texts = SPM_TEXTS + ["The acting is awful, but I love it!"]
    words = kt.encoders.WordVectorEncoder(kt.WordVectors.from_encoder(encoder), sequence_length=6)
    assert words.tokenizer is tokenizer and words.standardize is None
    words.adapt(texts[:4])  # the rest of the pieces come from fill_vocabulary
    ids = words.preprocessor(texts)["token_ids"].numpy()
    vocabulary = words.vocabulary
    for text, row in zip(texts, ids):
        expected = [tokenizer.id_to_token(int(i)) for i in np.asarray(tokenizer(text))][:6]
        got = [vocabulary[i] for i in row if i != 0]
        # [UNK] only for pieces that are special tokens (none here) or line breaks
        assert got == expected, (text, got, expected)
    # Each token's vector is the encoder's embedding row of that piece.
    table = words.embedding.embeddings.numpy()
    rows = embedding(encoder)
    for i in np.unique(ids[ids > 1]):
        np.testing.assert_array_equal(table[i], rows[tokenizer.token_to_id(vocabulary[i])])


def test_preprocessor_contract_with_a_tokenizer(spm_encoder, tmp_path):
    tokenizer = spm_encoder.preprocessor.tokenizer

    def make():
        preprocessor = WordVectorPreprocessor(max_tokens=40, sequence_length=8, tokenizer=tokenizer)
        preprocessor.set_vocabulary(["▁the", "▁film", "电影", "很", "好"])
        return preprocessor

    inputs = tf.constant(["the film was great", "电影很好", ""])
    layer = assert_preprocessor_contract(
        make, inputs, {"token_ids": (3, 8), "padding_mask": (3, 8)}, tmp_path=tmp_path)
    assert layer.standardize is None
    pieces = layer.split_words(["电影很好"]).to_list()[0]
    assert [p.decode() for p in pieces] == [tokenizer.id_to_token(int(i)) for i in tokenizer("电影很好")]
    config = layer.get_config()
    assert config["tokenizer"]["class_name"] == "XLMRobertaTokenizer"


def test_textcnn_over_subword_vectors_trains_round_trips_and_exports(spm_encoder, tmp_path):
    vectors = kt.WordVectors.from_encoder(spm_encoder.trim_vocabulary(SPM_TEXTS))

    def make():
        encoder = kt.encoders.WordVectorEncoder(vectors, sequence_length=12, seed=0)
        encoder.adapt(ENGLISH)
        return kt.models.TextCNN(encoder, labels=["neg", "pos"], filter_sizes=(1, 2),
                                 num_filters=4)

    task, loaded = assert_task_contract(
        make, ENGLISH, LABELS, (4, 2), num_trainable_weights=6, num_non_trainable_weights=1,
        tmp_path=tmp_path,
    )
    assert loaded.preprocessor.tokenizer is not None
    # The Chinese pieces are in the vocabulary (filled from the trimmed vectors), not [UNK].
    ids = task.preprocessor(CHINESE)["token_ids"].numpy()
    assert (ids[ids > 0] > 1).all()
    np.testing.assert_allclose(loaded.predict(CHINESE, verbose=0), task.predict(CHINESE, verbose=0),
                               atol=1e-6)
    before = task.evaluate(ENGLISH, LABELS, verbose=0, return_dict=True)["loss"]
    task.fit(ENGLISH, LABELS, epochs=30, batch_size=4, verbose=0)
    after = task.evaluate(ENGLISH, LABELS, verbose=0, return_dict=True)["loss"]
    assert after < before


def test_bilstm_and_wordpiece_keras_round_trip(wordpiece_encoder, tmp_path):
    vectors = kt.WordVectors.from_encoder(wordpiece_encoder)
    encoder = kt.encoders.WordVectorEncoder(vectors, sequence_length=10, fill_vocabulary=False)
    encoder.adapt(["the acting is boring", "a great film"])
    assert_config_round_trip(encoder)
    model = kt.models.BiLSTMClassifier(encoder, num_classes=2, units=4)
    model.fit(["the acting is boring", "a great film"], [0, 1], epochs=1, verbose=0)
    features = model.preprocessor(tf.constant(["the actings is boring", "loving it"]))
    pieces = model.preprocessor.split_words(["the actings is boring"]).to_list()[0]
    assert [p.decode() for p in pieces] == ["the", "acting", "##s", "is", "boring"]
    loaded = assert_keras_round_trip(model, features, tmp_path)
    assert loaded.preprocessor.tokenizer.get_vocabulary() == wordpiece_encoder.preprocessor.tokenizer.get_vocabulary()


def test_the_keras_hub_attributes_the_adapter_reads(spm_encoder, wordpiece_encoder):
    """Pins what `keras_hub_adapter`'s tokenizer / embedding functions rely on (KerasHub 0.32)."""
    for encoder, unknown in ((spm_encoder, "<unk>"), (wordpiece_encoder, "[UNK]")):
        tokenizer = encoder.preprocessor.tokenizer
        assert encoder.backbone.token_embedding.embeddings.shape[0] == encoder.vocabulary_size
        pieces = adapter.tokenizer_pieces(tokenizer)
        assert pieces[adapter.tokenizer_unknown_id(tokenizer)] == unknown
        assert [pieces[i] for i in np.asarray(tokenizer("the film"))] == [
            tokenizer.id_to_token(int(i)) for i in np.asarray(tokenizer("the film"))]
    assert {"<s>", "</s>", "<pad>", "<unk>", "<mask>"} <= adapter.tokenizer_special_tokens(
        spm_encoder.preprocessor.tokenizer)
    assert {"[CLS]", "[SEP]", "[PAD]", "[MASK]"} <= adapter.tokenizer_special_tokens(
        wordpiece_encoder.preprocessor.tokenizer)


def test_save_and_load_keep_the_tokenizer(spm_encoder, tmp_path):
    vectors = kt.WordVectors.from_encoder(spm_encoder.trim_vocabulary(SPM_TEXTS))
    vectors.save(str(tmp_path / "pieces"))
    loaded = kt.WordVectors.load(str(tmp_path / "pieces"))
    assert loaded.words == vectors.words
    np.testing.assert_array_equal(loaded.matrix, vectors.matrix)
    assert loaded.tokenizer_record == vectors.tokenizer_record
    assert loaded.tokenizer.get_vocabulary() == vectors.tokenizer.get_vocabulary()
    words = kt.encoders.WordVectorEncoder(loaded, sequence_length=8)
    assert words.tokenizer is loaded.tokenizer
    words.adapt(ENGLISH)
    pieces = words.preprocessor.split_words(["电影很好"]).to_list()[0]
    tokenizer = spm_encoder.preprocessor.tokenizer
    assert [p.decode() for p in pieces] == [tokenizer.id_to_token(int(i)) for i in tokenizer("电影很好")]
    plain = kt.WordVectors(["a"], np.ones((1, 2), "float32"))
    plain.save(str(tmp_path / "plain"))
    assert kt.WordVectors.load(str(tmp_path / "plain")).tokenizer is None
