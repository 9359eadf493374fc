"""kt.tasks.ZeroShotClassifier and BertEncoder.trim_vocabulary.

Fast tier: a tiny BERT (tests/conftest.py) with its WordPiece vocabulary,
and a tiny BERT over a SentencePiece (XLM-R) tokenizer trained here.
Slow tier: real MiniLM on SST-2 dev, and real e5 trimmed to a corpus.
"""

import csv
import io
import os

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import ServingProcess
from harness import assert_config_round_trip
from harness import assert_keras_round_trip
from harness import assert_task_contract
from harness import assert_task_export_answers_in_fresh_process
from harness import query_in_fresh_process

SEQUENCE_LENGTH = 16
BERT_WEIGHTS = 5 + 2 * 16 + 2
TEXTS = ["a great film", "the plot is dull and boring"]
LABELS = ["good", "bad"]


def make_task(preset, **kwargs):
    keras.utils.set_random_seed(0)
    kwargs.setdefault("labels", LABELS)
    return kt.tasks.ZeroShotClassifier.from_preset(preset, sequence_length=SEQUENCE_LENGTH, **kwargs)


@pytest.fixture(scope="module")
def serving():
    with ServingProcess() as process:
        yield process


def test_contract_and_fresh_process_export(tiny_preset, tmp_path, serving):
    task, loaded = assert_task_contract(
        lambda: make_task(tiny_preset), TEXTS, ["good", "bad"], (2, 2),
        # mean pooling: the pooler is frozen; + the label embeddings (non-trainable).
        num_trainable_weights=BERT_WEIGHTS - 2, num_non_trainable_weights=3,
        tmp_path=tmp_path, serving_process=serving,
    )
    np.testing.assert_allclose(
        loaded.label_embeddings.numpy(), task.label_embeddings.numpy(), atol=0)
    assert loaded.predict_labels(TEXTS, verbose=0) == task.predict_labels(TEXTS, verbose=0)
    with open(os.path.join(str(tmp_path), "saved_models", "task", "1", "assets.extra",
                           "labels.txt")) as f:
        assert f.read().split() == LABELS


