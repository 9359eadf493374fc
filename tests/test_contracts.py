"""The shared contracts (tests/harness.py) for every class ktransfer registers.

One test per class registered under the `ktransfer>` package
(`keras.saving.get_custom_objects()` after `import ktransfer`), in the
manner of KerasHub's `run_layer_test` / `run_serialization_test`:

- layers and models: strict-JSON config round trip, symbolic call on
  `keras.Input`s (shape equals `compute_output_shape`), eager call, trainable
  / non-trainable weight counts, a training step that moves every trainable
  weight and no other, and the `.keras` round trip with identical outputs;
- optimizers: config round trip, and their state after training steps (slots,
  iterations, learning rate) survives a `.keras` round trip of a tiny model;
- learning-rate schedules: config round trip, the same rates after it, and
  inside an optimizer through a `.keras` file;
- tasks: the above, plus the raw-string export answered in a fresh process
  (one export per task class).

`test_every_registered_class_has_a_contract` fails when a class is
registered without a test here (decorate the new test with
`@contract("ktransfer>ClassName")`), so no class skips the harness.
"""

import os

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from harness import assert_config_round_trip
from harness import assert_keras_round_trip
from harness import assert_layer_contract
from harness import assert_optimizer_state_round_trip
from harness import assert_preprocessor_contract
from harness import assert_strict_json
from harness import ServingProcess
from harness import assert_task_contract

TEXTS = ["a great film", "the plot is dull and boring"]
PAIRS = (["a great film", "love it"], ["a good movie", "the plot is dull"])
SEQUENCE_LENGTH = 16
# A 2-block tiny BERT (tests/conftest.py): embeddings 5 (token, position,
# segment, layer norm gamma + beta), 16 per block, pooler 2.
BERT_WEIGHTS = 5 + 2 * 16 + 2

CONTRACTS = {}


def contract(*registered_names):
    """Mark a test as the contract case of these registered classes."""

    def mark(test):
        for name in registered_names:
            assert name not in CONTRACTS, f"two contract tests for {name}"
            CONTRACTS[name] = test.__name__
        return test

    return mark


def registered_ktransfer_classes():
    return sorted(
        name for name in keras.saving.get_custom_objects() if name.startswith("ktransfer>")
    )


# Task classes whose full contract (with the fresh-process export) runs in their
# own test file, so that the suite exports each task class once:
# registered name -> "file::test". The test must call the harness (checked below).
CONTRACTS_ELSEWHERE = {
    "ktransfer>TokenClassifier": "test_tasks_token_classifier.py::test_contract_and_fresh_process_export",
    "ktransfer>RelationClassifier": "test_tasks_relation.py::test_contract_and_fresh_process_export",
    "ktransfer>SentenceSimilarity": "test_tasks_similarity.py::test_contract_and_fresh_process_export",
    "ktransfer>ZeroShotClassifier": "test_tasks_zero_shot.py::test_contract_and_fresh_process_export",
    "ktransfer>MultiTask":
        "test_tasks_multitask.py::test_contract_and_fresh_process_export_of_every_signature",
    "ktransfer>Seq2Seq": "test_seq2seq.py::test_contract_and_fresh_process_export",
    "ktransfer>Seq2SeqPreprocessor": "test_seq2seq.py::test_contract_and_fresh_process_export",
}
HARNESS_CONTRACTS = {"assert_task_contract", "assert_layer_contract", "assert_preprocessor_contract"}


def test_every_registered_class_has_a_contract():
    registered = registered_ktransfer_classes()
    assert len(registered) >= 20  # today's classes; new ones add to it
    covered = set(CONTRACTS) | set(CONTRACTS_ELSEWHERE)
    missing = sorted(set(registered) - covered)
    assert not missing, (
        f"registered classes without a contract test in tests/test_contracts.py: {missing}. "
        'Add a test decorated with @contract("ktransfer>Name") that runs the harness.'
    )
    stale = sorted(covered - set(registered))
    assert not stale, f"contract tests for classes no longer registered: {stale}"
    assert not set(CONTRACTS) & set(CONTRACTS_ELSEWHERE)


