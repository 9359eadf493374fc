"""The ```python examples in ktransfer's docstrings run as tests.

Which examples: every ```python block in the docstring of a `ktransfer`
module, of the public classes and functions it defines (its `__all__`, or
its names without a leading underscore) and of their public methods (their
own docstrings, not ones inherited from Keras). Each is one test, named
`module.Name.method[index]`.

How an example runs (the rules its docstring follows):

1. In a fresh, empty namespace and a fresh temporary working folder.
2. An example whose first line of code is an import is *self-contained*:
   it imports every module and function it uses (a reader can paste it as
   it is). Any other example is a *fragment* that continues its module's or
   class's text: it runs with `kt`, `keras`, `tf`, `np` and `os` imported.
3. An example may use the objects its prose talks about (`model`,
   `encoder`, `train`, `texts`, ...) without building them: its entry in
   `CONTEXTS` below builds them (from the tiny stand-ins of rule 4), for
   self-contained examples and fragments alike.
4. The ktransfer asset names resolve to tiny stand-ins of the same format
   (`$KTRANSFER_HOME` points at a temporary cache): `"minilm"` is a 2-block
   BERT in Hugging Face's layout (hidden size 16 instead of 384), `"glove50"`
   a GloVe package of 50-d vectors for a few hundred words. The data files
   examples name (`train.tsv`, `train.txt`, `sst2/train.tsv`,
   `clinc150/train.tsv`, `examples/...`, ...) are small files of the same
   format in the working folder (`DATA_FILES`). So shapes and numbers in an
   example's comments describe the real assets, not the stand-ins; what is
   tested is that the code runs as written. Other assets (no stand-in, e.g.
   `"multilingual-e5-small"`) are the real ones when they are fetched, and an
   example that names one that is not is skipped, saying which to fetch.
5. An example that cannot run here says so in its first line, with the
   reason: `# not run: <reason>` (e.g. it downloads a dataset). It is
   reported as skipped with that reason (`pytest -ra` lists them); a marker
   without a reason fails.

A new fragment that uses a name nothing defines fails with a NameError:
give it a `CONTEXTS` entry (or make it self-contained). An entry whose
example no longer exists fails `test_contexts_name_existing_examples`.
"""

import dataclasses
import importlib
import inspect
import linecache
import os
import pkgutil
import re
import shutil
import textwrap

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from conftest import REPO
from conftest import TINY_VOCAB

FENCE = re.compile(r"```python[ \t]*\n(.*?)```", re.S)
NOT_RUN = re.compile(r"#\s*not run\b:?\s*(.*)")


# ---------------------------------------------------------------------------
# Collecting the examples
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Example:
    id: str
    code: str

    @property
    def first_line(self):
        return next((line.strip() for line in self.code.splitlines() if line.strip()), "")

    @property
    def not_run_reason(self):
        """None when the example runs; else the stated reason ('' if none is given)."""
        match = NOT_RUN.match(self.first_line)
        return None if match is None else match.group(1).strip()

    @property
    def self_contained(self):
        for line in self.code.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                return line.startswith(("import ", "from "))
        return False


def _modules():
    names = ["ktransfer"] + sorted(
        info.name for info in pkgutil.walk_packages(kt.__path__, "ktransfer.")
    )
    modules = []
    for name in names:
        module = importlib.import_module(name)
        if module.__name__ == name:  # not an alias of a moved module
            modules.append(module)
    return modules


def _public_objects(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name, None)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module.__name__:
            yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj):
                for attribute, value in vars(obj).items():
                    if attribute.startswith("_"):
                        continue
                    if isinstance(value, (classmethod, staticmethod)):
                        value = value.__func__
                    elif isinstance(value, property):
                        value = value.fget
                    if inspect.isfunction(value):
                        yield f"{module.__name__}.{name}.{attribute}", value


