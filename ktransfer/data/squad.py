"""SQuAD-style extractive question answering data: the reader and the windows.

- `read_squad(path)` / `from_squad(path)`: a SQuAD v1.1 JSON file (SQuAD,
  XQuAD, CMRC 2018 use the format) as Python records / a `tf.data.Dataset`.
  An answer whose `answer_start` does not point at its text in the context
  is skipped; a question left without an answer is skipped and counted, and
  a warning names the ids.
- `OffsetTokenizer`: the encoder's tokenizer (KerasHub WordPiece, as MiniLM
  and BERT use, or SentencePiece, as XLM-R and multilingual-e5 use) with the
  character span of every token in the original text, in the graph
  (`tensorflow_text` ops only, so an exported model needs nothing else).
- `squad_windows(...)`: `[CLS] question [SEP] context-window [SEP]` windows
  of a fixed `sequence_length`, `doc_stride` tokens shared by neighbouring
  windows, the question cut to `max_question_length` tokens, with the
  character span of every context token and, for training, the answer's
  token positions (windows that do not hold the whole answer point at
  [CLS], position 0, as Hugging Face's `run_qa.py` does).
- `QuestionAnsweringPreprocessor`: the two as one Keras layer, what
  `kt.tasks.QuestionAnswerer` runs in tf.data and in its exported graph.

```python
# not run: reads a SQuAD file (../shared/data/squad_train_head/train.json)
import ktransfer as kt
examples = kt.data.read_squad("train.json")   # .questions, .contexts, .answers, ...
dataset = kt.data.from_squad("train.json")    # {"id", "question", "context", "answer_text",
                                              #  "answer_start", "answer_end"} per question
```
"""

import json
import warnings

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.readers import read_text_file

try:  # tensorflow_text registers the tokenizer ops (a dependency of ktransfer).
    import tensorflow_text as tf_text
except ImportError:  # pragma: no cover
    tf_text = None

# Hugging Face run_qa.py / Google's run_squad.py defaults.
DEFAULT_SEQUENCE_LENGTH = 384
DEFAULT_DOC_STRIDE = 128
DEFAULT_MAX_QUESTION_LENGTH = 64
# Ids named in the warning about skipped questions.
WARN_IDS = 10

# BERT's word splitting, as KerasHub's WordPieceTokenizer does it
# (keras_hub/src/tokenizers/word_piece_tokenizer.py): whitespace and control
# characters separate words; punctuation and CJK characters are words of their own.
_WHITESPACE = r"|".join([r"\s", r"\p{Cc}", r"\p{Cf}"])
_PUNCTUATION = r"|".join([r"[!-/]", r"[:-@]", r"[\[-`]", r"[{-~]", r"[\p{P}]"])
_CJK = r"|".join([
    r"[\x{4E00}-\x{9FFF}]", r"[\x{3400}-\x{4DBF}]", r"[\x{20000}-\x{2A6DF}]",
    r"[\x{2A700}-\x{2B73F}]", r"[\x{2B740}-\x{2B81F}]", r"[\x{2B820}-\x{2CEAF}]",
    r"[\x{F900}-\x{FAFF}]", r"[\x{2F800}-\x{2FA1F}]",
])