@pytest.mark.parametrize("name", sorted(CONTRACTS_ELSEWHERE))
def test_contracts_elsewhere_run_the_harness_and_export(name):
    import ast

    filename, test_name = CONTRACTS_ELSEWHERE[name].split("::")
    with open(os.path.join(os.path.dirname(__file__), filename), encoding="utf-8") as f:
        module = ast.parse(f.read())
    found = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == test_name]
    assert found, f"{CONTRACTS_ELSEWHERE[name]} (the contract of {name}) does not exist"
    calls = [n for n in ast.walk(found[0]) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    names = {call.func.id for call in calls}
    assert names & HARNESS_CONTRACTS, f"{CONTRACTS_ELSEWHERE[name]} runs no harness contract"
    exports = "assert_task_export_answers_in_fresh_process" in names or any(
        call.func.id == "assert_task_contract"
        and not any(k.arg == "export" and isinstance(k.value, ast.Constant) and k.value.value is False
                    for k in call.keywords)
        for call in calls
    )
    assert exports, f"{CONTRACTS_ELSEWHERE[name]} does not check the export in a fresh process"


def test_strict_json_names_what_is_not_json():
    assert_strict_json({"units": 3, "shape": (1, 2), "name": None})
    with pytest.raises(AssertionError, match=r"config\['rate'\] = .*numpy.float32"):
        assert_strict_json({"rate": np.float32(0.5)})
    with pytest.raises(AssertionError, match="key 1"):
        assert_strict_json({"a": {1: "x"}})


# ---------------------------------------------------------------------------
# Shared built objects
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serving():
    """One fresh tensorflow + tensorflow_text process answers every task's export."""
    with ServingProcess() as process:
        yield process


@pytest.fixture(scope="module")
def bert(tiny_preset):
    keras.utils.set_random_seed(0)
    return kt.encoders.BertEncoder.from_preset(
        tiny_preset, sequence_length=SEQUENCE_LENGTH, pooling="mean"
    )


@pytest.fixture(scope="module")
def make_bert(tiny_preset):
    def make(pooling="mean", trainable=True):
        keras.utils.set_random_seed(0)
        return kt.encoders.BertEncoder.from_preset(
            tiny_preset, sequence_length=SEQUENCE_LENGTH, pooling=pooling, trainable=trainable
        )

    return make


@pytest.fixture(scope="module")
def features(bert):
    return {k: v.numpy() for k, v in bert.preprocessor(tf.constant(TEXTS)).items()}


WORDS = ["a", "the", "film", "movie", "great", "good", "plot", "is", "dull", "and", "boring", "love", "it"]


def word_vectors():
    matrix = np.random.default_rng(0).normal(size=(len(WORDS), 6)).astype("float32")
    return kt.WordVectors(WORDS, matrix)


def word_encoder(**kwargs):
    kwargs = {"standardize": "lower", "fill_vocabulary": False, "seed": 0, **kwargs}
    encoder = kt.encoders.WordVectorEncoder(word_vectors(), **kwargs)
    encoder.adapt(TEXTS + ["love it", "a good movie"])
    return encoder


def strings(texts):
    return np.array(texts, dtype=object)


# ---------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------


@contract("ktransfer>BertEncoder")
def test_bert_encoder(make_bert, features, tmp_path):
    layer = assert_layer_contract(
        make_bert, features, (2, 16),
        num_trainable_weights=BERT_WEIGHTS - 2,  # the pooler trains with pooling="pooled" only
        num_non_trainable_weights=2,
        tmp_path=tmp_path,
    )
    assert isinstance(layer, kt.encoders.BertEncoder)
    assert_layer_contract(
        lambda: make_bert(pooling=None, trainable=1), features, (2, SEQUENCE_LENGTH, 16),
        num_trainable_weights=16, num_non_trainable_weights=BERT_WEIGHTS - 16,
    )


@contract("ktransfer>WordVectorEncoder")
def test_word_vector_encoder(tmp_path):
    inputs = strings(["a great film", "zorg", ""])
    assert_layer_contract(
        lambda: word_encoder(pooling="mean", trainable=True), inputs, (3, 6),
        num_trainable_weights=1, tmp_path=tmp_path,
    )
    assert_layer_contract(  # each batch is padded to its longest text
        lambda: word_encoder(pooling=None), inputs, (3, 3, 6), symbolic_output_shape=(None, None, 6),
        num_trainable_weights=0, num_non_trainable_weights=1,
    )


# ---------------------------------------------------------------------------
# Heads and layers
# ---------------------------------------------------------------------------


@contract("ktransfer>ClassificationHead")
def test_classification_head(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 5)).astype("float32")
    assert_layer_contract(
        lambda: kt.heads.ClassificationHead(3, dropout=0.1, hidden_dims=(8,)), x, (2, 3),
        num_trainable_weights=4, tmp_path=tmp_path,
    )
    assert_layer_contract(
        lambda: kt.heads.ClassificationHead(4, multi_label=True), x, (2, 4), num_trainable_weights=2
    )