def collect_examples():
    examples, seen = [], set()
    for module in _modules():
        for qualname, obj in [(module.__name__, module)] + list(_public_objects(module)):
            doc = obj.__doc__  # its own docstring, not one inherited
            if not doc or id(obj) in seen:
                continue
            seen.add(id(obj))
            blocks = FENCE.findall(inspect.cleandoc(doc))
            for index, code in enumerate(blocks):
                suffix = f"[{index}]" if len(blocks) > 1 else ""
                examples.append(Example(f"{qualname}{suffix}", textwrap.dedent(code)))
    return examples


EXAMPLES = collect_examples()


# ---------------------------------------------------------------------------
# Stand-in assets and data files (rule 4)
# ---------------------------------------------------------------------------

EXTRA_WORDS = [
    "man", "eats", "someone", "eating", "rains", "query", "document", "child", "put", "in",
    "cradle", "works", "well", "broke", "fun", "ok", "book", "table", "for", "two", "what",
    "my", "balance", "wake", "me", "at", "set", "alarm", "six", "how", "much", "money", "do",
    "i", "have", "loved", "knife", "sharp", "vote", "goal", "peter", "visited", "paris",
]
VOCAB = TINY_VOCAB + [w for w in EXTRA_WORDS if w not in TINY_VOCAB]

POSITIVE = ["great", "good", "fine", "love", "loved", "fun"]
NEGATIVE = ["bad", "dull", "awful", "boring", "hate", "broke"]
NOUNS = ["film", "movie", "plot", "acting"]


