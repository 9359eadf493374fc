"""Shared fixtures: tiny in-test BERT presets, real assets, real datasets."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "PYTEST_XDIST_WORKER" in os.environ:
    # Under `pytest -n 2` each worker gets one intra-op thread, so two
    # workers share the 2 cores without oversubscribing them (subprocesses
    # the tests start inherit it). Set before TensorFlow starts.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.abspath(
    os.environ.get("KTRANSFER_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
)
SHARED_DATA_MISSING = (
    f"{SHARED_DATA} not found: these tests read the real datasets that CI provides "
    "beside the repo (../shared/data); set KTRANSFER_SHARED_DATA to run them elsewhere"
)

# A small real-looking WordPiece vocabulary for the tiny in-test BERT.
TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "a", "an", "the", "film", "movie", "great", "good", "fine", "bad", "dull",
    "awful", "plot", "acting", "is", "was", "and", "but", "not", "very", "it",
    "'", "s", ",", ".", "!", "##s", "##ly", "##ing", "love", "hate", "boring",
]


# `make test` runs `pytest -n 2 --dist loadgroup`: each test file is one
# group (its tests share module fixtures and files, as with `loadfile`),
# except the docstring examples, by far the longest file, which are dealt
# round-robin into this many groups so that both workers share them.
DOCSTRING_GROUPS = 4


def pytest_collection_modifyitems(config, items):
    docstring_examples = 0
    for item in items:
        group = os.path.basename(str(item.path))
        if group == "test_docstrings.py":
            group = f"{group}:{docstring_examples % DOCSTRING_GROUPS}"
            docstring_examples += 1
        item.add_marker(pytest.mark.xdist_group(group))
    if os.path.isdir(SHARED_DATA):
        return
    skip = pytest.mark.skip(reason=SHARED_DATA_MISSING)
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data():
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(SHARED_DATA_MISSING)
    return SHARED_DATA


def make_tiny_preset(folder, sequence_length=32, num_layers=2, seed=0, dropout=0.1):
    """Save a tiny random BERT + tokenizer as a KerasHub preset folder."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=TINY_VOCAB)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(TINY_VOCAB),
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=64,
        dropout=dropout,
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    backbone.save_to_preset(folder)
    preprocessor.save_to_preset(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory):
    return make_tiny_preset(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def minilm_path():
    from ktransfer import assets

    if not assets.is_cached("minilm"):
        pytest.skip(
            "MiniLM asset not fetched: run `ktransfer assets fetch minilm` "
            "(`make test` does it first)"
        )
    return assets.path("minilm")


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)