@contract("ktransfer>TokenClassificationHead")
def test_token_classification_head(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 6, 5)).astype("float32")
    assert_layer_contract(
        lambda: kt.heads.TokenClassificationHead(4, dropout=0.2), x, (2, 6, 4),
        num_trainable_weights=2, tmp_path=tmp_path,
    )


@contract("ktransfer>RelationHead")
def test_relation_head(tmp_path):
    sequence = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    token_ids = np.array([[2, 7, 5, 9, 3], [2, 9, 7, 3, 0]], "int32")
    assert_layer_contract(
        lambda: kt.heads.RelationHead(3, marker_ids=(7, 9), dropout=0.1), [sequence, token_ids],
        (2, 3), num_trainable_weights=2, tmp_path=tmp_path,
    )


@contract("ktransfer>GradientReversal")
def test_gradient_reversal(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 3)).astype("float32")
    layer = assert_layer_contract(
        lambda: kt.layers.GradientReversal(lambda_=0.5), x, (2, 3),
        num_trainable_weights=0, num_non_trainable_weights=1, tmp_path=tmp_path,
    )
    assert float(layer.lambda_.numpy()) == 0.5


@contract("ktransfer>MaxOverTimeConv1D")
def test_max_over_time_conv1d(tmp_path):
    from ktransfer.tasks.text_cnn import MaxOverTimeConv1D

    x = np.random.default_rng(0).normal(size=(2, 7, 5)).astype("float32")
    assert_layer_contract(
        lambda: MaxOverTimeConv1D(filter_sizes=(2, 3), num_filters=3), x, (2, 6),
        num_trainable_weights=4, tmp_path=tmp_path,
    )


@contract("ktransfer>WordFeatures")
def test_word_features(tmp_path):
    from ktransfer.tasks.bilstm_tagger import WordFeatures

    inputs = strings(["EU rejects German call", "a film", ""])
    assert_layer_contract(
        lambda: WordFeatures(word_encoder(pooling=None, sequence_length=None), case_dim=4),
        inputs, (3, 4, 10), symbolic_output_shape=(None, None, 10),  # padded to the longest
        num_trainable_weights=1, num_non_trainable_weights=1, tmp_path=tmp_path,
    )


@contract("ktransfer>PairPreprocessor")
def test_pair_preprocessor(bert, tmp_path):
    from ktransfer.tasks.siamese import PairPreprocessor

    inputs = (strings(PAIRS[0]), strings(PAIRS[1]))
    keys = [f"{k}_{side}" for side in "ab" for k in ("token_ids", "segment_ids", "padding_mask")]
    shape = {key: (2, SEQUENCE_LENGTH) for key in keys + ["padding_mask"]}
    layer = assert_preprocessor_contract(
        lambda: PairPreprocessor(bert.preprocessor), inputs, shape, tmp_path=tmp_path,
    )
    direct = layer(inputs)
    single = bert.preprocessor(tf.constant(PAIRS[1]))
    np.testing.assert_array_equal(direct["token_ids_b"].numpy(), single["token_ids"].numpy())
    assert direct["padding_mask"].dtype == tf.int32