def _sentiment_rows(n, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        word = rng.choice(POSITIVE if label else NEGATIVE)
        rows.append((f"the {rng.choice(NOUNS)} was {word}", label))
    return rows


def _tsv(rows, header=("sentence", "label")):
    return "\t".join(header) + "\n" + "".join(f"{text}\t{label}\n" for text, label in rows)


INTENTS = {
    "restaurant": ["book a table for {}", "a table for {} please", "reserve {} seats"],
    "bank": ["what is my balance {}", "how much money {}", "my account {}"],
    "alarm": ["wake me at {}", "set an alarm for {}", "alarm at {}"],
    "weather": ["will it rain {}", "weather {}", "is it sunny {}"],
    "music": ["play a song {}", "music {}", "play jazz {}"],
    "travel": ["book a flight {}", "a train to paris {}", "trip {}"],
}


def _intent_rows(per_class=20):
    rows = []
    for intent, patterns in INTENTS.items():
        for i in range(per_class):
            rows.append((patterns[i % len(patterns)].format(i), intent))
    return rows


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
visited VBD B-VP O
Paris NNP B-NP I-LOC

the DT B-NP O
film NN I-NP O
was VBD B-VP O
great JJ B-ADJP O
"""


def _glove_text(words, dim=50, seed=0):
    rng = np.random.default_rng(seed)
    return "".join(
        word + " " + " ".join(f"{v:.4f}" for v in rng.normal(size=dim)) + "\n" for word in words
    )


def _vector_words():
    words = set(VOCAB) | set(POSITIVE) | set(NEGATIVE) | set(NOUNS)
    for patterns in INTENTS.values():
        for pattern in patterns:
            words.update(pattern.replace("{}", "").split())
    words.update(["the", "a", "it", "is", "was", "not", ",", ".", "'s", "n't", "better",
                  "really", "always", "cat", "dog", "car", "eu", "german", "call"])
    return sorted(w for w in words if not w.startswith("[") and not w.startswith("##"))


DATA_FILES = {
    "train.tsv": _tsv(_sentiment_rows(32, 0)),
    "sst2/train.tsv": _tsv(_sentiment_rows(32, 1)),
    "clinc150/train.tsv": _tsv(_intent_rows()),
    "examples/data/sst2_train_sample.tsv": _tsv(_sentiment_rows(32, 2)),
    "examples/data/sst2_dev.tsv": _tsv(_sentiment_rows(16, 3)),
    "train.txt": CONLL,
    "toy.txt": CONLL,
    "glove.6B.50d.txt": None,  # written by the fixture (needs the word list)
}


def _write_glove_package(folder, words, dim=50):
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    matrix = np.random.default_rng(0).normal(size=(len(words), dim)).astype("float32")
    np.save(os.path.join(folder, "glove_6B_50d_emb.npy"), matrix)
    pq.write_table(pa.table({"index": words}), os.path.join(folder, "glove_6B_index.parquet"))


STAND_IN_ASSETS = ("minilm", "glove50")


def _missing_real_assets(example):
    """The assets without a stand-in that `example` names and the cache lacks."""
    return [
        name for name in sorted(kt.assets.ASSETS)
        if name not in STAND_IN_ASSETS
        and re.search(rf"[\"']{re.escape(name)}[\"']", example.code)
        and not kt.assets.is_cached(name)
    ]


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory):
    """`(home, data, runs)`: the stand-in asset cache, the data files, a finished run."""
    from test_bert_presets import write_hf_bert

    root = tmp_path_factory.mktemp("docstrings")
    home = root / "home"
    write_hf_bert(home / "minilm", vocab=VOCAB, hidden=16, heads=2, inner=32, positions=512)
    words = _vector_words()
    _write_glove_package(home / "glove50", words)
    for name in kt.assets.ASSETS:  # the real ones, where fetched (rule 4)
        if name not in STAND_IN_ASSETS and kt.assets.is_cached(name):
            os.symlink(kt.assets.path(name), home / name)
    data = root / "data"
    for name, text in DATA_FILES.items():
        path = data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_glove_text(words) if text is None else text, encoding="utf-8")
    config = data / "examples" / "configs"
    config.mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "examples", "configs", "sst2_minilm.yaml"), config)
    saved_home = os.environ.get("KTRANSFER_HOME")
    os.environ["KTRANSFER_HOME"] = str(home)
    cwd = os.getcwd()
    try:
        os.chdir(data)
        keras.utils.set_random_seed(0)
        # A saved classifier (ktransfer.methods.weight_transfer).
        encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=32, pooling="mean")
        reviews = keras.Sequential([encoder, kt.heads.ClassificationHead(3)])
        reviews(encoder.preprocessor(tf.constant(["a film"])))
        reviews.save("reviews.keras")
        # A finished run (ktransfer.app.report), kept apart: kt.train examples
        # write to the same folder.
        kt.train(
            encoder={"preset": "minilm", "sequence_length": 32, "pooling": "mean"},
            task={"labels": ["negative", "positive"]},
            data={"train": "train.tsv", "validation": "sst2/train.tsv", "text": "sentence"},
            training={"epochs": 1, "output": str(root / "runs" / "runs" / "sst2")},
        )
    finally:
        os.chdir(cwd)
        if saved_home is None:
            del os.environ["KTRANSFER_HOME"]
        else:
            os.environ["KTRANSFER_HOME"] = saved_home
        keras.backend.clear_session()
    return str(home), str(data), str(root / "runs")


# ---------------------------------------------------------------------------
# What fragments talk about (rule 3)
# ---------------------------------------------------------------------------

TEXTS = ["a great film", "a dull film", "the plot was fine", "boring and awful"]
LABELS = [1, 0, 1, 0]


def _encoder(**kwargs):
    kwargs = {"sequence_length": 32, "pooling": "mean", **kwargs}
    return kt.encoders.BertEncoder.from_preset("minilm", **kwargs)


def _built(model, encoder):
    model(encoder.preprocessor(tf.constant(TEXTS[:1])))
    return model


def _prepared(encoder, texts=TEXTS, labels=LABELS):
    data = kt.data.from_lists(texts, labels) if labels is not None else kt.data.from_lists(texts)
    return kt.data.prepare(data, encoder.preprocessor, batch_size=2)


def _classifier():
    encoder = _encoder()
    head = kt.heads.ClassificationHead(2)
    model = _built(keras.Sequential([encoder, head]), encoder)
    return {"model": model, "encoder": encoder, "head": head, "train": _prepared(encoder),
            "texts": TEXTS, "labels": LABELS}


def _tagger():
    train = kt.data.from_conll("train.txt")
    tags = kt.data.tag_vocabulary(train)
    encoder = _encoder(pooling=None)
    head = kt.heads.TokenClassificationHead(len(tags))
    model = _built(keras.Sequential([encoder, head]), encoder)
    return {"model": model, "encoder": encoder, "head": head, "train": train, "tags": tags}


def _mix_sources():
    encoder = _encoder()
    sst2 = kt.data.from_lists(TEXTS, LABELS)
    reviews = kt.data.from_lists(TEXTS, [0, 1, 2, 3])
    return {"encoder": encoder, "sst2": sst2, "reviews": reviews,
            "sst2_batches": kt.data.prepare(sst2, encoder.preprocessor, batch_size=2),
            "review_batches": kt.data.prepare(reviews, encoder.preprocessor, batch_size=2),
            "topics": ["acting", "plot", "music", "other"]}


def _multitask():
    names = _mix_sources()
    encoder = names["encoder"]
    heads = {"sentiment": kt.heads.ClassificationHead(2), "topic": kt.heads.ClassificationHead(4)}
    model = _built(kt.multitask.MultiTaskModel(encoder, heads=heads), encoder)
    model.compile(optimizer="adam")
    return {**names, "model": model}


def _domains():
    encoder = _encoder()
    target_texts = ["works well", "it broke"]
    dann = kt.adapt.DANN(encoder, kt.heads.ClassificationHead(2))
    dann.compile(optimizer="adam", loss=dann.task_head.default_loss())
    return {"encoder": encoder, "source": _prepared(encoder),
            "target": _prepared(encoder, target_texts, None), "epochs": 1, "batches_per_epoch": 2,
            "dann": dann, "src_texts": TEXTS, "src_labels": LABELS, "tgt_texts": target_texts,
            "labelled_target": _prepared(encoder, target_texts, [1, 0]),
            "val_texts": TEXTS[::-1], "val_labels": LABELS[::-1],
            "source_val": _prepared(encoder, TEXTS[::-1], LABELS[::-1])}


def _teacher():
    names = _classifier()
    vectors = kt.encoders.WordVectorEncoder("glove50", standardize="lower")
    vectors.adapt(TEXTS)
    return {"teacher": names["model"], "texts": TEXTS, "labels": LABELS,
            "unlabelled_texts": ["a film", "the plot"], "word_vector_encoder": vectors}


def _lora_classifier():
    encoder = _encoder()
    encoder.enable_lora(rank=2)
    return {"model": _built(keras.Sequential([encoder, kt.heads.ClassificationHead(2)]), encoder)}


def _string_encoder():
    encoder = kt.encoders.WordVectorEncoder("glove50", standardize="lower", pooling="mean")
    encoder.adapt(TEXTS)
    return {"encoder": encoder, "head": kt.heads.ClassificationHead(2)}


def _text_classifier():
    clf = kt.tasks.TextClassifier.from_preset("minilm", num_classes=2, labels=["neg", "pos"],
                                              sequence_length=32)
    return {"clf": clf}


NEEDS_A_RUN = {"ktransfer.app.report"}

CONTEXTS = {
    "ktransfer.app.train.check_tpu_ready": lambda: (lambda names: {
        **names,
        "batches": kt.data.prepare(kt.data.from_lists(TEXTS, LABELS), names["encoder"].preprocessor,
                                   batch_size=2, bucket=False, drop_remainder=True),
    })(_classifier()),
    "ktransfer.data.conll.prepare_tokens": _tagger,
    "ktransfer.data.mixing.mix": _multitask,
    "ktransfer.distribute.get_strategy": lambda: {"train": _classifier()["train"]},
    "ktransfer.export.save": _classifier,
    "ktransfer.export.save_multitask": _multitask,
    "ktransfer.export.save_tagger": _tagger,
    "ktransfer.export.save_pair": lambda: {"siamese": kt.models.SiameseEncoder(_encoder())},
    "ktransfer.methods.adapt": _domains,
    "ktransfer.methods.adapt.CORAL": _domains,
    "ktransfer.methods.adapt.GradientReversalSchedule": _domains,
    "ktransfer.methods.adapt.AlignmentWeightSchedule": _domains,
    "ktransfer.methods.adapt.DomainAdaptationModel.fit": _domains,
    "ktransfer.methods.distill": _teacher,
    "ktransfer.methods.distill.soft_targets": _teacher,
    "ktransfer.methods.fewshot": lambda: {
        "train": kt.data.from_tsv("clinc150/train.tsv", text="sentence", label="label"),
        "encoder": _encoder(), "texts": TEXTS, "labels": ["pos", "neg", "pos", "neg"],
        "support_texts": ["book a table", "what is my balance"], "support_labels": ["r", "b"],
        "query_texts": ["a table for two"],
    },
    "ktransfer.methods.lora.merge_lora": _lora_classifier,
    "ktransfer.methods.multitask": _mix_sources,
    "ktransfer.methods.unfreezing": lambda: {"train": _classifier()["train"]},
    "ktransfer.methods.weight_transfer.find_head": _classifier,
    "ktransfer.methods.weight_transfer.build_on_sample": lambda: {"encoder": _encoder()},
    "ktransfer.predict.predict": _classifier,
    "ktransfer.tasks.serving.predict_in_length_groups": _classifier,
    "ktransfer.tasks.serving.preprocess_texts": lambda: {"encoder": _encoder()},
    "ktransfer.tasks.serving.takes_raw_strings": _string_encoder,
    "ktransfer.tasks.task.Task.export": _text_classifier,
    "ktransfer.tasks.text_classifier": lambda: {"texts": TEXTS, "labels": ["pos", "neg", "pos", "neg"]},
    "ktransfer.tasks.text_classifier.TextClassifier.from_model": lambda: {"encoder": _encoder()},
    "ktransfer.vectors.word_vectors.WordVectors.most_similar": lambda: {
        "vectors": kt.WordVectors.load(kt.assets.path("glove50"))},
}


def test_contexts_name_existing_examples():
    ids = {example.id for example in EXAMPLES}
    stale = sorted(set(CONTEXTS) - ids)
    assert not stale, f"CONTEXTS entries for examples that no longer exist: {stale}"


def test_examples_were_found():
    ids = {example.id for example in EXAMPLES}
    # A sample that must be there: the rules above would otherwise test nothing.
    assert {"ktransfer", "ktransfer.heads.classification_head.ClassificationHead",
            "ktransfer.schedules.OneCycle"} <= ids
    assert len(EXAMPLES) >= 60


# ---------------------------------------------------------------------------
# Running them
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_docstring_example(example, stand_ins, tmp_path, monkeypatch):
    reason = example.not_run_reason
    if reason is not None:
        assert reason, (
            f"{example.id}: the marker `# not run` needs its reason: `# not run: <why>`"
        )
        pytest.skip(reason)
    missing = _missing_real_assets(example)
    if missing:
        pytest.skip(f"needs the asset {missing[0]!r}: `ktransfer assets fetch {missing[0]}`")
    home, data, runs = stand_ins
    shutil.copytree(data, tmp_path, dirs_exist_ok=True)
    if example.id in NEEDS_A_RUN:
        shutil.copytree(runs, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KTRANSFER_HOME", home)
    namespace = {"__name__": f"docstring_example_{abs(hash(example.id))}"}
    if not example.self_contained:
        namespace.update({"kt": kt, "keras": keras, "tf": tf, "np": np, "os": os})
    context = CONTEXTS.get(example.id)
    if context is not None:
        keras.utils.set_random_seed(0)
        namespace.update(context())
    filename = f"<docstring example {example.id}>"
    linecache.cache[filename] = (len(example.code), None, example.code.splitlines(True), filename)
    keras.utils.set_random_seed(0)
    try:
        exec(compile(example.code, filename, "exec"), namespace)
    finally:
        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()
