"""Where a BERT checkpoint comes from (kt.encoders.bert_presets), issue 22 defect 5.

Hugging Face folders are checked against their config.json before KerasHub
reads them: an edited config.json, a cut vocab.txt or a truncated
model.safetensors is an error naming the mismatch, not a different model. A
folder with only config.json + model.safetensors + vocab.txt loads.
"""

import json
import os
import shutil
import warnings

import numpy as np
import pytest

import ktransfer as kt
from ktransfer.encoders.bert_presets import check_hugging_face_folder
from ktransfer.encoders.bert_presets import resolve_preset

from conftest import TINY_VOCAB


def write_hf_bert(
    folder, vocab=TINY_VOCAB, layers=2, hidden=64, heads=2, inner=128, positions=64,
    tokenizer_config=True, prefix="", drop=(), extra=(), config_edits=None,
):
    """A tiny random BERT in Hugging Face's layout (BertModel state-dict names)."""
    os.makedirs(folder, exist_ok=True)
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {}

    def add(name, *shape):
        tensors[prefix + name] = rng.normal(0, 0.02, shape).astype("float32")

    add("embeddings.word_embeddings.weight", len(vocab), hidden)
    add("embeddings.position_embeddings.weight", positions, hidden)
    add("embeddings.token_type_embeddings.weight", 2, hidden)
    add("embeddings.LayerNorm.weight", hidden)
    add("embeddings.LayerNorm.bias", hidden)
    tensors[prefix + "embeddings.position_ids"] = np.arange(positions, dtype="int64")[None]
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            add(p + f"attention.self.{part}.weight", hidden, hidden)
            add(p + f"attention.self.{part}.bias", hidden)
        add(p + "attention.output.dense.weight", hidden, hidden)
        add(p + "attention.output.dense.bias", hidden)
        add(p + "attention.output.LayerNorm.weight", hidden)
        add(p + "attention.output.LayerNorm.bias", hidden)
        add(p + "intermediate.dense.weight", inner, hidden)
        add(p + "intermediate.dense.bias", inner)
        add(p + "output.dense.weight", hidden, inner)
        add(p + "output.dense.bias", hidden)
        add(p + "output.LayerNorm.weight", hidden)
        add(p + "output.LayerNorm.bias", hidden)
    add("pooler.dense.weight", hidden, hidden)
    add("pooler.dense.bias", hidden)
    for name in drop:
        del tensors[prefix + name]
    for name, shape in extra:
        add(name, *shape)
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "model_type": "bert", "architectures": ["BertModel"], "hidden_act": "gelu",
        "vocab_size": len(vocab), "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "intermediate_size": inner,
        "max_position_embeddings": positions, "type_vocab_size": 2,
        **(config_edits or {}),
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    if tokenizer_config:
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f)
    return str(folder)


def edit_config(folder, **changes):
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        config = json.load(f)
    config.update(changes)
    with open(path, "w") as f:
        json.dump(config, f)


def test_a_consistent_hugging_face_folder_loads(tmp_path):
    folder = write_hf_bert(tmp_path / "bert")
    assert resolve_preset(folder) == (folder, "gelu")
    encoder = kt.encoders.BertEncoder.from_preset(folder, sequence_length=16)
    assert encoder.num_blocks == 2 and encoder.output_dim == 64
    # "bert."-prefixed names (BertFor... checkpoints) with task heads also pass.
    prefixed = write_hf_bert(
        tmp_path / "prefixed", prefix="bert.",
        extra=[("cls.predictions.bias", (len(TINY_VOCAB),)), ("classifier.weight", (2, 64))],
    )
    check_hugging_face_folder(prefixed)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(num_hidden_layers=1), r"num_hidden_layers=1, but model.safetensors holds 2 transformer layers"),
        (dict(num_hidden_layers=3), r"num_hidden_layers=3, but model.safetensors holds 2 transformer layers"),
        (dict(hidden_size=32), r"embeddings.word_embeddings.weight has shape \[36, 64\], but config.json \(vocab_size=36, hidden_size=32\) implies \[36, 32\]"),
        (dict(intermediate_size=64), r"intermediate.dense.weight has shape \[128, 64\].*implies \[64, 64\]"),
        (dict(max_position_embeddings=512), r"position_embeddings.weight has shape \[64, 64\].*implies \[512, 64\]"),
        (dict(vocab_size=30), r"vocab_size=30, hidden_size=64\) implies \[30, 64\]"),
        (dict(num_attention_heads=3), r"num_attention_heads=3 does not divide hidden_size=64"),
        (dict(intermediate_size="big"), r"lacks valid values for \['intermediate_size'\]"),
    ],
)
def test_an_edited_config_is_an_error_naming_the_mismatch(tmp_path, change, message):
    folder = write_hf_bert(tmp_path / "bert")
    edit_config(folder, **change)
    with pytest.raises(ValueError, match=message):
        kt.encoders.BertEncoder.from_preset(folder)