@contract("ktransfer>WordVectorPreprocessor")
def test_word_vector_preprocessor(tmp_path):
    from ktransfer.encoders.word_vector_encoder import WordVectorPreprocessor

    def make(sequence_length=5):
        preprocessor = WordVectorPreprocessor(max_tokens=50, sequence_length=sequence_length, standardize="lower")
        preprocessor.set_vocabulary(WORDS)
        return preprocessor

    inputs = strings(["a great film", "zorg the plot is dull and boring", ""])
    shape = {"token_ids": (3, 5), "padding_mask": (3, 5)}
    layer = assert_preprocessor_contract(make, inputs, shape, tmp_path=tmp_path)
    out = layer(inputs)
    assert out["token_ids"].dtype == tf.int32 and out["padding_mask"].dtype == tf.bool
    np.testing.assert_array_equal(out["token_ids"].numpy()[0], [2, 6, 4, 0, 0])  # a great film
    assert out["token_ids"].numpy()[1, 0] == 1  # zorg -> [UNK]
    np.testing.assert_array_equal(out["padding_mask"].numpy(), out["token_ids"].numpy() != 0)
    assert_preprocessor_contract(  # no sequence_length: padded to each batch's longest text
        lambda: make(None), inputs, {"token_ids": (3, 7), "padding_mask": (3, 7)},
        symbolic_output_shape={"token_ids": (None, None), "padding_mask": (None, None)},
        check_unbatched=False,
    )


@contract("ktransfer>WordFeaturesPreprocessor")
def test_word_features_preprocessor(tmp_path):
    from ktransfer.layers.word_features import WordFeaturesPreprocessor

    inputs = strings(["EU rejects German call", "a film", ""])
    make = lambda: WordFeaturesPreprocessor(word_encoder(pooling=None, sequence_length=None).preprocessor)  # noqa: E731
    shape = {"token_ids": (3, 4, 1), "case_ids": (3, 4), "padding_mask": (3, 4)}
    layer = assert_preprocessor_contract(
        make, inputs, shape, check_unbatched=False,  # padded to each batch's longest sentence
        symbolic_output_shape={"token_ids": (None, None, None), "case_ids": (None, None),
                               "padding_mask": (None, None)},
        tmp_path=tmp_path,
    )
    out = layer(inputs)
    np.testing.assert_array_equal(out["case_ids"].numpy()[0], [3, 1, 2, 1])  # UPPER lower Title lower
    np.testing.assert_array_equal(out["padding_mask"].numpy()[2], [False] * 4)


@contract("ktransfer>TaggingPreprocessor")
def test_tagging_preprocessor(bert):
    inputs = strings(["Peter visited Paris", "a film"])
    shape = {key: (2, SEQUENCE_LENGTH) for key in ("token_ids", "segment_ids", "padding_mask")}
    layer = assert_preprocessor_contract(
        lambda: kt.tasks.TaggingPreprocessor(bert.preprocessor), inputs, shape,
        check_unbatched=False,  # a batch of sentences, split into words together
    )  # its .keras round trip: inside TokenClassifier's (tests/test_tasks_token_classifier.py)
    words = tf.ragged.constant([["Peter", "visited", "Paris"], ["a", "film"]])
    np.testing.assert_array_equal(layer(words)["token_ids"].numpy(), layer(inputs)["token_ids"].numpy())


