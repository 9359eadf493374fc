"""The real MiniLM checkpoint: Hugging Face folder loading and numerical parity.

Reference numbers come from Hugging Face's own PyTorch `BertModel` on the same
folder (tests/reference/make_minilm_reference.py, torch 2.13.0).
"""

import os

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from conftest import REPO

REFERENCE = os.path.join(REPO, "tests", "reference", "minilm_reference.npz")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


@pytest.fixture(scope="module")
def encoder(minilm_path, reference):
    length = reference["input_ids"].shape[1]
    return kt.encoders.BertEncoder.from_preset(minilm_path, sequence_length=length, pooling=None)


def test_tokenizer_matches_hugging_face(encoder, reference):
    features = encoder.preprocessor(tf.constant([str(s) for s in reference["sentences"]]))
    np.testing.assert_array_equal(features["token_ids"], reference["input_ids"])
    np.testing.assert_array_equal(features["segment_ids"], reference["token_type_ids"])
    np.testing.assert_array_equal(np.asarray(features["padding_mask"]).astype(int), reference["attention_mask"])


def test_sequence_output_matches_hugging_face_within_1e_4(encoder, reference):
    assert encoder.hidden_activation == "gelu"  # config.json says exact "gelu"
    features = {
        "token_ids": reference["input_ids"],
        "segment_ids": reference["token_type_ids"],
        "padding_mask": reference["attention_mask"].astype(bool),
    }
    output = np.asarray(encoder(features))
    real = reference["attention_mask"].astype(bool)
    difference = np.abs(output[real] - reference["last_hidden_state"][real]).max()
    assert difference < 1e-4, difference
    pooled = np.asarray(encoder.backbone(features)["pooled_output"])
    assert np.abs(pooled - reference["pooler_output"]).max() < 1e-4


def test_keras_hub_default_activation_would_drift(minilm_path, reference):
    """Why the loader honours hidden_act: KerasHub's tanh GELU drifts ~3e-3."""
    backbone = kt.encoders.BertEncoder.from_preset(minilm_path, pooling=None).backbone
    approximate = kt.encoders.BertEncoder(backbone, pooling=None, hidden_activation="gelu_approximate")
    features = {
        "token_ids": reference["input_ids"],
        "segment_ids": reference["token_type_ids"],
        "padding_mask": reference["attention_mask"].astype(bool),
    }
    real = reference["attention_mask"].astype(bool)
    difference = np.abs(np.asarray(approximate(features))[real] - reference["last_hidden_state"][real]).max()
    assert difference > 1e-3


def test_asset_name_resolves_to_the_cached_folder(minilm_path):
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=16, load_weights=False)
    assert encoder.num_blocks == 6 and encoder.output_dim == 384


def test_keras_round_trip_keeps_exact_gelu(minilm_path, tmp_path):
    encoder = kt.encoders.BertEncoder.from_preset(minilm_path, sequence_length=16, pooling="mean")
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    features = encoder.preprocessor(tf.constant(["a charming and often affecting journey ."]))
    expected = np.asarray(model(features))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[0].hidden_activation == "gelu"
    np.testing.assert_allclose(np.asarray(loaded(features)), expected, atol=1e-6)