def test_missing_and_unused_tensors_are_named(tmp_path):
    folder = write_hf_bert(tmp_path / "no_pooler", drop=["pooler.dense.weight"])
    with pytest.raises(ValueError, match=r"lacks 1 tensor\(s\) that config.json implies: pooler.dense.weight"):
        resolve_preset(folder)
    folder = write_hf_bert(
        tmp_path / "relative", extra=[("encoder.layer.0.attention.self.distance_embedding.weight", (127, 32))]
    )
    with pytest.raises(ValueError, match=r"does not use: encoder.layer.0.attention.self.distance_embedding"):
        resolve_preset(folder)


def test_vocabulary_size_must_match_the_embedding_rows(tmp_path):
    folder = write_hf_bert(tmp_path / "bert")
    vocab_file = os.path.join(folder, "vocab.txt")
    with open(vocab_file, "w") as f:
        f.write("\n".join(TINY_VOCAB[:20]) + "\n")
    with pytest.raises(ValueError, match="vocab.txt has 20 tokens but the word embedding .* has 36 rows: the vocabulary is cut short"):
        kt.encoders.BertEncoder.from_preset(folder)
    with open(vocab_file, "w") as f:
        f.write("\n".join(TINY_VOCAB + ["extra"]) + "\n")
    with pytest.raises(ValueError, match="vocab.txt has 37 tokens .* 36 rows: token ids past the last row"):
        kt.encoders.BertEncoder.from_preset(folder)
    # Spare rows that pad the table to a multiple of 8 are fine (30,528 for 30,522).
    padded = write_hf_bert(tmp_path / "padded", vocab=TINY_VOCAB + [f"[unused{i}]" for i in range(4)])
    with open(os.path.join(padded, "vocab.txt"), "w") as f:
        f.write("\n".join(TINY_VOCAB) + "\n")
    check_hugging_face_folder(padded)


def test_a_truncated_weights_file_is_named_with_the_fix(tmp_path):
    folder = write_hf_bert(tmp_path / "bert")
    weights = os.path.join(folder, "model.safetensors")
    data = open(weights, "rb").read()
    for size in (len(data) // 2, 5):
        with open(weights, "wb") as f:
            f.write(data[:size])
        with pytest.raises(ValueError, match="model.safetensors cannot be read as safetensors") as error:
            kt.encoders.BertEncoder.from_preset(folder)
        assert "truncated or corrupt" in str(error.value) and "download it again" in str(error.value)
        assert f"{size:,} bytes" in str(error.value)
        assert type(error.value) is ValueError  # not safetensors' own SafetensorError


def test_sharded_weights_are_checked_through_their_index(tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = write_hf_bert(tmp_path / "bert")
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    os.remove(os.path.join(folder, "model.safetensors"))
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, members in shards.items():
        save_file({n: tensors[n] for n in members}, os.path.join(folder, shard))
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {n: s for s, members in shards.items() for n in members}}, f)
    check_hugging_face_folder(folder)
    edit_config(folder, num_hidden_layers=1)
    with pytest.raises(ValueError, match="the safetensors shards holds 2 transformer layers"):
        check_hugging_face_folder(folder)
    os.remove(os.path.join(folder, "model-00002-of-00002.safetensors"))
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors is missing"):
        check_hugging_face_folder(folder)


def test_unusual_head_size_warns_that_it_cannot_be_checked(tmp_path):
    folder = write_hf_bert(tmp_path / "bert", hidden=64, heads=4)  # heads of 16
    with pytest.warns(UserWarning, match="num_attention_heads=4 gives attention heads of 16"):
        check_hugging_face_folder(folder)
    folder = write_hf_bert(tmp_path / "usual", hidden=64, heads=2)  # heads of 32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_hugging_face_folder(folder)