@contract("ktransfer>PrefixedTextClassifierPreprocessor")
def test_prefixed_text_classifier_preprocessor(tiny_preset, tmp_path):
    def make(prefix="a "):
        return kt.encoders.BertEncoder.from_preset(
            tiny_preset, sequence_length=SEQUENCE_LENGTH, text_prefix=prefix
        ).preprocessor

    shape = {key: (2, SEQUENCE_LENGTH) for key in ("token_ids", "segment_ids", "padding_mask")}
    layer = assert_preprocessor_contract(make, strings(PAIRS[0]), shape, tmp_path=tmp_path)
    assert type(layer).__name__ == "PrefixedTextClassifierPreprocessor"
    assert layer.get_config()["text_prefix"] == "a "
    expected = make("")(tf.constant(["a " + text for text in PAIRS[0]]))
    np.testing.assert_array_equal(layer(strings(PAIRS[0]))["token_ids"], expected["token_ids"])


@contract("ktransfer>OffsetTokenizer")
def test_offset_tokenizer(bert, tmp_path):
    from harness import PreprocessorHolder

    texts = ["Where is Paris?", "a great film"]
    make = lambda: kt.data.OffsetTokenizer(bert.preprocessor.tokenizer)  # noqa: E731
    assert_config_round_trip(make())
    tokenize = make()
    ids, starts, ends = tokenize(tf.constant(texts))
    # The tokenizer's own ids (no special tokens), and each token's characters.
    reference = bert.preprocessor.tokenizer(tf.constant(texts))
    assert ids.to_list() == (reference.to_list() if hasattr(reference, "to_list") else reference)
    for text, s, e, row in zip(texts, starts.to_list(), ends.to_list(), ids.to_list()):
        pieces = [text[a:b].lower() for a, b in zip(s, e)]
        vocabulary = bert.preprocessor.tokenizer.get_vocabulary()
        assert [p if vocabulary[i] == "[UNK]" else vocabulary[i].lstrip("#") for p, i in zip(pieces, row)] == pieces
    mapped = next(iter(tf.data.Dataset.from_tensor_slices(texts).batch(2).map(make())))
    for a, b in zip(mapped, (ids, starts, ends)):
        assert a.to_list() == b.to_list()
    os.makedirs(tmp_path, exist_ok=True)
    loaded = assert_keras_round_trip(PreprocessorHolder(make()), tf.constant(texts), tmp_path)
    assert type(loaded.preprocessor) is kt.data.OffsetTokenizer


@contract("ktransfer>SpanHead")
def test_span_head(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 6, 5)).astype("float32")
    assert_layer_contract(
        lambda: kt.heads.SpanHead(dropout=0.1), x, (2, 2, 6), num_trainable_weights=2,
        tmp_path=tmp_path,
    )
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], "int32")
    logits = kt.heads.SpanHead()(x, padding_mask=mask).numpy()
    assert np.all(logits[1, :, 4:] <= -1e8) and np.all(logits[1, :, :4] > -1e8)


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


@contract("ktransfer>SiameseEncoder")
def test_siamese_encoder(make_bert, bert, tmp_path):
    pair_features = {k: v.numpy() for k, v in kt.models.SiameseEncoder(bert).preprocessor(
        (tf.constant(PAIRS[0]), tf.constant(PAIRS[1]))).items()}
    data = tf.data.Dataset.from_tensor_slices((pair_features, np.array([1.0, 0.0], "float32"))).batch(2)
    model = assert_layer_contract(
        lambda: kt.models.SiameseEncoder(make_bert()), pair_features, (2,),
        num_trainable_weights=BERT_WEIGHTS - 2, num_non_trainable_weights=2,
        train_data=data, compile_kwargs={"optimizer": keras.optimizers.SGD(0.1), "loss": "mse"},
        tmp_path=tmp_path, atol=1e-6,
    )
    assert np.all(np.abs(np.asarray(model(pair_features))) <= 1 + 1e-6)


