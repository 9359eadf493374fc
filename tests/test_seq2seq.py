"""kt.tasks.Seq2Seq: BERT2BERT warm start, shared and random decoders; training,
generation, `.keras` and the raw-string export (fresh process)."""

import os

import numpy as np
import pytest

import keras
import keras_hub
import tensorflow as tf

import ktransfer as kt
from conftest import TINY_VOCAB
from conftest import make_tiny_preset
from harness import ServingProcess
from harness import assert_config_round_trip
from harness import assert_preprocessor_contract
from harness import assert_task_contract
from harness import serve_in_fresh_process
from ktransfer import assets
from ktransfer.encoders import keras_hub_adapter as adapter

SEQUENCE_LENGTH = 16
TARGET_LENGTH = 8
SOURCES = ["a great film", "the plot is dull", "love it", "bad acting"]
# The tiny BERT (tests/conftest.py): 2 blocks; embeddings 5 weights, 16 per
# encoder block, pooler 2 (not trainable: pooling=None). A decoder block has
# 26 (self-attention 8 + norm 2, cross-attention 8 + norm 2, FFN 4 + norm 2);
# the decoder's position embedding and embedding norm add 3.
ENCODER_TRAINABLE = 5 + 2 * 16
DECODER_BLOCK = 26
CROSS_ATTENTION = 8 + 2


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return make_tiny_preset(tmp_path_factory.mktemp("s2s_bert"), sequence_length=SEQUENCE_LENGTH,
                            dropout=0.0)


@pytest.fixture(scope="module")
def serving():
    with ServingProcess() as process:
        yield process


def make(preset, decoder_init="warm_start", **kwargs):
    return kt.tasks.Seq2Seq.from_preset(
        preset, decoder_init=decoder_init, sequence_length=SEQUENCE_LENGTH,
        target_length=TARGET_LENGTH, **kwargs,
    )


def arrays(layer):
    return [np.array(w) for w in layer.get_weights()]


# --- how the decoder starts ---------------------------------------------------------


def test_warm_start_copies_the_encoder_blocks(preset):
    s2s = make(preset, "warm_start")
    backbone = s2s.encoder.backbone
    assert len(s2s.trainable_weights) == ENCODER_TRAINABLE + 2 * DECODER_BLOCK + 3
    for encoder_block, decoder_block in zip(backbone.transformer_layers, s2s.decoder_layers):
        assert isinstance(decoder_block, keras_hub.layers.TransformerDecoder)
        source, target = adapter.block_sublayers(encoder_block), adapter.block_sublayers(decoder_block)
        for name in adapter.BLOCK_SUBLAYER_NAMES:
            assert source[name] is not target[name]  # copies, trained apart
            for a, b in zip(arrays(source[name]), arrays(target[name]), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=name)
        # The FFN activation is the encoder's (tanh GELU in KerasHub's BERT).
        assert (adapter.feedforward_intermediate_dense(decoder_block).activation
                is adapter.feedforward_intermediate_dense(encoder_block).activation)
        cross = adapter.cross_attention_sublayers(decoder_block)["_cross_attention_layer"]
        own = adapter.block_sublayers(encoder_block)["_self_attention_layer"]
        assert not np.array_equal(arrays(cross)[0], arrays(own)[0])  # new, random
    table = np.array(backbone.position_embedding.position_embeddings)
    np.testing.assert_array_equal(
        np.array(s2s.decoder_position_embedding.position_embeddings), table[:TARGET_LENGTH]
    )
    for a, b in zip(arrays(s2s.decoder_embeddings_layer_norm), arrays(backbone.embeddings_layer_norm)):
        np.testing.assert_array_equal(a, b)
    assert s2s.token_embedding is backbone.token_embedding  # tied: input and output