def test_scores_are_the_softmax_of_cosines_to_averaged_templates(tiny_preset):
    templates = ["it is {}", "a {} film"]
    descriptions = {"good": ["good", "great"], "bad": "awful"}
    task = make_task(tiny_preset, template=templates, descriptions=descriptions, temperature=0.1)
    assert task.label_texts() == [
        (0, "it is good"), (0, "a good film"), (0, "it is great"), (0, "a great film"),
        (1, "it is awful"), (1, "a awful film"),
    ]
    encoder = task.encoder

    def unit(texts):
        vectors = np.asarray(encoder(encoder.preprocessor(tf.constant(texts))), dtype="float64")
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    label_vectors = np.stack([
        unit(["it is good", "a good film", "it is great", "a great film"]).mean(0),
        unit(["it is awful", "a awful film"]).mean(0),
    ])
    label_vectors /= np.linalg.norm(label_vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(task.label_embeddings.numpy(), label_vectors, atol=1e-5)
    cosines = unit(TEXTS) @ label_vectors.T
    expected = np.exp(cosines / 0.1) / np.exp(cosines / 0.1).sum(1, keepdims=True)
    np.testing.assert_allclose(task.predict(TEXTS, verbose=0), expected, atol=1e-5)
    assert task.predict_labels(TEXTS, verbose=0) == [LABELS[i] for i in cosines.argmax(1)]
    np.testing.assert_allclose(task.embed(TEXTS), unit(TEXTS), atol=1e-5)
    # The config keeps templates and descriptions as given.
    revived = assert_config_round_trip(task)
    assert revived.get_config()["template"] == templates
    assert revived.get_config()["descriptions"] == {"good": ["good", "great"], "bad": ["awful"]}


def test_text_prefix_goes_before_texts_and_labels_alike(tiny_preset, tmp_path):
    plain = make_task(tiny_preset, template="{}", labels=["good film", "bad film"])
    prefixed = make_task(tiny_preset, template="{}", labels=["good film", "bad film"],
                         text_prefix="the ")
    assert prefixed.encoder is not plain.encoder
    prefixed.encoder.set_weights(plain.encoder.get_weights())
    prefixed.refresh_label_embeddings()
    # Same as the unprefixed task whose labels and texts carry the prefix themselves.
    reference = make_task(tiny_preset, template="the {}", labels=["good film", "bad film"])
    reference.encoder.set_weights(plain.encoder.get_weights())
    reference.refresh_label_embeddings()
    np.testing.assert_allclose(prefixed.label_embeddings.numpy(),
                               reference.label_embeddings.numpy(), atol=1e-6)
    np.testing.assert_allclose(prefixed.predict(TEXTS, verbose=0),
                               reference.predict(["the " + t for t in TEXTS], verbose=0), atol=1e-6)
    # The export prefixes inside the graph.
    _, reply = assert_task_export_answers_in_fresh_process(prefixed, TEXTS, tmp_path)
    np.testing.assert_allclose(reply["answers"]["serving_default"]["probabilities"],
                               prefixed.predict(TEXTS, verbose=0), atol=1e-5)


def test_fit_with_label_names_fine_tunes_towards_the_labels(tiny_preset):
    task = make_task(tiny_preset, template="{}", labels=["great", "dull"])
    x = ["a great film", "great acting", "a dull plot", "dull and boring"] * 4
    y = ["great", "great", "dull", "dull"] * 4
    task.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = task.evaluate(x, y, verbose=0)[0]
    task.fit(x, y, batch_size=8, epochs=8, verbose=0)
    assert task.evaluate(x, y, verbose=0)[0] < before
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    assert np.isfinite(task.evaluate(dataset, verbose=0)[0])
    with pytest.raises(ValueError, match="Unknown label 'fine' at y\\[1\\]"):
        task.fit(x[:2], ["great", "fine"], verbose=0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"labels": []}, ValueError, "`labels` is empty"),
    ({"labels": "good"}, ValueError, "list of class names"),
    ({"labels": None}, ValueError, "`labels` is missing"),
    ({"labels": ["a", "a"]}, ValueError, "duplicate names"),
    ({"template": "This review is good."}, ValueError, "must contain '\\{\\}' exactly once"),
    ({"template": "{} or {}"}, ValueError, "exactly once"),
    ({"template": []}, ValueError, "empty list"),
    ({"template": 3}, TypeError, "must be a str"),
    ({"temperature": 0}, ValueError, "positive number"),
    ({"temperature": "hot"}, ValueError, "positive number"),
    ({"descriptions": {"great": "x"}}, ValueError, "not among the labels"),
    ({"descriptions": {"good": ""}}, ValueError, "non-empty strings"),
    ({"descriptions": ["good"]}, TypeError, "must be a dict"),
])
def test_bad_arguments_name_the_problem_and_the_fix(tiny_preset, kwargs, error, match):
    with pytest.raises(error, match=match):
        make_task(tiny_preset, **kwargs)


def test_bad_encoders_are_refused(tiny_preset):
    with pytest.raises(TypeError, match="pooled kt.encoders.Encoder"):
        kt.tasks.ZeroShotClassifier("minilm", labels=LABELS)
    per_token = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling=None)
    with pytest.raises(ValueError, match="pooling='mean'"):
        kt.tasks.ZeroShotClassifier(per_token, labels=LABELS)
    prefixed = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling="mean", text_prefix="the ")
    with pytest.raises(ValueError, match="already puts 'the '"):
        kt.tasks.ZeroShotClassifier(prefixed, labels=LABELS, text_prefix="a ")
    with pytest.raises(ValueError, match="single texts"):
        make_task(tiny_preset).predict((["a"], ["b"]), verbose=0)


# --- trim_vocabulary -----------------------------------------------------------------