@contract("ktransfer>DANN", "ktransfer>CORAL", "ktransfer>MMD")
@pytest.mark.parametrize("name", ["DANN", "CORAL", "MMD"])
def test_domain_adaptation_models(name, tmp_path):
    # Any layer mapping inputs to [batch, features] is an encoder here (a BERT
    # one is in tests/test_adapt.py): a small dense one keeps this fast.
    rng = np.random.default_rng(0)
    source, target = (rng.normal(size=(4, 5)).astype("float32") for _ in range(2))
    zipped = {"source": source, "target": target}

    def make():
        keras.utils.set_random_seed(0)
        encoder = keras.Sequential([keras.layers.Dense(4, activation="tanh")], name="encoder")
        # One plain fit step: no ramp (it sets the non-trainable lambda_ /
        # alignment_scale) and no fallback (both are tested in test_adapt.py).
        options = {"ramp": False, "fallback": False}
        return getattr(kt.adapt, name)(encoder, kt.heads.ClassificationHead(2), domain_hidden_dim=3,
                                       **options) \
            if name == "DANN" else getattr(kt.adapt, name)(encoder, kt.heads.ClassificationHead(2),
                                                           **options)

    data = kt.data.zip_domains(
        tf.data.Dataset.from_tensor_slices((source, np.array([1, 0, 1, 0], "int32"))).batch(4),
        tf.data.Dataset.from_tensor_slices(target).batch(4),
    )
    extra_trainable = 4 if name == "DANN" else 0  # DANN: its domain head (2 dense layers)
    assert_layer_contract(
        make, zipped, (4, 2),
        num_trainable_weights=2 + 2 + extra_trainable,  # encoder, task head, domain head
        num_non_trainable_weights=1,  # DANN's lambda_, CORAL's and MMD's alignment_scale
        train_data=data,
        compile_kwargs={"optimizer": keras.optimizers.SGD(0.1),
                        "loss": kt.heads.ClassificationHead(2).default_loss()},
        tmp_path=tmp_path, atol=1e-6,
    )