def test_shared_decoder_uses_the_encoder_variables(preset):
    s2s = make(preset, "shared")
    backbone = s2s.encoder.backbone
    assert len(s2s.trainable_weights) == ENCODER_TRAINABLE + 2 * CROSS_ATTENTION
    encoder_ids = {id(v) for v in backbone.weights}
    for encoder_block, decoder_block in zip(backbone.transformer_layers, s2s.decoder_layers):
        source, target = adapter.block_sublayers(encoder_block), adapter.block_sublayers(decoder_block)
        for name in adapter.BLOCK_SUBLAYER_NAMES:
            assert target[name].weights and {id(v) for v in target[name].weights} <= encoder_ids, name
        own = {id(v) for layer in adapter.cross_attention_sublayers(decoder_block).values()
               for v in layer.weights}
        assert not own & encoder_ids
    # One training step moves the shared variables once (they are one set).
    s2s.compile(optimizer=keras.optimizers.SGD(0.5))
    kernel = adapter.attention_projections(
        adapter.block_sublayers(s2s.decoder_layers[0])["_self_attention_layer"])["_query_dense"].kernel
    before = np.array(kernel)
    s2s.fit(SOURCES, SOURCES, batch_size=4, epochs=1, verbose=0)
    query = adapter.attention_projections(
        adapter.self_attention_layer(backbone.transformer_layers[0]))["_query_dense"].kernel
    assert query is kernel and not np.array_equal(before, np.array(kernel))
    assert_config_round_trip(s2s)


def test_random_decoder_differs_from_the_encoder(preset):
    s2s = make(preset, "random")
    backbone = s2s.encoder.backbone
    assert len(s2s.trainable_weights) == ENCODER_TRAINABLE + 2 * DECODER_BLOCK + 3
    for encoder_block, decoder_block in zip(backbone.transformer_layers, s2s.decoder_layers):
        source, target = adapter.block_sublayers(encoder_block), adapter.block_sublayers(decoder_block)
        for name in ("_self_attention_layer", "_feedforward_intermediate_dense",
                     "_feedforward_output_dense"):
            assert not np.array_equal(arrays(source[name])[0], arrays(target[name])[0]), name
    # Only the blocks are random: the embeddings are the checkpoint's.
    table = np.array(backbone.position_embedding.position_embeddings)
    np.testing.assert_array_equal(
        np.array(s2s.decoder_position_embedding.position_embeddings), table[:TARGET_LENGTH]
    )