def test_trimmed_wordpiece_encoder_computes_the_same_and_maps_unseen_pieces_to_unk(tiny_preset, tmp_path):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="mean")
    corpus = ["a great film", "the plot is dull", "love it!"]
    small = encoder.trim_vocabulary(corpus)
    tokenizer = encoder.preprocessor.tokenizer
    summary = small.trim_summary
    used = {i for t in corpus for i in np.asarray(tokenizer(t)).tolist()}
    specials = {tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    assert small.vocabulary_size == len(used | specials) == summary["vocabulary_size_after"]
    assert summary["vocabulary_size_before"] == encoder.vocabulary_size == 36
    assert summary["parameters_after"] == summary["parameters_before"] - (36 - len(used | specials)) * 16
    assert small.original_vocabulary_size == 36 and encoder.token_id_map is None
    assert small.preprocessor is encoder.preprocessor
    # Exactly the same outputs on texts whose pieces are all kept (any order, subsets).
    kept = ["a great film", "the plot is dull", "love it!", "it is a dull film!", "great"]
    features = encoder.preprocessor(tf.constant(kept))
    np.testing.assert_array_equal(np.asarray(small(features)), np.asarray(encoder(features)))
    for pooling in ("cls", None):
        a = kt.encoders.BertEncoder(encoder.backbone, encoder.preprocessor, pooling=pooling)
        b = kt.encoders.BertEncoder(small.backbone, small.preprocessor, pooling=pooling,
                                    original_vocabulary_size=36)
        b.token_id_map.assign(small.token_id_map)
        np.testing.assert_array_equal(np.asarray(b(features)), np.asarray(a(features)))
    # An unseen piece ("movie") reads as [UNK].
    unseen = encoder.preprocessor(tf.constant(["a great movie"]))
    as_unk = dict(unseen)
    ids = np.asarray(unseen["token_ids"]).copy()
    ids[ids == tokenizer.token_to_id("movie")] = tokenizer.token_to_id("[UNK]")
    as_unk["token_ids"] = ids
    np.testing.assert_array_equal(np.asarray(small(unseen)), np.asarray(encoder(as_unk)))
    # Trimming again composes: the table maps the tokenizer's ids.
    smaller = small.trim_vocabulary(["a great film"])
    few = encoder.preprocessor(tf.constant(["a great film", "film"]))
    np.testing.assert_array_equal(np.asarray(smaller(few)), np.asarray(encoder(few)))
    assert smaller.vocabulary_size == len({i for i in np.asarray(tokenizer("a great film")).tolist()} | specials)
    # Config and .keras round trips keep the table.
    revived = assert_config_round_trip(small)
    assert revived.get_config()["original_vocabulary_size"] == 36
    model = keras.Sequential([small])
    model(features)
    assert_keras_round_trip(model, {k: np.asarray(v) for k, v in features.items()}, str(tmp_path))


def test_trimmed_encoder_exports_smaller_and_answers_alike_in_a_fresh_process(tiny_preset, tmp_path, serving):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="mean")
    small = encoder.trim_vocabulary(TEXTS)
    full_task = kt.tasks.ZeroShotClassifier(encoder, labels=["great film", "dull plot"], template="{}")
    small_task = kt.tasks.ZeroShotClassifier(small, labels=["great film", "dull plot"], template="{}")
    np.testing.assert_array_equal(small_task.label_embeddings.numpy(), full_task.label_embeddings.numpy())
    queries = TEXTS + ["a movie"]  # "movie" is not kept: it is [UNK] in the trimmed export
    full_path, full = assert_task_export_answers_in_fresh_process(
        full_task, queries, tmp_path / "full", process=serving)
    small_path, trimmed = assert_task_export_answers_in_fresh_process(
        small_task, queries, tmp_path / "small", process=serving)
    full_p = np.asarray(full["answers"]["serving_default"]["probabilities"])
    small_p = np.asarray(trimmed["answers"]["serving_default"]["probabilities"])
    np.testing.assert_allclose(small_p[:2], full_p[:2], atol=1e-6)
    assert not np.allclose(small_p[2], full_p[2], atol=1e-6)

    def variables_bytes(path):
        folder = os.path.join(path, "variables")
        return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))

    # The token embedding loses 36 - kept rows of 16 floats; the table adds 36 int32.
    assert variables_bytes(small_path) < variables_bytes(full_path)


def test_trim_refuses_bad_input(tiny_preset):
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling="mean")
    with pytest.raises(ValueError, match="not one string"):
        encoder.trim_vocabulary("a great film")
    with pytest.raises(ValueError, match="`texts` is empty"):
        encoder.trim_vocabulary([])
    with pytest.raises(TypeError, match=r"texts\[1\] is a int"):
        encoder.trim_vocabulary(["a", 3])
    bare = kt.encoders.BertEncoder(encoder.backbone, preprocessor=None)
    with pytest.raises(ValueError, match="has none"):
        bare.trim_vocabulary(["a"])
    lora = kt.encoders.BertEncoder.from_preset(tiny_preset, pooling="mean")
    lora.enable_lora(2)
    with pytest.raises(ValueError, match="trim before `enable_lora`"):
        lora.trim_vocabulary(["a"])


SPM_TEXTS = [
    "the film was great", "the plot was dull", "a fine movie", "not good at all",
    "电影很好", "剧情很无聊", "我喜欢这部电影", "une belle histoire", "very very bad",
]