# ---------------------------------------------------------------------------
# The reader
# ---------------------------------------------------------------------------
class SquadExamples:
    """The questions of a SQuAD v1.1 file, one entry per question (parallel lists).

    Attributes:
        ids, titles, questions, contexts: lists of str.
        answers: per question, the texts of its answers whose
            `answer_start` matches the context (at least one).
        answer_starts: per question, the character offsets of those answers.
        references: per question, every answer text of the file (what
            `kt.metrics.squad_v1` compares a prediction with).
        skipped: ids of the questions skipped (no answer matches its offset).
        misaligned: the number of answers dropped because their
            `answer_start` does not point at their text.

    `len(examples)` is the number of questions kept; `examples[i]` is a dict.
    """

    def __init__(self, ids, titles, questions, contexts, answers, answer_starts, references,
                 skipped=(), misaligned=0, path=None):
        self.ids = list(ids)
        self.titles = list(titles)
        self.questions = list(questions)
        self.contexts = list(contexts)
        self.answers = [list(a) for a in answers]
        self.answer_starts = [list(s) for s in answer_starts]
        self.references = [list(r) for r in references]
        self.skipped = list(skipped)
        self.misaligned = int(misaligned)
        self.path = path

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            pick = range(len(self))[i]
            return SquadExamples(
                *[[column[j] for j in pick] for column in (
                    self.ids, self.titles, self.questions, self.contexts, self.answers,
                    self.answer_starts, self.references)],
                skipped=self.skipped, misaligned=self.misaligned, path=self.path,
            )
        return {
            "id": self.ids[i], "title": self.titles[i], "question": self.questions[i],
            "context": self.contexts[i], "answers": self.answers[i],
            "answer_starts": self.answer_starts[i], "references": self.references[i],
        }

    def __repr__(self):
        return (f"SquadExamples({len(self)} questions, {len(set(self.contexts))} contexts, "
                f"{len(self.skipped)} skipped)")

    def head(self, n):
        """The first `n` questions (a `SquadExamples`)."""
        return self[:n]

    def answer_spans(self):
        """`(starts, ends)`: int32 character offsets of each question's first answer."""
        starts = np.array([s[0] for s in self.answer_starts], dtype=np.int32)
        ends = starts + np.array([len(a[0]) for a in self.answers], dtype=np.int32)
        return starts, ends

    def to_dataset(self):
        """A `tf.data.Dataset` of one dict per question (see `from_squad`)."""
        starts, ends = self.answer_spans()
        return tf.data.Dataset.from_tensor_slices({
            "id": _strings(self.ids),
            "question": _strings(self.questions),
            "context": _strings(self.contexts),
            "answer_text": _strings([a[0] for a in self.answers]),
            "answer_start": starts,
            "answer_end": ends,
        })


def _strings(values):
    return tf.constant(list(values), dtype=tf.string, shape=[len(values)])


def _field(record, key, kind, where, path):
    if not isinstance(record, dict) or key not in record:
        raise ValueError(
            f"{path}: {where} has no {key!r} field. A SQuAD v1.1 file is "
            '{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", '
            '"answers": [{"text", "answer_start"}]}]}]}]}.'
        )
    value = record[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(
            f"{path}: {where}[{key!r}] must be a {names}; it is {type(value).__name__}."
        )
    return value


def read_squad(path, warn=True):
    """Read a SQuAD v1.1 JSON file: one entry per question.

    Every answer must satisfy `context[answer_start : answer_start +
    len(text)] == text`. Answers that do not are dropped (counted in
    `misaligned`); a question with no answer left is skipped (its id in
    `skipped`) and, with `warn`, a warning names the skipped ids and their
    count. Answer texts all stay in `references` for scoring.

    Args:
        path: a SQuAD v1.1 JSON file (`{"data": [{"paragraphs": [{"context",
            "qas": [...]}]}]}`), e.g. SQuAD, XQuAD or CMRC 2018.
        warn: warn about skipped questions.

    Returns:
        A `SquadExamples` (parallel lists: `ids`, `questions`, `contexts`,
        `answers`, `answer_starts`, `references`, ...).

    Example:

    ```python
    import json
    import ktransfer as kt
    paragraph = {"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?",
         "answers": [{"text": "France", "answer_start": 12}]}]}
    with open("train.json", "w") as f:
        json.dump({"version": "1.1", "data": [{"title": "t", "paragraphs": [paragraph]}]}, f)
    examples = kt.data.read_squad("train.json")
    examples.questions[0], examples.answers[0]   # ('Where is Paris?', ['France'])
    ```
    """
    path, content = read_text_file(path, expected="a SQuAD v1.1 JSON object")
    try:
        document = json.loads(content)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); a SQuAD v1.1 file is one JSON object "
            '{"data": [...], "version": "1.1"}.'
        ) from None
    articles = _field(document, "data", list, "the file", path)
    ids, titles, questions, contexts, answers, starts, references = ([] for _ in range(7))
    skipped, misaligned, seen = [], 0, set()
    for a, article in enumerate(articles):
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, paragraph in enumerate(_field(article, "paragraphs", list, f"data[{a}]", path)):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, where, path)
            for q, qa in enumerate(_field(paragraph, "qas", list, where, path)):
                at = f"{where}.qas[{q}]"
                qid = str(_field(qa, "id", (str, int), at, path))
                if qid in seen:
                    raise ValueError(f"{path}: {at} repeats the id {qid!r}; ids must be unique.")
                seen.add(qid)
                question = _field(qa, "question", str, at, path)
                texts, offsets, all_texts = [], [], []
                for n, answer in enumerate(_field(qa, "answers", list, at, path)):
                    text = _field(answer, "text", str, f"{at}.answers[{n}]", path)
                    start = _field(answer, "answer_start", (int, str), f"{at}.answers[{n}]", path)
                    all_texts.append(text)
                    try:
                        start = int(start)
                    except ValueError:
                        start = -1
                    if text and 0 <= start and context[start:start + len(text)] == text:
                        texts.append(text)
                        offsets.append(start)
                    else:
                        misaligned += 1
                if not texts:
                    skipped.append(qid)
                    continue
                ids.append(qid)
                titles.append(str(title))
                questions.append(question)
                contexts.append(context)
                answers.append(texts)
                starts.append(offsets)
                references.append(all_texts)
    if warn and skipped:
        shown = ", ".join(repr(i) for i in skipped[:WARN_IDS])
        more = f" and {len(skipped) - WARN_IDS} more" if len(skipped) > WARN_IDS else ""
        warnings.warn(
            f"{path}: skipped {len(skipped)} of {len(skipped) + len(ids)} questions whose "
            f"answers do not match their answer_start (context[answer_start:][:len(text)] "
            f"!= text): ids {shown}{more}.",
            stacklevel=2,
        )
    return SquadExamples(ids, titles, questions, contexts, answers, starts, references,
                         skipped=skipped, misaligned=misaligned, path=path)