@contract("ktransfer>Distiller")
def test_distiller(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    targets = {"label": np.array([0, 1, -1, 2], "int32"),
               "logits": np.random.default_rng(1).normal(size=(4, 3)).astype("float32")}

    def make():
        keras.utils.set_random_seed(0)
        student = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
        return kt.distill.Distiller(student, temperature=2.0, alpha=0.3)

    assert_layer_contract(
        make, x, (4, 3), num_trainable_weights=2,
        train_data=tf.data.Dataset.from_tensor_slices((x, targets)).batch(4),
        tmp_path=tmp_path,
    )


@contract("ktransfer>MultiTaskModel")
def test_multitask_model(make_bert, features, tmp_path):
    heads = lambda: {"sentiment": kt.heads.ClassificationHead(2), "topic": kt.heads.ClassificationHead(3)}  # noqa: E731
    # One batch that counts for both heads (kt.data.mix gives each batch one task).
    labels = {"sentiment": np.array([1, 0], "int32"), "topic": np.array([2, 0], "int32")}
    weights = {"sentiment": np.ones(2, "float32"), "topic": np.ones(2, "float32")}
    data = tf.data.Dataset.from_tensors((features, labels, weights))
    assert_layer_contract(
        lambda: kt.multitask.MultiTaskModel(make_bert(), heads()), features,
        {"sentiment": (2, 2), "topic": (2, 3)},
        num_trainable_weights=BERT_WEIGHTS - 2 + 4, num_non_trainable_weights=2,
        train_data=data, compile_kwargs={"optimizer": keras.optimizers.SGD(0.1)},
        tmp_path=tmp_path, atol=1e-6,
    )


@contract("ktransfer>PrototypicalNetwork")
def test_prototypical_network(tmp_path):
    rng = np.random.default_rng(0)
    episode = {
        "support": rng.normal(size=(4, 5)).astype("float32"),
        "support_labels": np.array([0, 0, 1, 1], "int32"),
        "query": rng.normal(size=(3, 5)).astype("float32"),
    }

    def make():
        keras.utils.set_random_seed(0)
        return kt.fewshot.PrototypicalNetwork(keras.layers.Dense(4), normalize=True)

    episodes = tf.data.Dataset.from_tensors((episode, np.array([0, 1, 1], "int32"))).repeat()
    assert_layer_contract(
        make, episode, (3, 2), symbolic_output_shape=(None, None),  # n_way: the episode's
        num_trainable_weights=2, train_data=episodes,
        compile_kwargs={"optimizer": keras.optimizers.SGD(0.1)}, tmp_path=tmp_path, atol=1e-6,
    )


# ---------------------------------------------------------------------------
# Tasks (one fresh-process export per task class)
# ---------------------------------------------------------------------------


@contract("ktransfer>TextClassifier")
def test_text_classifier(tiny_preset, serving, tmp_path):
    def make(**kwargs):
        keras.utils.set_random_seed(0)
        kwargs = {"num_classes": 2, "labels": ["neg", "pos"], **kwargs}
        return kt.tasks.TextClassifier.from_preset(tiny_preset, sequence_length=SEQUENCE_LENGTH, **kwargs)

    task, loaded = assert_task_contract(
        make, TEXTS, ["pos", "neg"], (2, 2),
        num_trainable_weights=BERT_WEIGHTS - 2 + 2, num_non_trainable_weights=2,
        tmp_path=tmp_path, serving_process=serving,
    )
    assert loaded.labels == task.labels == ["neg", "pos"]  # predict(): compared above
    # Multi-label on sentence pairs: config and .keras round trips (its training
    # and export are tests/test_tasks_text_classifier.py's).
    pairs = make(num_classes=3, labels=["a", "b", "c"], multi_label=True, pairs=True)
    assert_config_round_trip(pairs)
    features = pairs.preprocessor(x=(tf.constant(PAIRS[0]), tf.constant(PAIRS[1])))
    loaded = assert_keras_round_trip(pairs, features, tmp_path / "pairs")
    assert loaded.multi_label and loaded.pairs and loaded.labels == ["a", "b", "c"]


@contract("ktransfer>QuestionAnswerer", "ktransfer>QuestionAnsweringPreprocessor")
def test_question_answerer(tiny_preset, tmp_path):
    questions = ["is the film great", "was it bad"]
    contexts = ["the film is great and the acting is good", "it was a bad movie"]

    def make():
        keras.utils.set_random_seed(0)
        return kt.tasks.QuestionAnswerer.from_preset(
            tiny_preset, sequence_length=SEQUENCE_LENGTH, doc_stride=4, max_question_length=4
        )

    # Its fresh-process export: tests/test_question_answerer.py.
    task, loaded = assert_task_contract(
        make, (questions, contexts), ["great", "bad"], (2, 2, SEQUENCE_LENGTH),
        symbolic_output_shape=(None, 2, SEQUENCE_LENGTH),
        num_trainable_weights=BERT_WEIGHTS - 2 + 2, num_non_trainable_weights=2,
        tmp_path=tmp_path, export=False,
    )
    assert loaded.predict(questions, contexts) == task.predict(questions, contexts)
    assert_config_round_trip(task.preprocessor)
    assert_config_round_trip(task.preprocessor.offset_tokenizer)


@contract("ktransfer>TextCNN")
def test_text_cnn(serving, tmp_path):
    def make():
        keras.utils.set_random_seed(0)
        return kt.models.TextCNN(word_encoder(trainable=True, sequence_length=16), labels=["neg", "pos"],
                                 filter_sizes=(1, 2), num_filters=3, dropout=0.0)

    task, loaded = assert_task_contract(
        make, TEXTS, ["pos", "neg"], (2, 2), num_trainable_weights=7, tmp_path=tmp_path,
        serving_process=serving,
    )
    assert isinstance(task, kt.tasks.TextClassifier) and loaded.labels == ["neg", "pos"]


@contract("ktransfer>BiLSTMClassifier")
def test_bilstm_classifier(tmp_path):
    def make():
        keras.utils.set_random_seed(0)
        return kt.models.BiLSTMClassifier(word_encoder(sequence_length=16), 2, units=3, dropout=0.0)

    assert_task_contract(  # its export is TextCNN's (the same WordVectorClassifier graph)
        make, TEXTS, [1, 0], (2, 2), num_trainable_weights=8, num_non_trainable_weights=1,
        tmp_path=tmp_path, export=False,
    )


@contract("ktransfer>BiLSTMTagger")
def test_bilstm_tagger(serving, tmp_path):
    def make():
        keras.utils.set_random_seed(0)
        return kt.models.BiLSTMTagger(word_encoder(sequence_length=None), tags=["O", "B-X"], units=3,
                                      dropout=0.0, case_dim=2)

    task, loaded = assert_task_contract(
        make, TEXTS, [["O", "O", "B-X"], ["O", "B-X", "O", "O", "O", "O"]], (2, 6, 2),
        num_trainable_weights=9, num_non_trainable_weights=1, tmp_path=tmp_path,
        serving_process=serving,
    )
    assert loaded.tags == task.tags == ["O", "B-X"]


# ---------------------------------------------------------------------------
# Optimizers and schedules
# ---------------------------------------------------------------------------


@contract("ktransfer>FusedAdamW")
def test_fused_adamw(tmp_path):
    make = lambda: kt.optimizers.FusedAdamW(learning_rate=1e-2, weight_decay=0.01, beta_1=0.8)  # noqa: E731
    revived = assert_config_round_trip(make())
    assert (revived.beta_1, revived.weight_decay) == (0.8, 0.01)
    loaded = assert_optimizer_state_round_trip(make, tmp_path)
    assert len(loaded.optimizer.variables) == 2 + 2 * 4  # iterations, lr; m and v of 4 weights


def functional_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))


