"""kt.metrics: entity_f1 equals seqeval (CoNLL semantics); relation_f1 (SemEval)."""

import random

import numpy as np
import pytest

import ktransfer as kt
from ktransfer.metrics import entities


def test_entities_follow_conll_chunk_rules():
    # IOB1: I- opens an entity; B- separates two adjacent entities of a type.
    assert entities(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]) == [
        ("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4), ("ORG", 5, 5)
    ]
    # IOB2, with an ill-formed I- after O (conlleval opens a chunk there).
    assert entities(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"]) == [
        ("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 5)
    ]
    # IOBES.
    assert entities(["S-PER", "B-ORG", "E-ORG", "I-ORG"]) == [
        ("PER", 0, 0), ("ORG", 1, 2), ("ORG", 3, 3)
    ]
    assert entities([]) == [] and entities(["O", "O"]) == []


def test_entity_f1_on_a_hand_counted_example():
    gold = [["I-PER", "I-PER", "O", "I-LOC"], ["B-ORG", "I-ORG", "O"]]
    predicted = [["I-PER", "I-PER", "O", "O"], ["B-ORG", "O", "I-MISC"]]
    # gold: PER(0-1), LOC(3), ORG(0-1); predicted: PER(0-1), ORG(0), MISC(2)
    scores = kt.metrics.entity_f1(gold, predicted)
    assert (scores["num_gold"], scores["num_predicted"], scores["num_correct"]) == (3, 3, 1)
    assert scores["precision"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)
    assert scores["per_type"]["PER"]["f1"] == 1.0
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert kt.metrics.entity_f1([[b"I-PER"]], [np.array([b"I-PER"])])["f1"] == 1.0


def random_tags(rng, length, scheme):
    types = ["PER", "LOC", "ORG"]
    prefixes = ["B", "I"] if scheme in ("iob1", "iob2") else ["B", "I", "E", "S"]
    return [
        "O" if rng.random() < 0.4 else f"{rng.choice(prefixes)}-{rng.choice(types)}"
        for _ in range(length)
    ]


@pytest.mark.parametrize("scheme", ["iob1", "iob2"])
def test_entity_f1_equals_seqeval(scheme):
    seqeval = pytest.importorskip("seqeval.metrics", reason="pip install seqeval (test extra)")
    rng = random.Random(0)
    gold, predicted = [], []
    for _ in range(300):
        n = rng.randint(1, 12)
        true_tags = random_tags(rng, n, scheme)
        # Mostly-right predictions, as a tagger makes them.
        noisy = [t if rng.random() < 0.7 else r for t, r in zip(true_tags, random_tags(rng, n, scheme))]
        if scheme == "iob2":
            from ktransfer.data.conll import iob1_to_iob2

            true_tags = iob1_to_iob2(true_tags)
        gold.append(true_tags)
        predicted.append(noisy)
    ours = kt.metrics.entity_f1(gold, predicted)
    assert ours["num_correct"] > 50  # the comparison is not between zeros
    assert ours["precision"] == pytest.approx(seqeval.precision_score(gold, predicted), abs=1e-12)
    assert ours["recall"] == pytest.approx(seqeval.recall_score(gold, predicted), abs=1e-12)
    assert ours["f1"] == pytest.approx(seqeval.f1_score(gold, predicted), abs=1e-12)
    report = seqeval.classification_report(gold, predicted, output_dict=True)
    for type_, scores in ours["per_type"].items():
        assert scores["f1"] == pytest.approx(report[type_]["f1-score"], abs=1e-12)
        assert scores["support"] == report[type_]["support"]


def test_entity_f1_errors():
    with pytest.raises(ValueError, match="sentences"):
        kt.metrics.entity_f1([["O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="Sentence 0 has 2 gold tags but 1"):
        kt.metrics.entity_f1([["O", "O"]], [["O"]])
    with pytest.raises(TypeError, match="list of sentences"):
        kt.metrics.entity_f1(["I-PER"], ["I-PER"])
    assert kt.metrics.entity_f1([["O"]], [["O"]])["f1"] == 0.0  # nothing to find


def test_entity_f1_accepts_padded_tag_tensors():
    # Issue 22: the `tags` output of an exported tagger is a [batch, words]
    # tensor of bytes padded with b"" and was rejected.
    import tensorflow as tf

    gold = [["B-PER", "I-PER", "O"], ["B-LOC"]]
    padded = tf.constant([[b"B-PER", b"I-PER", b"O"], [b"B-LOC", b"", b""]])
    expected = kt.metrics.entity_f1(gold, [["B-PER", "I-PER", "O"], ["B-LOC"]])
    assert expected["f1"] == 1.0
    assert kt.metrics.entity_f1(gold, padded) == expected
    assert kt.metrics.entity_f1(gold, padded.numpy()) == expected
    assert kt.metrics.entity_f1(padded, padded) == expected
    assert kt.metrics.entity_f1(gold, tf.ragged.constant([[b"B-PER", b"I-PER", b"O"], [b"B-LOC"]])) == expected
    assert kt.metrics.entity_f1(gold, [padded[0], padded[1]]) == expected  # rows as tensors
    with pytest.raises(ValueError, match="sentence 0 has an empty tag at position 1"):
        kt.metrics.entity_f1([["O", "O", "O"]], [[b"O", b"", b"O"]])
    with pytest.raises(TypeError, match=r'outputs\["tags"\]'):
        kt.metrics.entity_f1(gold, {"tags": padded, "words": padded})


def test_entity_f1_scores_a_real_tagger_output(tiny_preset):
    import keras
    import tensorflow as tf

    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling=None)
    tags = ["O", "B-PER", "I-PER"]
    model = keras.Sequential([encoder, kt.heads.TokenClassificationHead(len(tags))])
    sentences = ["the film is great", "a dull movie", "bad"]
    out = kt.export.tagger_function(model, tags)(tf.constant(sentences))["tags"]
    assert out.shape == (3, 4) and out.numpy()[2, 1] == b""  # padded with b""
    predicted = [[t.decode() for t in row[: len(s.split())]] for s, row in zip(sentences, out.numpy())]
    gold = [["O", "B-PER", "I-PER", "O"], ["B-PER", "O", "O"], ["B-PER"]]
    assert kt.metrics.entity_f1(gold, out) == kt.metrics.entity_f1(gold, predicted)


def test_relation_f1_is_direction_aware_macro_f1_without_other():
    gold = [
        "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Cause-Effect(e1,e2)",
        "Member-Collection(e2,e1)", "Other", "Other",
    ]
    predicted = [
        "Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)", "Other",
        "Member-Collection(e2,e1)", "Member-Collection(e2,e1)", "Other",
    ]
    scores = kt.metrics.relation_f1(gold, predicted)
    # Cause-Effect: 1 correct (the wrong direction is not), 2 predicted, 3 gold.
    cause = scores["per_type"]["Cause-Effect"]
    assert (cause["precision"], cause["recall"]) == (0.5, pytest.approx(1 / 3))
    assert cause["f1"] == pytest.approx(0.4)
    # Member-Collection: 1 correct, 2 predicted, 1 gold -> P 0.5, R 1, F1 2/3.
    assert scores["per_type"]["Member-Collection"]["f1"] == pytest.approx(2 / 3)
    assert set(scores["per_type"]) == {"Cause-Effect", "Member-Collection"}
    assert scores["f1"] == pytest.approx((0.4 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="No relation other than"):
        kt.metrics.relation_f1(["Other"], ["Other"])