def test_preprocessor_shifts_targets_and_masks_padding(preset):
    s2s = make(preset)
    x, labels, weights = s2s.preprocessor(["a great film"], ["great film"])
    cls, sep, pad = (TINY_VOCAB.index(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    great, film = TINY_VOCAB.index("great"), TINY_VOCAB.index("film")
    assert x["decoder_token_ids"].numpy().tolist() == [[cls, great, film, sep] + [pad] * 4]
    assert labels.numpy().tolist() == [[great, film, sep] + [pad] * 5]
    assert weights.numpy().tolist() == [[1.0, 1.0, 1.0] + [0.0] * 5]
    assert x["token_ids"].shape == (1, SEQUENCE_LENGTH)
    generation = s2s.preprocessor(["a great film"])
    assert generation["decoder_token_ids"].numpy().tolist() == [[cls] + [pad] * 7]


def test_cached_decoding_step_equals_the_full_decoder(preset):
    s2s = make(preset, "warm_start")
    features = s2s.preprocessor(["a great film", "the plot is dull and boring"])
    encoder_output, mask = s2s._encode(features), features["padding_mask"]
    prompt = np.array([[2, 10, 8, 5, 7, 9, 3, 0], [2, 16, 18, 14, 3, 0, 0, 0]], "int32")
    full = np.array(s2s._decoder_logits(prompt, None, encoder_output, mask))
    caches = (np.zeros((2, 2, 2, TARGET_LENGTH, 2, 8), "float32"),
              np.zeros((2, 2, 2, SEQUENCE_LENGTH, 2, 8), "float32"))
    _, caches = s2s._decoder_hidden(prompt * 0, None, encoder_output, mask, caches=caches,
                                    self_cache_index=0, cross_cache_index=0)
    for i in range(TARGET_LENGTH):
        hidden, caches = s2s._decoder_hidden(
            prompt[:, i:i + 1], None, encoder_output, mask, start_index=i, caches=caches,
            self_cache_index=i, cross_cache_index=None,
        )
        np.testing.assert_allclose(np.array(s2s._logits(hidden))[:, 0], full[:, i], atol=1e-5)


# --- training, generation, saving, export ---------------------------------------------


@pytest.fixture(scope="module")
def trained(preset):
    """A warm-started tiny model that learned to copy four sentences."""
    keras.utils.set_random_seed(0)
    s2s = make(preset, "warm_start")
    s2s.compile(optimizer=keras.optimizers.Adam(3e-3))
    s2s.fit(SOURCES * 8, SOURCES * 8, batch_size=8, epochs=40, verbose=0)
    return s2s


def test_copy_task_is_learned(trained):
    assert trained.generate(SOURCES) == SOURCES
    assert trained.generate(SOURCES, sampler="beam") == SOURCES
    assert trained.generate(SOURCES, max_length=3) == ["a great", "the plot", "love it", "bad acting"]


def test_keras_file_round_trip_generates_the_same(trained, tmp_path):
    path = os.path.join(str(tmp_path), "s2s.keras")
    trained.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is kt.tasks.Seq2Seq and loaded.decoder_init == "warm_start"
    assert loaded.generate(SOURCES) == trained.generate(SOURCES)
    features = trained.preprocessor(SOURCES, SOURCES)[0]
    np.testing.assert_allclose(loaded(features), trained(features), atol=1e-6)


def test_export_answers_in_a_fresh_process_like_generate(trained, serving, tmp_path):
    path = trained.export(os.path.join(str(tmp_path), "saved_models", "copy", "1"))
    answer = serve_in_fresh_process(path, SOURCES)
    assert answer["foreign_modules"] == []
    assert answer["outputs"] == ["generated"]
    assert answer["generated"] == trained.generate(SOURCES) == SOURCES


@pytest.mark.parametrize("decoder_init", ["warm_start", "shared"])
def test_contract_and_fresh_process_export(preset, serving, tmp_path, decoder_init):
    def make_preprocessor():
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=TINY_VOCAB)
        return kt.tasks.Seq2SeqPreprocessor(tokenizer, sequence_length=SEQUENCE_LENGTH,
                                            target_length=TARGET_LENGTH)

    if decoder_init == "warm_start":
        assert_preprocessor_contract(
            make_preprocessor, np.array(SOURCES[:2]),
            {key: (2, SEQUENCE_LENGTH) for key in ("token_ids", "segment_ids", "padding_mask")}
            | {key: (2, TARGET_LENGTH) for key in ("decoder_token_ids", "decoder_padding_mask")},
            tmp_path=tmp_path / "preprocessor",
        )
    weights = ENCODER_TRAINABLE + (2 * DECODER_BLOCK + 3 if decoder_init == "warm_start"
                                   else 2 * CROSS_ATTENTION)
    assert_task_contract(
        lambda: make(preset, decoder_init), SOURCES[:2], SOURCES[:2][::-1],
        expected_output_shape=(2, TARGET_LENGTH, len(TINY_VOCAB)),
        num_trainable_weights=weights, num_non_trainable_weights=2,
        tmp_path=tmp_path, serving_process=serving,
        # warm_start's export is the trained model's (test_export_answers_in_a_fresh_process_like_generate)
        export=decoder_init == "shared",
    )


# --- a trimmed vocabulary (BertEncoder.trim_vocabulary) ------------------------------------

# Kept pieces: the special tokens, [UNK] and the pieces of SOURCES (not "film"'s neighbours).
TRIM_TEXTS = SOURCES + ["not good"]


@pytest.fixture(scope="module")
def trimmed(preset):
    """A warm-started tiny model over a trimmed vocabulary that learned to copy SOURCES."""
    keras.utils.set_random_seed(0)
    s2s = make(preset, "warm_start", trim_texts=TRIM_TEXTS)
    s2s.compile(optimizer=keras.optimizers.Adam(3e-3))
    s2s.fit(SOURCES * 8, SOURCES * 8, batch_size=8, epochs=40, verbose=0)
    return s2s


def test_trimmed_vocabulary_projects_onto_the_kept_rows(preset):
    s2s = make(preset, "warm_start", trim_texts=TRIM_TEXTS)
    kept = sorted({TINY_VOCAB.index(w) for t in TRIM_TEXTS for w in t.split()}
                  | {TINY_VOCAB.index(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")})
    assert s2s.is_trimmed and s2s.encoder.vocabulary_size == len(kept) < len(TINY_VOCAB)
    assert s2s.token_embedding is s2s.encoder.backbone.token_embedding  # tied, trimmed rows
    features, labels, weights = s2s.preprocess_samples(np.array(SOURCES[:2]), np.array(SOURCES[:2]))
    assert s2s(features).shape == (2, TARGET_LENGTH, len(kept))  # one logit per kept piece
    # Labels index the logits' rows; mapped back they are the tokenizer's ids again.
    _, token_labels, _ = s2s.preprocessor(SOURCES[:2], SOURCES[:2])
    np.testing.assert_array_equal(labels, s2s.token_rows(token_labels))
    assert int(np.max(labels)) < len(kept)
    np.testing.assert_array_equal(s2s.token_ids_from_rows(labels), token_labels)
    # Rows -> tokenizer ids: every kept row is its piece; the <unk> row is [UNK].
    rows = np.arange(len(kept), dtype="int32")
    np.testing.assert_array_equal(s2s.token_ids_from_rows(rows), kept)
    unseen = TINY_VOCAB.index("awful")
    unknown = s2s.token_ids_from_rows(s2s.token_rows(np.int32(unseen)))
    assert int(unknown) == TINY_VOCAB.index("[UNK]")
    # Untrimmed: the identity.
    plain = make(preset)
    assert not plain.is_trimmed and plain.token_rows(labels) is labels


def test_trimmed_model_generates_saves_and_exports_like_generate(trimmed, tmp_path):
    assert trimmed.generate(SOURCES) == SOURCES
    assert trimmed.generate(SOURCES, sampler="beam") == SOURCES
    ids = np.array(trimmed.generate_token_ids(trimmed.preprocessor(SOURCES)))
    assert ids[:, 0].tolist() == [TINY_VOCAB.index("[CLS]")] * 4  # tokenizer ids, not rows
    path = os.path.join(str(tmp_path), "s2s.keras")
    trimmed.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.is_trimmed and loaded.generate(SOURCES) == SOURCES
    exported = trimmed.export(os.path.join(str(tmp_path), "saved_models", "trimmed", "1"))
    answer = serve_in_fresh_process(exported, SOURCES + ["not good", "awful film"])
    assert answer["foreign_modules"] == []
    assert answer["generated"] == trimmed.generate(SOURCES + ["not good", "awful film"])


# --- the real multilingual-e5-small, trimmed: English -> Chinese ----------------------------

E5 = "multilingual-e5-small"
EN_ZH = [("I like cats.", "我喜欢猫。"), ("Hi.", "你好。"), ("It is raining.", "下雨了。")]


@pytest.fixture(scope="module")
def e5_folder():
    if E5 not in assets.ASSETS or not assets.is_cached(E5):
        pytest.skip(f"{E5} not fetched: run `ktransfer assets fetch {E5}`")
    return assets.path(E5)


@pytest.mark.slow
def test_trimmed_e5_generates_chinese_and_its_export_answers_the_same(e5_folder, tmp_path):
    """250k SentencePiece pieces trimmed to a corpus; generated rows -> ids -> Chinese text."""
    sources, targets = [e for e, _ in EN_ZH], [z for _, z in EN_ZH]
    keras.utils.set_random_seed(0)
    s2s = kt.tasks.Seq2Seq.from_preset(e5_folder, sequence_length=16, target_length=12,
                                       trim_texts=sources + targets)
    tokenizer = s2s.preprocessor.tokenizer
    assert s2s.is_trimmed and s2s.encoder.trim_summary["vocabulary_size_before"] > 250_000
    assert s2s.encoder.vocabulary_size < 100
    # The SentencePiece detokenisation of Chinese, through the rows the decoder writes.
    start, end, pad = (s2s.preprocessor.start_token_id, s2s.preprocessor.end_token_id,
                       s2s.preprocessor.pad_token_id)
    pieces = tokenizer(tf.constant(targets))  # eagerly KerasHub answers lists
    pieces = pieces.to_list() if isinstance(pieces, tf.RaggedTensor) else pieces
    pieces = [[start] + [int(i) for i in row] + [end] for row in pieces]
    width = max(len(row) for row in pieces)
    ids = tf.constant([row + [pad] * (width - len(row)) for row in pieces], tf.int32)
    rows = s2s.token_rows(ids)
    assert int(tf.reduce_max(rows)) < s2s.encoder.vocabulary_size
    back = s2s.token_ids_from_rows(rows)
    np.testing.assert_array_equal(back, ids)
    texts = s2s.detokenize(back)  # eagerly KerasHub answers strs; in graphs a tensor
    texts = texts.numpy().tolist() if hasattr(texts, "numpy") else texts
    assert [t.decode("utf-8") if isinstance(t, bytes) else t for t in texts] == targets
    # After 25 steps on the three pairs the decoder writes Chinese (seed 0 on a CPU: it
    # answers "下雨了。" to all three); it can only write pieces of the corpus.
    s2s.compile(optimizer=keras.optimizers.Adam(1e-3))
    s2s.fit(sources * 4, targets * 4, batch_size=12, epochs=25, verbose=0)
    generated = s2s.generate(sources)
    corpus = set("".join(sources + targets)) | {" "}
    assert all(isinstance(g, str) and set(g) <= corpus for g in generated), generated
    assert any("\u4e00" <= c <= "\u9fff" for g in generated for c in g), generated
    # The SavedModel (TF + tensorflow_text only) answers what `generate` does.
    path = s2s.export(os.path.join(str(tmp_path), "saved_models", "en_zh", "1"))
    answer = serve_in_fresh_process(path, sources)
    assert answer["foreign_modules"] == []
    assert answer["generated"] == generated


# --- clear errors -------------------------------------------------------------------------


def test_clear_errors(preset):
    with pytest.raises(ValueError, match="decoder_init.*one of"):
        make(preset, "bert2gpt")
    with pytest.raises(ValueError, match="target_length.*position table.*64"):
        kt.tasks.Seq2Seq.from_preset(preset, sequence_length=SEQUENCE_LENGTH, target_length=65)
    with pytest.raises(ValueError, match="pooling=None"):
        kt.tasks.Seq2Seq(encoder=kt.encoders.BertEncoder.from_preset(preset, pooling="cls"))
    s2s = make(preset)
    with pytest.raises(ValueError, match="`x` is empty"):
        s2s.fit([], [], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="`texts` is empty"):
        s2s.generate([])
    with pytest.raises(ValueError, match="2 source texts but `y` has 1 target"):
        s2s.fit(["a film", "a movie"], ["film"], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="one string"):
        s2s.generate("a film")
    with pytest.raises(ValueError, match="max_length.*target_length=8"):
        s2s.generate(["a film"], max_length=9)
    with pytest.raises(ValueError, match="sampler"):
        s2s.generate(["a film"], sampler="nucleus-ish")
    with pytest.raises(TypeError, match="preprocessor makes"):
        s2s({"token_ids": np.zeros((1, 4), "int32")})