def from_squad(path, warn=True):
    """A SQuAD v1.1 JSON file as a `tf.data.Dataset`, one element per question.

    Each element is a dict of scalars: `id`, `question`, `context`,
    `answer_text` (the first answer whose offset matches), `answer_start`
    and `answer_end` (int32 character offsets into `context`, end
    exclusive). `kt.tasks.QuestionAnswerer.fit` trains on it directly.
    Questions whose answers do not match their `answer_start` are skipped
    and counted (see `read_squad`); the dataset carries `num_examples` and
    `skipped` (the skipped ids) as attributes.

    Example:

    ```python
    import json
    import ktransfer as kt
    paragraph = {"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?",
         "answers": [{"text": "France", "answer_start": 12}]}]}
    with open("train.json", "w") as f:
        json.dump({"version": "1.1", "data": [{"title": "t", "paragraphs": [paragraph]}]}, f)
    dataset = kt.data.from_squad("train.json")
    next(iter(dataset))["answer_end"]   # 18: "France" is context[12:18]
    # qa.fit(dataset, batch_size=16, epochs=1) trains a kt.tasks.QuestionAnswerer on it
    ```
    """
    examples = read_squad(path, warn=False)
    if warn and examples.skipped:
        shown = ", ".join(repr(i) for i in examples.skipped[:WARN_IDS])
        extra = len(examples.skipped) - WARN_IDS
        more = f" and {extra} more" if extra > 0 else ""
        warnings.warn(
            f"{examples.path}: skipped {len(examples.skipped)} of "
            f"{len(examples.skipped) + len(examples)} questions whose answers do not match "
            f"their answer_start: ids {shown}{more}.",
            stacklevel=2,
        )
    dataset = examples.to_dataset()
    dataset.num_examples = len(examples)
    dataset.skipped = list(examples.skipped)
    return dataset