@contract("ktransfer>LayerwiseOptimizer")
def test_layerwise_optimizer(tmp_path):
    def make():
        return kt.optimizers.LayerwiseOptimizer(
            kt.optimizers.FusedAdamW(1e-2, weight_decay=0.01), [("hidden/", 0.5)]
        )

    revived = assert_config_round_trip(make())
    assert revived.multipliers == [("hidden/", 0.5)]
    assert type(revived.groups[0][1]) is kt.optimizers.FusedAdamW
    loaded = assert_optimizer_state_round_trip(make, tmp_path, make_model=functional_model)
    assert [len(g.variables) for _, g in loaded.optimizer.groups] == [1 + 4, 1 + 4]
    groups = loaded.optimizer.groups
    assert [m for m, _ in groups] == [1.0, 0.5]
    assert all(int(g.iterations) == 2 + 1 for _, g in groups)  # 2 steps, then one more


@pytest.mark.parametrize(
    "make",
    [
        lambda: kt.schedules.SlantedTriangular(1e-2, total_steps=10, cut_fraction=0.2, ratio=8.0),
        lambda: kt.schedules.SlantedTriangular(1e-2, total_steps=10, ratio=float("inf")),
        lambda: kt.schedules.OneCycle(1e-2, total_steps=10, warmup_fraction=0.4, anneal="linear"),
    ],
    ids=["stlr", "stlr-inf", "one-cycle"],
)
@contract("ktransfer>SlantedTriangular", "ktransfer>OneCycle")
def test_schedules(make, tmp_path):
    schedule = make()
    revived = assert_config_round_trip(schedule)
    steps = np.arange(12)
    np.testing.assert_allclose(
        [float(revived(s)) for s in steps], [float(schedule(s)) for s in steps], rtol=1e-7
    )
    loaded = assert_optimizer_state_round_trip(
        lambda: keras.optimizers.AdamW(make()), tmp_path, steps=3
    )
    saved = loaded.optimizer.get_config()["learning_rate"]
    assert saved["registered_name"] == keras.saving.get_registered_name(type(schedule))
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(schedule(4)), rel=1e-6)
