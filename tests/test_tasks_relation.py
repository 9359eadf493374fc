"""kt.tasks.RelationClassifier: marked texts in, relation labels out; mark_entities."""

import numpy as np
import pytest

import keras

import ktransfer as kt
from harness import assert_task_contract
from test_relations import toy_relations

SEQUENCE_LENGTH = 16
BERT_WEIGHTS = 5 + 2 * 16 + 2
NAMES = ["none", "film-first", "film-second"]


def test_mark_entities():
    assert kt.tasks.mark_entities("Ada was born in London", (0, 3), (16, 22)) == (
        "[E1] Ada [/E1] was born in [E2] London [/E2]")
    assert kt.tasks.mark_entities("London is home to Ada", (18, 21), (0, 6)) == (
        "[E2] London [/E2] is home to [E1] Ada [/E1]")
    assert kt.tasks.mark_entities("AB", (0, 1), (1, 2)) == "[E1] A [/E1][E2] B [/E2]"
    with pytest.raises(ValueError, match="overlap"):
        kt.tasks.mark_entities("New York", (0, 8), (4, 8))
    with pytest.raises(ValueError, match="span"):
        kt.tasks.mark_entities("Ada", (0, 9), (0, 1))


def test_contract_and_fresh_process_export(tiny_preset, tmp_path):
    texts = ["the [E1] film [/E1] is [E2] great [/E2]", "a [E1] plot [/E1] and [E2] film [/E2]"]

    def make():
        keras.utils.set_random_seed(0)
        return kt.tasks.RelationClassifier.from_preset(tiny_preset, labels=NAMES,
                                                      sequence_length=SEQUENCE_LENGTH)

    task, loaded = assert_task_contract(
        make, texts, ["film-first", "film-second"], (2, 3),
        num_trainable_weights=BERT_WEIGHTS - 2 + 2, num_non_trainable_weights=2, tmp_path=tmp_path,
    )
    assert type(loaded) is kt.tasks.RelationClassifier
    assert loaded.head.marker_ids == task.head.marker_ids
    assert loaded.predict_labels(texts) == task.predict_labels(texts)


def test_trains_on_raw_marked_texts_and_wraps_old_models(tiny_preset):
    keras.utils.set_random_seed(0)
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=24, pooling=None)
    clf = kt.tasks.RelationClassifier(encoder, labels=NAMES, dropout=0.0)  # adds the markers
    assert clf.encoder is not encoder and clf.encoder.backbone.vocabulary_size == encoder.backbone.vocabulary_size + 4
    texts, labels = toy_relations(192)
    clf.compile(optimizer=keras.optimizers.Adam(1e-2))
    clf.fit(x=texts, y=[NAMES[i] for i in labels], epochs=6, verbose=0)
    test_texts, test_labels = toy_relations(64, seed=1)
    assert clf.evaluate(x=test_texts, y=test_labels, verbose=0, return_dict=True)["accuracy"] > 0.9
    # The build_classifier model (the old way) wraps into a task.
    model = kt.heads.RelationHead.build_classifier(clf.encoder, 3)
    wrapped = kt.tasks.RelationClassifier.from_model(model, labels=NAMES)
    assert wrapped.predict(test_texts[:2], verbose=0).shape == (2, 3)
    with pytest.raises(ValueError, match="pooling=None"):
        kt.tasks.RelationClassifier(kt.encoders.BertEncoder.from_preset(tiny_preset), labels=NAMES)
    with pytest.raises(ValueError, match="Unknown label"):
        clf.fit(x=texts[:2], y=["none", "other"], verbose=0)