# ---------------------------------------------------------------------------
# Tokens with character offsets
# ---------------------------------------------------------------------------
def _byte_to_char_offsets(texts, starts, ends):
    """Byte offsets (ragged `[batch, (tokens)]`) -> character offsets, int32."""
    _, char_bytes = tf.strings.unicode_decode_with_offsets(texts, "UTF-8", errors="replace")
    total = tf.cast(tf.strings.length(texts), tf.int64)[:, None]
    bounds = tf.concat([char_bytes, tf.RaggedTensor.from_tensor(total)], axis=1)
    big = tf.constant(np.iinfo(np.int64).max, tf.int64)
    dense = bounds.to_tensor(default_value=big)
    lengths = starts.row_lengths()
    # A token starts in the character holding its first byte, and ends (exclusive)
    # before the character that starts at or after its last byte.
    s = tf.searchsorted(dense, tf.cast(starts.to_tensor(), tf.int64), side="right") - 1
    e = tf.searchsorted(dense, tf.cast(ends.to_tensor(), tf.int64), side="left")
    s = tf.RaggedTensor.from_tensor(tf.cast(s, tf.int32), lengths=lengths)
    e = tf.RaggedTensor.from_tensor(tf.cast(e, tf.int32), lengths=lengths)
    return s, e


@keras.saving.register_keras_serializable(package="ktransfer")
class OffsetTokenizer(keras.layers.Layer):
    """A KerasHub tokenizer that also gives each token's character span.

    `call(texts)` on a 1-D `tf.string` tensor returns `(token_ids, starts,
    ends)`, three `tf.RaggedTensor`s `[batch, (tokens)]` of int32: the same
    ids as the wrapped tokenizer gives (without special tokens), and each
    token's `[start, end)` character offsets in its text (Python `str`
    indices). Only `tensorflow_text` ops run, in the graph.

    - WordPiece (`keras_hub.tokenizers.WordPieceTokenizer`, e.g. BERT and
      MiniLM's `BertTokenizer`): words are split as KerasHub splits them
      (whitespace, punctuation, CJK characters) with their offsets, then
      normalised (accents stripped, case folded) and cut into pieces with
      `tf_text.FastWordpieceTokenizer.tokenize_with_offsets`. When
      normalisation changes a word's length in bytes (an accented word),
      its pieces' inner boundaries are approximate; the word's first piece
      starts, and its last piece ends, exactly at the word's boundaries.
    - SentencePiece (`keras_hub.tokenizers.SentencePieceTokenizer`, and
      `XLMRobertaTokenizer` with its id shift, as multilingual-e5 uses):
      `tf_text.SentencepieceTokenizer.tokenize_with_offsets`, whose offsets
      follow SentencePiece's own normalisation.

    Args:
        tokenizer: the KerasHub tokenizer (`encoder.preprocessor.tokenizer`).

    Example:

    ```python
    import tensorflow as tf, ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", pooling=None)
    tokenize = kt.data.OffsetTokenizer(encoder.preprocessor.tokenizer)
    ids, starts, ends = tokenize(tf.constant(["Where is Paris?"]))
    starts.to_list(), ends.to_list()   # ([[0, 6, 9, 14]], [[5, 8, 14, 15]])
    ```
    """

    def __init__(self, tokenizer, **kwargs):
        super().__init__(**kwargs)
        import keras_hub

        if isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
            self.kind = "wordpiece"
            if not getattr(tokenizer, "split", True):
                raise ValueError(
                    "OffsetTokenizer needs a WordPieceTokenizer that splits words itself "
                    "(split=True, as BERT's does); this one has split=False."
                )
        elif isinstance(tokenizer, keras_hub.tokenizers.SentencePieceTokenizer):
            self.kind = "sentencepiece"
        else:
            raise TypeError(
                "OffsetTokenizer wraps a KerasHub WordPieceTokenizer (BERT, MiniLM) or "
                "SentencePieceTokenizer (XLM-R, multilingual-e5), e.g. "
                f"`encoder.preprocessor.tokenizer`. Received: {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer
        self._xlm_roberta = type(tokenizer).__name__ == "XLMRobertaTokenizer"
        self._fast = None
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    def ready(self):
        """Build the tensorflow_text tokenizer now (call it eagerly, outside tf.data).

        The wrapped tokenizer gets its vocabulary after construction when a
        `.keras` file is loaded, so the ops are made on first use; tasks call
        this before they trace a pipeline or a served graph.
        """
        if self._fast is not None:
            return self
        if tf_text is None:  # pragma: no cover
            raise ImportError(
                "OffsetTokenizer needs tensorflow_text (pip install tensorflow-text)."
            )
        tokenizer = self.tokenizer
        if self.kind == "wordpiece":
            vocabulary = tokenizer.get_vocabulary()
            self._fast = tf_text.FastWordpieceTokenizer(
                vocab=list(vocabulary), suffix_indicator=tokenizer.suffix_indicator,
                unknown_token=tokenizer.oov_token, no_pretokenization=True,
                support_detokenization=False, token_out_type=tf.int32,
            )
        else:
            proto = getattr(tokenizer, "proto", None)
            if proto is None:
                raise ValueError("The SentencePiece tokenizer has no model (`proto`) yet.")
            self._fast = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)
        return self

    @property
    def start_token_id(self):
        return int(self.tokenizer.start_token_id)

    @property
    def end_token_id(self):
        return int(self.tokenizer.end_token_id)

    @property
    def pad_token_id(self):
        return int(self.tokenizer.pad_token_id)

    def call(self, texts):
        self.ready()
        texts = tf.convert_to_tensor(texts)
        if texts.dtype != tf.string or texts.shape.rank != 1:
            raise ValueError(
                f"OffsetTokenizer takes a 1-D tf.string tensor of texts. Received: {texts}"
            )
        if self.kind == "wordpiece":
            ids, starts, ends = self._wordpiece(texts)
        else:
            ids, starts, ends = self._sentencepiece(texts)
        starts, ends = _byte_to_char_offsets(texts, starts, ends)
        if self.kind == "wordpiece":
            # Inner piece boundaries of a word whose normalised form has other
            # bytes are estimates: keep the spans in order, never overlapping.
            flat_starts, flat_ends = starts.flat_values, ends.flat_values
            previous = tf.concat([tf.zeros([1], flat_ends.dtype), flat_ends[:-1]], 0)
            previous = previous[: tf.size(flat_ends)]
            position = tf.range(tf.size(flat_starts, out_type=tf.int64)) - tf.gather(
                starts.row_starts(), starts.value_rowids())
            previous = tf.where(position > 0, previous, 0)
            flat_starts = tf.maximum(flat_starts, previous)
            flat_ends = tf.maximum(flat_ends, flat_starts)
            starts, ends = starts.with_flat_values(flat_starts), ends.with_flat_values(flat_ends)
        return ids, starts, ends

    def _wordpiece(self, texts):
        tokenizer = self.tokenizer
        split = [_WHITESPACE, _PUNCTUATION] + ([_CJK] if tokenizer.split_on_cjk else [])
        keep = [_PUNCTUATION] + ([_CJK] if tokenizer.split_on_cjk else [])
        words, word_starts, word_ends = tf_text.regex_split_with_offsets(
            texts, "|".join(split), "|".join(keep)
        )
        flat = words.flat_values
        normal = flat
        if tokenizer.strip_accents:
            normal = tf.strings.regex_replace(tf_text.normalize_utf8(normal, "NFD"), r"\p{Mn}", "")
        if tokenizer.lowercase:
            normal = tf_text.case_fold_utf8(normal)
        ids, piece_starts, piece_ends = self._fast.tokenize_with_offsets(normal)
        # ids: [words, (pieces)]; offsets within the normalised word.
        word_begin = tf.cast(word_starts.flat_values, tf.int64)
        word_end = tf.cast(word_ends.flat_values, tf.int64)
        exact = tf.equal(tf.strings.length(normal), tf.strings.length(flat))
        rows = ids.value_rowids()
        begin = tf.gather(word_begin, rows)
        end = tf.gather(word_end, rows)
        starts = tf.minimum(begin + tf.cast(piece_starts.flat_values, tf.int64), end)
        ends = tf.minimum(begin + tf.cast(piece_ends.flat_values, tf.int64), end)
        piece_index = tf.range(tf.size(rows, out_type=tf.int64)) - tf.gather(ids.row_starts(), rows)
        first = tf.equal(piece_index, 0)
        last = tf.equal(piece_index, tf.gather(ids.row_lengths(), rows) - 1)
        approximate = tf.logical_not(tf.gather(exact, rows))
        starts = tf.where(approximate & first, begin, starts)
        ends = tf.where(approximate & last, end, ends)
        ends = tf.maximum(ends, starts)
        token_ids = words.with_flat_values(ids).merge_dims(1, 2)
        starts = words.with_flat_values(ids.with_flat_values(starts)).merge_dims(1, 2)
        ends = words.with_flat_values(ids.with_flat_values(ends)).merge_dims(1, 2)
        return token_ids, starts, ends

    def _sentencepiece(self, texts):
        ids, starts, ends = self._fast.tokenize_with_offsets(texts)
        if self._xlm_roberta:
            # XLMRobertaTokenizer's ids: SentencePiece id + 1, with <unk> (0) at 3.
            ids = tf.ragged.map_flat_values(
                lambda t: tf.where(tf.equal(t, 0), 3, t + 1), ids
            )
        return ids, starts, ends

    def get_config(self):
        config = super().get_config()
        config["tokenizer"] = keras.saving.serialize_keras_object(self.tokenizer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


# ---------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------
def check_window_sizes(sequence_length, doc_stride, max_question_length):
    """Validate the window sizes; raise a `ValueError` that says what fits.

    A window holds `[CLS] question [SEP] context [SEP]`: at least one context
    token must fit next to the longest question, and neighbouring windows
    share `doc_stride` context tokens, so `doc_stride` must be smaller than
    the context room `sequence_length - max_question_length - 3`.
    """
    for name, value in (("sequence_length", sequence_length), ("doc_stride", doc_stride),
                        ("max_question_length", max_question_length)):
        least = 0 if name == "doc_stride" else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"`{name}` must be a positive int. Received: {value!r}")
    room = sequence_length - max_question_length - 3
    if room < 1:
        raise ValueError(
            f"sequence_length={sequence_length} leaves no room for context next to a question "
            f"of max_question_length={max_question_length} tokens ([CLS] q [SEP] c [SEP]): "
            f"use max_question_length <= {sequence_length - 4} or a longer sequence_length."
        )
    if doc_stride >= room:
        raise ValueError(
            f"doc_stride={doc_stride} must be smaller than the context room of a window, "
            f"sequence_length - max_question_length - 3 = {room} (windows share doc_stride "
            f"context tokens): use doc_stride <= {room - 1}."
        )