def test_three_file_folder_without_tokenizer_config_loads(tmp_path, monkeypatch):
    # The README's promise: config.json + model.safetensors + vocab.txt.
    monkeypatch.setenv("KTRANSFER_HOME", str(tmp_path / "cache"))
    with_config = write_hf_bert(tmp_path / "full")
    bare = write_hf_bert(tmp_path / "bare", tokenizer_config=False)
    assert sorted(os.listdir(bare)) == ["config.json", "model.safetensors", "vocab.txt"]
    location, _ = resolve_preset(bare)
    assert location.startswith(str(tmp_path / "cache"))  # a view; the user's folder is untouched
    assert sorted(os.listdir(bare)) == ["config.json", "model.safetensors", "vocab.txt"]
    assert resolve_preset(bare)[0] == location  # made once, then reused
    encoder = kt.encoders.BertEncoder.from_preset(bare, sequence_length=12)
    reference = kt.encoders.BertEncoder.from_preset(with_config, sequence_length=12)
    texts = ["The GREAT film", "a dull plot"]
    features = encoder.preprocessor(texts)
    np.testing.assert_array_equal(features["token_ids"], reference.preprocessor(texts)["token_ids"])
    assert encoder.preprocessor.tokenizer.lowercase  # an uncased vocabulary
    np.testing.assert_allclose(encoder(features), reference(features), atol=1e-6)

    # A cased vocabulary (upper-case tokens) is not lower-cased.
    cased = write_hf_bert(tmp_path / "cased", vocab=TINY_VOCAB + ["Film", "The", "[X]", "##S"],
                          tokenizer_config=False)
    cased_encoder = kt.encoders.BertEncoder.from_preset(cased, sequence_length=12)
    assert not cased_encoder.preprocessor.tokenizer.lowercase


# --------------------------------------------------------------------------
# The real MiniLM checkpoint (issue 22's reproductions), copied into tmp_path.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_copy(minilm_path, tmp_path_factory):
    copy = tmp_path_factory.mktemp("minilm") / "minilm"
    shutil.copytree(minilm_path, copy)
    return str(copy)


def minilm_variant(source, folder, files=None):
    """A folder with MiniLM's files (the weights linked, the rest copied)."""
    os.makedirs(folder)
    for name in files or ("config.json", "vocab.txt", "tokenizer_config.json", "model.safetensors"):
        if name == "model.safetensors":
            os.symlink(os.path.join(source, name), os.path.join(folder, name))
        else:
            shutil.copy(os.path.join(source, name), folder)
    return str(folder)


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(num_hidden_layers=3), "num_hidden_layers=3, but model.safetensors holds 6 transformer layers"),
        # The heads leave no trace in the weights: MiniLM is recognised by them.
        (dict(num_attention_heads=4), r"all-MiniLM-L6-v2 .* trained with num_attention_heads=12, but config.json says num_attention_heads=4"),
    ],
)
def test_minilm_with_an_edited_config_is_refused(minilm_copy, tmp_path, change, message):
    folder = minilm_variant(minilm_copy, tmp_path / "edited")
    check_hugging_face_folder(folder)  # as copied: consistent
    edit_config(folder, **change)
    with pytest.raises(ValueError, match=message) as error:
        kt.encoders.BertEncoder.from_preset(folder)
    assert "ktransfer assets fetch minilm --force" in str(error.value)


@pytest.mark.slow
def test_minilm_with_a_cut_vocabulary_or_truncated_weights_is_refused(minilm_copy, tmp_path):
    folder = minilm_variant(minilm_copy, tmp_path / "cut")
    vocab_file = os.path.join(folder, "vocab.txt")
    lines = open(vocab_file, encoding="utf-8").readlines()
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.writelines(lines[:1000])
    with pytest.raises(ValueError, match="vocab.txt has 1,000 tokens but the word embedding in model.safetensors has 30,522 rows"):
        kt.encoders.BertEncoder.from_preset(folder)

    truncated = minilm_variant(minilm_copy, tmp_path / "truncated", files=["config.json", "vocab.txt"])
    with open(os.path.join(minilm_copy, "model.safetensors"), "rb") as src:
        with open(os.path.join(truncated, "model.safetensors"), "wb") as dst:
            dst.write(src.read(50_000_000))
    with pytest.raises(ValueError, match=r"truncated/model.safetensors cannot be read .*50,000,000 bytes.*download it again"):
        kt.encoders.BertEncoder.from_preset(truncated)


@pytest.mark.slow
def test_minilm_from_the_three_files_the_readme_lists(minilm_copy, minilm_path, tmp_path, monkeypatch):
    monkeypatch.setenv("KTRANSFER_HOME", str(tmp_path / "cache"))
    folder = minilm_variant(
        minilm_copy, tmp_path / "three", files=["config.json", "model.safetensors", "vocab.txt"]
    )
    bare = kt.encoders.BertEncoder.from_preset(folder, sequence_length=16, pooling="mean")
    full = kt.encoders.BertEncoder.from_preset(minilm_path, sequence_length=16, pooling="mean")
    texts = ["Hello World, this is MiniLM!", "Paris"]
    features = bare.preprocessor(texts)
    np.testing.assert_array_equal(features["token_ids"], full.preprocessor(texts)["token_ids"])
    np.testing.assert_allclose(bare(features), full(features), atol=1e-6)