@pytest.fixture(scope="module")
def sentencepiece_encoder():
    """A tiny BERT over an XLM-R (SentencePiece) tokenizer trained here, with e5's prefix."""
    spm = pytest.importorskip("sentencepiece")
    import keras_hub

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_TEXTS * 20), model_writer=model, vocab_size=40,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
    )
    tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=model.getvalue())
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64,
    )
    preprocessor = kt.encoders.bert_encoder.PrefixedTextClassifierPreprocessor(
        tokenizer, text_prefix="query: ", sequence_length=24)
    return kt.encoders.BertEncoder(backbone, preprocessor, pooling="mean")


def test_trimmed_sentencepiece_encoder_keeps_the_prefix_pieces_and_computes_the_same(sentencepiece_encoder):
    encoder = sentencepiece_encoder
    tokenizer = encoder.preprocessor.tokenizer
    corpus = ["the film was great", "电影很好"]
    small = encoder.trim_vocabulary(corpus)
    used = {i for t in corpus for i in np.asarray(tokenizer("query: " + t)).tolist()}
    specials = {0, 1, 2, 3, tokenizer.mask_token_id}
    assert small.vocabulary_size == len(used | specials) < encoder.vocabulary_size
    features = encoder.preprocessor(tf.constant(corpus + ["the film", "很好"]))
    np.testing.assert_array_equal(np.asarray(small(features)), np.asarray(encoder(features)))
    unseen = encoder.preprocessor(tf.constant(["une belle histoire"]))
    ids = np.asarray(unseen["token_ids"])
    table = small.token_id_map.numpy()
    kept_rows = set(table[sorted(used | specials)].tolist())
    mapped = table[ids]
    assert (mapped[~np.isin(ids, sorted(used | specials))] == table[3]).all()  # -> <unk>
    assert set(mapped.ravel().tolist()) <= kept_rows


# --- real assets -----------------------------------------------------------------------


def read_tsv(path, count):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:count]
    return [r["sentence"] for r in rows], np.array([int(r["label"]) for r in rows])


@pytest.mark.slow
@pytest.mark.shared_data
def test_minilm_zero_shot_beats_chance_on_sst2_dev(minilm_path, shared_data):
    texts, y = read_tsv(os.path.join(shared_data, "sst2", "dev.tsv"), 200)
    clf = kt.tasks.ZeroShotClassifier.from_preset(
        "minilm", labels=["negative", "positive"], sequence_length=64)
    accuracy = float((clf.predict(texts, verbose=0).argmax(-1) == y).mean())
    majority = max(y.mean(), 1 - y.mean())
    # benchmarks/zero_shot.py: 0.695 on all 872 dev sentences (sequence_length 128).
    assert accuracy > majority + 0.05, (accuracy, majority)


@pytest.mark.slow
@pytest.mark.shared_data
def test_e5_trimmed_to_a_corpus_answers_alike_and_exports_smaller(shared_data, tmp_path):
    from ktransfer import assets

    if not assets.is_cached("multilingual-e5-small"):
        pytest.skip("run `ktransfer assets fetch multilingual-e5-small`")
    encoder = kt.encoders.BertEncoder.from_preset(
        "multilingual-e5-small", sequence_length=64, pooling="mean", text_prefix="query: ")
    english, _ = read_tsv(os.path.join(shared_data, "sst2", "dev.tsv"), 100)
    chinese, y = read_tsv(os.path.join(shared_data, "chnsenticorp", "dev.tsv"), 100)
    # The label descriptions belong to the corpus too (else their pieces read as <unk>).
    small = encoder.trim_vocabulary(english + chinese + ["这条评论是负面的。", "这条评论是正面的。"])
    assert small.vocabulary_size < 10_000 < 250_000 < encoder.vocabulary_size
    features = encoder.preprocessor(tf.constant(english[:16] + chinese[:16]))
    np.testing.assert_allclose(np.asarray(small(features)), np.asarray(encoder(features)), atol=1e-6)
    clf = kt.tasks.ZeroShotClassifier(small, labels=["负面", "正面"], template="这条评论是{}的。")
    accuracy = float((clf.predict(chinese, verbose=0).argmax(-1) == y).mean())
    assert accuracy > 0.6, accuracy
    path = clf.export(str(tmp_path / "e5" / "1"))
    reply = query_in_fresh_process(path, {"serving_default": chinese[:4]})
    np.testing.assert_allclose(reply["answers"]["serving_default"]["probabilities"],
                               clf.predict(chinese[:4], verbose=0), atol=1e-5)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    assert size < 300 * 2**20, size  # the untrimmed export is 913 MiB