def squad_windows(question_ids, context_ids, context_starts, context_ends, sequence_length,
                  doc_stride, max_question_length, start_id, end_id, pad_id, context_segment=1,
                  answer_starts=None, answer_ends=None):
    """Cut tokenised (question, context) pairs into fixed-length windows.

    Each window is `[CLS] question [SEP] context[o : o + n] [SEP]` padded to
    `sequence_length`: the question cut to `max_question_length` tokens, `n =
    sequence_length - 3 - len(question)` context tokens (fewer in the last
    window), and neighbouring windows sharing `doc_stride` tokens (window k
    starts at `o = k * (n - doc_stride)`), as Hugging Face's tokenizers do
    with `stride=doc_stride` in `run_qa.py`. Every example gets at least one
    window (an empty context gives one with no context token).

    Args:
        question_ids, context_ids: int32 `tf.RaggedTensor`s `[batch, (tokens)]`.
        context_starts, context_ends: character offsets of the context tokens
            (from `OffsetTokenizer`), same shape.
        sequence_length, doc_stride, max_question_length: window sizes
            (`check_window_sizes`).
        start_id, end_id, pad_id: the [CLS], [SEP] and [PAD] ids.
        context_segment: the segment id of the context (1 for BERT; 0 for
            XLM-R-style tokenizers, which have one segment).
        answer_starts, answer_ends: optional int32 `[batch]` character offsets
            of the answer (end exclusive) for training targets.

    Returns:
        A dict: `token_ids`, `segment_ids`, `padding_mask` (int32 `[windows,
        sequence_length]`), `example_index` (int32 `[windows]`: the example
        each window comes from, ascending), `token_start` / `token_end` (int32
        `[windows, sequence_length]`: character offsets of context tokens, -1
        elsewhere), and with answers `start_positions` / `end_positions`
        (int32 `[windows]`: the answer's first and last token, or 0 ([CLS])
        when the window does not hold the whole answer).
    """
    L = int(sequence_length)
    q = question_ids[:, :max_question_length]
    q_len = tf.cast(q.row_lengths(), tf.int32)
    c_len = tf.cast(context_ids.row_lengths(), tf.int32)
    batch = tf.shape(q_len)[0]
    room = L - 3 - q_len
    step = room - doc_stride
    extra = tf.maximum(c_len - room, 0)
    num_windows = 1 + (extra + step - 1) // step
    example = tf.repeat(tf.range(batch, dtype=tf.int32), num_windows)
    within = tf.ragged.range(num_windows).flat_values
    offset = within * tf.gather(step, example)
    w_qlen = tf.gather(q_len, example)
    w_clen = tf.minimum(tf.gather(room, example), tf.gather(c_len, example) - offset)
    j = tf.range(L, dtype=tf.int32)[None, :]
    is_question = (j >= 1) & (j <= w_qlen[:, None])
    context_begin = w_qlen[:, None] + 2
    context_pos = j - context_begin
    is_context = (context_pos >= 0) & (context_pos < w_clen[:, None])
    first_end = j == w_qlen[:, None] + 1
    last_end = j == context_begin + w_clen[:, None]
    num = tf.shape(example)[0]
    q_dense = tf.pad(q.to_tensor(default_value=pad_id), [[0, 0], [0, 1]], constant_values=pad_id)
    q_index = tf.broadcast_to(tf.clip_by_value(j - 1, 0, tf.shape(q_dense)[1] - 1), [num, L])
    q_tokens = tf.gather(tf.gather(q_dense, example), q_index, batch_dims=1)
    width = tf.reduce_max(tf.concat([c_len, [0]], 0)) + 1
    c_index = tf.clip_by_value(offset[:, None] + context_pos, 0, width - 1)

    def context_values(values, default):
        dense = values.to_tensor(default_value=default)
        dense = tf.pad(dense, [[0, 0], [0, width - tf.shape(dense)[1]]], constant_values=default)
        return tf.gather(tf.gather(dense, example), c_index, batch_dims=1)

    c_tokens = context_values(tf.cast(context_ids, tf.int32), pad_id)
    token_ids = tf.where(
        j == 0, start_id,
        tf.where(is_question, q_tokens,
                 tf.where(first_end | last_end, end_id, tf.where(is_context, c_tokens, pad_id))),
    )
    token_ids = tf.cast(token_ids, tf.int32)
    padding_mask = tf.cast(j <= context_begin + w_clen[:, None], tf.int32)
    segment_ids = tf.cast(is_context | last_end, tf.int32) * int(context_segment)
    token_start = tf.where(is_context, context_values(tf.cast(context_starts, tf.int32), -1), -1)
    token_end = tf.where(is_context, context_values(tf.cast(context_ends, tf.int32), -1), -1)
    windows = {
        "token_ids": token_ids,
        "segment_ids": segment_ids,
        "padding_mask": padding_mask,
        "example_index": example,
        "token_start": token_start,
        "token_end": token_end,
    }
    if answer_starts is not None:
        a_start = tf.gather(tf.cast(answer_starts, tf.int32), example)[:, None]
        a_end = tf.gather(tf.cast(answer_ends, tf.int32), example)[:, None]
        big = tf.int32.max
        first_char = tf.reduce_min(tf.where(is_context, token_start, big), axis=1, keepdims=True)
        last_char = tf.reduce_max(tf.where(is_context, token_end, -1), axis=1, keepdims=True)
        inside = (w_clen[:, None] > 0) & (first_char <= a_start) & (last_char >= a_end)
        start_position = tf.reduce_max(
            tf.where(is_context & (token_start <= a_start), j, -1), axis=1)
        end_position = tf.reduce_min(tf.where(is_context & (token_end >= a_end), j, big), axis=1)
        inside = (inside[:, 0] & (start_position >= 0) & (end_position < big)
                  & (end_position >= start_position))
        windows["start_positions"] = tf.where(inside, start_position, 0)
        windows["end_positions"] = tf.where(inside, end_position, 0)
    return windows


MODEL_FEATURES = ("token_ids", "segment_ids", "padding_mask")


@keras.saving.register_keras_serializable(package="ktransfer")
class QuestionAnsweringPreprocessor(keras.layers.Layer):
    """(question, context) strings -> windows of model features with character offsets.

    `call(questions, contexts, answer_start=None, answer_end=None)` (or
    `call(x=(questions, contexts))`) tokenises
    with `OffsetTokenizer` and cuts windows with `squad_windows`; see there
    for the dict it returns. The task trains on `features(windows)` (the
    `token_ids`, `segment_ids`, `padding_mask` the encoder takes) and the
    answer positions, and searches spans with the offsets.

    Args:
        tokenizer: the encoder's KerasHub tokenizer
            (`encoder.preprocessor.tokenizer`).
        sequence_length: tokens per window (default 384).
        doc_stride: context tokens shared by neighbouring windows (128).
        max_question_length: question tokens kept (64).

    Example:

    ```python
    import tensorflow as tf, ktransfer as kt
    encoder = kt.encoders.BertEncoder.from_preset("minilm", sequence_length=384, pooling=None)
    windows = kt.data.QuestionAnsweringPreprocessor(encoder.preprocessor.tokenizer)(
        tf.constant(["Where is Paris?"]), tf.constant(["Paris is in France."]))
    windows["token_ids"].shape, windows["token_start"][0, :12]   # (1, 384), [-1 ... 0, 6, ...]
    ```
    """

    def __init__(self, tokenizer, sequence_length=DEFAULT_SEQUENCE_LENGTH,
                 doc_stride=DEFAULT_DOC_STRIDE, max_question_length=DEFAULT_MAX_QUESTION_LENGTH,
                 **kwargs):
        super().__init__(**kwargs)
        check_window_sizes(sequence_length, doc_stride, max_question_length)
        if not isinstance(tokenizer, OffsetTokenizer):
            tokenizer = OffsetTokenizer(tokenizer)
        self.offset_tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.doc_stride = int(doc_stride)
        self.max_question_length = int(max_question_length)
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    @property
    def tokenizer(self):
        return self.offset_tokenizer.tokenizer

    @property
    def context_segment(self):
        # BERT tells question and context apart with segment ids; XLM-R-style
        # (SentencePiece) tokenizers have one segment.
        return 1 if self.offset_tokenizer.kind == "wordpiece" else 0

    def ready(self):
        """Build the tokenizer ops now (eagerly); returns self."""
        self.offset_tokenizer.ready()
        return self

    def call(self, x, context=None, answer_start=None, answer_end=None):
        # `x` holds the questions, or the pair `(questions, contexts)` (how
        # `kt.tasks.serving.preprocess_texts` passes a text pair).
        if context is None:
            if not (isinstance(x, (tuple, list)) and len(x) == 2):
                raise ValueError(
                    "QuestionAnsweringPreprocessor takes questions and contexts: "
                    "preprocessor(questions, contexts) or preprocessor(x=(questions, contexts))."
                )
            x, context = x
        question = tf.convert_to_tensor(x, tf.string)
        context = tf.convert_to_tensor(context, tf.string)
        q_ids, _, _ = self.offset_tokenizer(question)
        c_ids, c_starts, c_ends = self.offset_tokenizer(context)
        tokenizer = self.offset_tokenizer
        return squad_windows(
            q_ids, c_ids, c_starts, c_ends, self.sequence_length, self.doc_stride,
            self.max_question_length, tokenizer.start_token_id, tokenizer.end_token_id,
            tokenizer.pad_token_id, context_segment=self.context_segment,
            answer_starts=answer_start, answer_ends=answer_end,
        )

    def get_config(self):
        config = super().get_config()
        config.update({
            "tokenizer": keras.saving.serialize_keras_object(self.offset_tokenizer.tokenizer),
            "sequence_length": self.sequence_length,
            "doc_stride": self.doc_stride,
            "max_question_length": self.max_question_length,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


def features(windows):
    """The encoder's inputs (`token_ids`, `segment_ids`, `padding_mask`) of a windows dict."""
    return {key: windows[key] for key in MODEL_FEATURES}


__all__ = [
    "DEFAULT_DOC_STRIDE",
    "DEFAULT_MAX_QUESTION_LENGTH",
    "DEFAULT_SEQUENCE_LENGTH",
    "OffsetTokenizer",
    "QuestionAnsweringPreprocessor",
    "SquadExamples",
    "check_window_sizes",
    "features",
    "from_squad",
    "read_squad",
    "squad_windows",
]
