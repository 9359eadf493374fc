"""`QuestionAnswerer`: extractive question answering (SQuAD), raw (question, context) strings in.

A BERT encoder with per-token output (`pooling=None`) and a
`kt.heads.SpanHead`. Contexts are cut into windows of `sequence_length`
tokens that share `doc_stride` tokens (`kt.data.squad_windows`, Hugging
Face's `run_qa.py` recipe: 384 / 128, questions cut to 64 tokens); windows
are batched by length in training; answers are found with
`kt.heads.span_search` (n-best 20 starts x 20 ends per window, at most 30
tokens, the best across windows, as Hugging Face's `utils_qa.py`). The
export does all of it in the graph.

```python
# not run: trains on a SQuAD file (../shared/data/squad_train_head/train.json)
import ktransfer as kt
qa = kt.tasks.QuestionAnswerer.from_preset("minilm", sequence_length=384, doc_stride=128)
qa.compile()
qa.fit(kt.data.from_squad("train.json"), batch_size=16, epochs=1)
qa.predict(["Where is the Eiffel Tower?"], ["The Eiffel Tower is in Paris."])
# [{"answer": "Paris", "score": 0.93, "start": 23, "end": 28}]
qa.export("saved_models/qa/1")   # serving_default(question, context) -> answer, score, start, end
```
"""

import numbers

import numpy as np

from ktransfer._keras import keras

import tensorflow as tf

from ktransfer.data.pipeline import COARSE_BUCKET_STEP
from ktransfer.data.pipeline import batch_examples
from ktransfer.data.pipeline import bucket_boundaries
from ktransfer.data.pipeline import token_lengths
from ktransfer.data.pipeline import trim_to_bucket
from ktransfer.data.squad import DEFAULT_DOC_STRIDE
from ktransfer.data.squad import DEFAULT_MAX_QUESTION_LENGTH
from ktransfer.data.squad import DEFAULT_SEQUENCE_LENGTH
from ktransfer.data.squad import QuestionAnsweringPreprocessor
from ktransfer.data.squad import SquadExamples
from ktransfer.data.squad import features as window_features
from ktransfer.encoders.base import Encoder
from ktransfer.heads.span_head import DEFAULT_MAX_ANSWER_LENGTH
from ktransfer.heads.span_head import DEFAULT_N_BEST
from ktransfer.heads.span_head import MASKED_LOGIT
from ktransfer.heads.span_head import SpanHead
from ktransfer.heads.span_head import answer_text
from ktransfer.heads.span_head import span_search
from ktransfer.tasks.serving import SERVING_BUCKET_STEP
from ktransfer.tasks.serving import text_signature
from ktransfer.tasks.task import Task

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_BATCH_SIZE = 16
PREDICT_BATCH_SIZE = 32
# Examples tokenised and windowed per `map` call.
TOKENIZE_BATCH_SIZE = 256
# Length-sorted windows run through the model at most this many at a time (a
# served batch of long contexts would otherwise hold every window's attention
# at once).
WINDOW_CHUNK = 64
WINDOW_BATCHES = 32


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _texts(values, what):
    if isinstance(values, (str, bytes)):
        raise ValueError(f"`{what}` must be a list of texts; received one string {values[:40]!r}. "
                         "Wrap a single text in a list.")
    if isinstance(values, (tf.Tensor, tf.RaggedTensor)):
        values = values.numpy()
    out = []
    for i, value in enumerate(list(values)):
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, np.str_):
            value = str(value)
        if not isinstance(value, str):
            raise TypeError(
                f"`{what}[{i}]` is a {type(value).__name__} ({value!r:.60}), not a text."
            )
        out.append(value)
    return out


@tf.autograph.experimental.do_not_convert
def _add_one(count, _):
    return count + 1


def _count(dataset):
    return int(dataset.reduce(np.int64(0), _add_one))


def answer_spans(answers, contexts):
    """`(starts, ends)` int32 character offsets of answers in their contexts.

    Each answer is a text (found at its first occurrence in the context), a
    dict `{"text", "answer_start"}` (SQuAD's record; Hugging Face datasets'
    `{"text": [...], "answer_start": [...]}` takes the first), or a pair
    `(answer_start, text)`. An answer that is not in its context is a
    `ValueError` naming it.

    Example:

    ```python
    from ktransfer.tasks.question_answerer import answer_spans
    answer_spans(["Paris"], ["It is Paris."])   # (array([6]), array([11]))
    ```
    """
    if isinstance(answers, (str, bytes, dict)):
        raise ValueError("`y` must hold one answer per question (a list).")
    answers = list(answers)
    if len(answers) != len(contexts):
        raise ValueError(
            f"{len(contexts)} questions but {len(answers)} answers: give one answer per question."
        )
    starts = np.zeros([len(answers)], np.int32)
    ends = np.zeros([len(answers)], np.int32)
    for i, (answer, context) in enumerate(zip(answers, contexts)):
        start = None
        if isinstance(answer, dict):
            text, start = answer.get("text"), answer.get("answer_start")
            if isinstance(text, (list, tuple)):
                text, start = (text[0], start[0]) if text else (None, None)
        elif (isinstance(answer, (tuple, list)) and len(answer) == 2
              and isinstance(answer[0], numbers.Integral)):
            start, text = answer
        else:
            text = answer
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str) or not text:
            raise ValueError(
                f"Answer {i} is {answer!r:.80}: give its text (a non-empty str), a dict "
                '{"text", "answer_start"} or a pair (answer_start, text).'
            )
        if start is None:
            start = context.find(text)
            if start < 0:
                raise ValueError(
                    f"Answer {i} {text!r:.80} is not in its context "
                    f"(context[:80] = {context[:80]!r})."
                )
        start = int(start)
        if context[start:start + len(text)] != text:
            raise ValueError(
                f"Answer {i} {text!r:.80} is not at answer_start={start} of its context "
                f"(it holds {context[start:start + len(text)]!r:.80})."
            )
        starts[i], ends[i] = start, start + len(text)
    return starts, ends


@keras.saving.register_keras_serializable(package="ktransfer")
class QuestionAnswerer(Task):
    """Extractive question answering: the answer to a question is a span of its context.

    Args:
        encoder: a `kt.encoders.BertEncoder` with `pooling=None` (per-token
            outputs) whose preprocessor has the tokenizer and the window
            length (`sequence_length`); `from_preset` builds one.
        doc_stride: context tokens that neighbouring windows share (128).
        max_question_length: question tokens kept (64).
        max_answer_length: the longest answer, in tokens (30).
        n_best: start and end candidates per window (20).
        dropout: dropout of the span head (0).
        preprocessor: `"auto"` (a `kt.data.QuestionAnsweringPreprocessor`
            over the encoder's tokenizer) or one you built.

    Example:

    ```python
    import ktransfer as kt
    qa = kt.tasks.QuestionAnswerer.from_preset("minilm", sequence_length=384, doc_stride=128)
    qa.fit(x=(["Where is Paris?"], ["Paris is in France."]), y=["France"], epochs=1)
    qa.predict(["Where is Paris?"], ["Paris is in France."])
    # [{"answer": "France", "score": ..., "start": 12, "end": 18}] once trained
    ```
    """

    preset_pooling = None

    def __init__(self, encoder=None, doc_stride=DEFAULT_DOC_STRIDE,
                 max_question_length=DEFAULT_MAX_QUESTION_LENGTH,
                 max_answer_length=DEFAULT_MAX_ANSWER_LENGTH, n_best=DEFAULT_N_BEST, dropout=0.0,
                 preprocessor="auto", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, Encoder):
            raise TypeError(
                "`encoder` must be a kt.encoders.Encoder with per-token outputs, e.g. "
                "kt.encoders.BertEncoder.from_preset('minilm', sequence_length=384, pooling=None) "
                f"(or use QuestionAnswerer.from_preset). Received: {type(encoder).__name__}"
            )
        if getattr(encoder, "pooling", None) is not None:
            raise ValueError(
                f"QuestionAnswerer needs one vector per token: the encoder has pooling="
                f"{encoder.pooling!r}. Build it with pooling=None."
            )
        for name, value in (("max_answer_length", max_answer_length), ("n_best", n_best)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {value!r}")
        self.encoder = encoder
        self.head = SpanHead(dropout=dropout, name="span_head")
        self.head.build((None, None, encoder.output_dim))
        self.dropout = float(dropout)
        self.max_answer_length = int(max_answer_length)
        self.n_best = int(n_best)
        self._preprocessor_choice = "auto" if _is_auto(preprocessor) else "given"
        if _is_auto(preprocessor):
            base = getattr(encoder, "preprocessor", None)
            tokenizer = getattr(base, "tokenizer", None)
            sequence_length = getattr(base, "sequence_length", None)
            if tokenizer is None or not sequence_length:
                raise ValueError(
                    "The encoder has no KerasHub preprocessor with a tokenizer and a "
                    "sequence_length; pass "
                    "`preprocessor=kt.data.QuestionAnsweringPreprocessor(...)`."
                )
            preprocessor = QuestionAnsweringPreprocessor(
                tokenizer, sequence_length=sequence_length, doc_stride=doc_stride,
                max_question_length=max_question_length, name="qa_preprocessor",
            )
        elif not isinstance(preprocessor, QuestionAnsweringPreprocessor):
            raise TypeError(
                "`preprocessor` must be 'auto' or a kt.data.QuestionAnsweringPreprocessor. "
                f"Received: {type(preprocessor).__name__}"
            )
        self.preprocessor = preprocessor
        self._answer_function = None

    @classmethod
    def from_preset(cls, preset, sequence_length=DEFAULT_SEQUENCE_LENGTH,
                    doc_stride=DEFAULT_DOC_STRIDE, trainable=True, load_weights=True, **kwargs):
        """A question answerer over a pretrained BERT (`BertEncoder.from_preset`).

        Args:
            preset: what `kt.encoders.BertEncoder.from_preset` loads
                (`"minilm"`, a Hugging Face BERT folder, a KerasHub preset).
            sequence_length: tokens per window (384).
            doc_stride: tokens shared by neighbouring windows (128).
            trainable: True, False or an int k (the top k blocks train).
            load_weights: False builds the architecture with random weights.
            **kwargs: `max_question_length`, `max_answer_length`, `n_best`,
                `dropout` (see the class).
        """
        return super().from_preset(preset, sequence_length=sequence_length, trainable=trainable,
                                   pooling=None, load_weights=load_weights, doc_stride=doc_stride,
                                   **kwargs)

    # --- properties -------------------------------------------------------------
    @property
    def sequence_length(self):
        return self.preprocessor.sequence_length

    @property
    def doc_stride(self):
        return self.preprocessor.doc_stride

    @property
    def max_question_length(self):
        return self.preprocessor.max_question_length

    # --- forward ------------------------------------------------------------------
    def call(self, inputs, training=None):
        sequence = self.encoder(inputs, training=training)
        return self.head(sequence, padding_mask=inputs.get("padding_mask"), training=training)

    def bucket_boundaries(self):
        """Training length buckets: every 8 tokens up to 64, then 80, 96, 128, 192, 256, ...

        A window holds a question and a context, so few are short: the coarse
        step (`kt.data.pipeline.COARSE_BUCKET_STEP`) costs little padding and
        keeps the number of batch shapes (one traced train step each) small.
        """
        return bucket_boundaries(self.sequence_length, COARSE_BUCKET_STEP)

    def default_metrics(self):
        """Accuracy of the start and end tokens (each window, both boundaries)."""
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    # --- data ---------------------------------------------------------------------
    def _examples(self, x, y=None, contexts=None, labelled=True):
        """`(dataset, size, texts)`: unbatched {"question", "context"[, "answer_start", ...]}."""
        if contexts is not None:
            if isinstance(x, tuple) and len(x) == 2:
                raise ValueError(
                    "Pass (questions, contexts) as `x`, or questions and contexts, not both."
                )
            x = (x, contexts)
        if isinstance(x, SquadExamples):
            x = x.to_dataset()
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise ValueError(
                    "When `x` is a tf.data.Dataset its elements carry the answers: do not pass `y`."
                )
            spec = x.element_spec
            if not isinstance(spec, dict) or "question" not in spec or "context" not in spec:
                raise ValueError(
                    "A QuestionAnswerer dataset yields dicts with 'question' and 'context' (and, "
                    "to train, 'answer_start' with 'answer_end' or 'answer_text'), as "
                    f"kt.data.from_squad does. Received element_spec: {spec}"
                )
            if labelled and "answer_start" not in spec:
                raise ValueError(
                    "Training needs answers: the dataset's dicts have no 'answer_start' "
                    "(character offset of the answer in the context); see kt.data.from_squad."
                )
            if labelled and "answer_end" not in spec and "answer_text" not in spec:
                raise ValueError(
                    "The dataset's dicts need 'answer_end' or 'answer_text' beside 'answer_start'."
                )

            def pick(element):
                out = {"question": element["question"], "context": element["context"]}
                if labelled:
                    start = tf.cast(element["answer_start"], tf.int32)
                    if "answer_end" in element:
                        end = tf.cast(element["answer_end"], tf.int32)
                    else:
                        end = start + tf.strings.length(element["answer_text"], unit="UTF8_CHAR")
                    out.update(answer_start=start, answer_end=end)
                return out

            if spec["question"].shape.rank == 1:
                x = x.unbatch()
            count = int(x.cardinality())
            return x.map(pick), (count if count >= 0 else -1), None
        if isinstance(x, dict):
            x = (x.get("question"), x.get("context"))
        if not (isinstance(x, (tuple, list)) and len(x) == 2):
            raise TypeError(
                "Pass questions and contexts: `x=(questions, contexts)` (two lists of str), "
                "a kt.data.from_squad dataset, or kt.data.read_squad examples."
            )
        questions, contexts = _texts(x[0], "questions"), _texts(x[1], "contexts")
        if len(questions) != len(contexts):
            raise ValueError(
                f"{len(questions)} questions but {len(contexts)} contexts: give one context "
                "per question."
            )
        element = {"question": tf.constant(questions, tf.string, shape=[len(questions)]),
                   "context": tf.constant(contexts, tf.string, shape=[len(contexts)])}
        if labelled:
            if y is None:
                raise ValueError("Training needs answers: pass `y` (one answer text, or {'text', "
                                 "'answer_start'} dict, per question).")
            starts, ends = answer_spans(y, contexts)
            element.update(answer_start=starts, answer_end=ends)
        return tf.data.Dataset.from_tensor_slices(element), len(questions), (questions, contexts)

    def _windows(self, examples, labelled):
        preprocessor = self.preprocessor.ready()

        def window(batch):
            windows = preprocessor(batch["question"], batch["context"],
                                   batch.get("answer_start"), batch.get("answer_end"))
            inputs = window_features(windows)
            if labelled:
                targets = tf.stack([windows["start_positions"], windows["end_positions"]], axis=1)
                return inputs, targets
            return inputs

        dataset = examples.batch(TOKENIZE_BATCH_SIZE)
        dataset = dataset.map(tf.autograph.experimental.do_not_convert(window),
                              num_parallel_calls=AUTOTUNE, deterministic=True)
        return dataset.unbatch()

    def make_dataset(self, x, y=None, batch_size=DEFAULT_BATCH_SIZE, shuffle=False, seed=None,
                     sample_weight=None, labelled=True, cache=True):
        """(question, context[, answer]) examples -> batches of windows `(features, [start, end])`.

        Args:
            x: `(questions, contexts)` (lists of str), a `kt.data.from_squad`
                dataset (dicts with `question`, `context`, `answer_start`,
                `answer_end`), or `kt.data.read_squad` examples.
            y: with in-memory `x`, one answer per question (see `answer_spans`).
            batch_size: windows per batch.
            shuffle: shuffle the windows each epoch (then windows of similar
                length are batched together). A SQuAD file is ordered by
                article, so a `from_squad` dataset is shuffled too.
            seed: the shuffle seed.
            labelled: yield `(features, targets)` (True) or features.
            cache: keep the windows in memory after the first pass (their
                count is taken then, so Keras knows the steps per epoch).

        Returns:
            A `tf.data.Dataset` of `(features, targets)`: features the
            encoder's dict, targets int32 `[batch, 2]` (start, end token; 0
            where the window does not hold the answer).
        """
        if sample_weight is not None:
            raise ValueError("QuestionAnswerer does not take `sample_weight`.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
        examples, count, _ = self._examples(x, y, labelled=labelled)
        if count == 0:
            raise ValueError("No examples: give at least one question.")
        windows = self._windows(examples, labelled)
        num_windows = -1
        if cache and count > 0:
            windows = windows.cache()
            num_windows = _count(windows)
        dataset = batch_examples(
            windows, num_windows, batch_size, boundaries=self.bucket_boundaries(),
            shuffle=shuffle, seed=seed,
            shuffle_buffer=num_windows if num_windows > 0 else 10_000,
            window_batches=WINDOW_BATCHES,
        )
        return dataset.prefetch(AUTOTUNE)

    def count_windows(self, x):
        """How many windows `x` (questions and contexts, or a dataset) makes."""
        examples, _, _ = self._examples(x, labelled=False)
        return _count(self._windows(examples, False))

    @staticmethod
    def _is_examples(x):
        if isinstance(x, SquadExamples):
            return True
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            return isinstance(spec, dict) and "question" in spec and "context" in spec
        if isinstance(x, dict):
            return "question" in x and "context" in x
        return isinstance(x, (tuple, list)) and len(x) == 2 and not isinstance(x[0], (str, bytes))

    # --- training and evaluation -------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, validation_data=None, shuffle=True,
            seed=None, **kwargs):
        """Train on questions, contexts and answers.

        Args:
            x: `(questions, contexts)`, a `kt.data.from_squad` dataset, or
                `kt.data.read_squad` examples; prepared window batches go to
                Keras as they are.
            y: with `(questions, contexts)`: one answer per question, a text
                (its first occurrence in the context), `{"text",
                "answer_start"}`, or `(answer_start, text)`.
            batch_size: windows per batch (default 16).
            epochs: passes over the data.
            validation_data: like `x` (with its answers), or `((questions,
                contexts), answers)`.
            shuffle: shuffle windows each epoch (also a dataset's).
            seed: the shuffle seed.
            **kwargs: passed to `keras.Model.fit`.
        """
        if not self._is_examples(x):
            if isinstance(x, tf.data.Dataset):
                shuffle = False  # a prepared dataset keeps its order (make_dataset shuffles)
            return super().fit(x, y, batch_size=batch_size, epochs=epochs,
                               validation_data=validation_data, shuffle=shuffle, **kwargs)
        if not self.compiled:
            self.compile()
        train = self.make_dataset(x, y, batch_size=batch_size or DEFAULT_BATCH_SIZE,
                                  shuffle=shuffle, seed=seed)
        if validation_data is not None:
            validation_batch_size = kwargs.pop("validation_batch_size", None) or batch_size
            validation_data = self._validation(validation_data, validation_batch_size)
        return super().fit(train, epochs=epochs, validation_data=validation_data, shuffle=False,
                           **kwargs)

    def _validation(self, data, batch_size):
        if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], (tuple, list)) \
                and len(data[0]) == 2 and not isinstance(data[0][0], (str, bytes)):
            return self.make_dataset(data[0], data[1], batch_size=batch_size or DEFAULT_BATCH_SIZE)
        if self._is_examples(data):
            return self.make_dataset(data, batch_size=batch_size or DEFAULT_BATCH_SIZE)
        return data

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """Loss and boundary accuracy on questions, contexts and answers (see `fit`)."""
        if not self._is_examples(x):
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)
        if not self.compiled:
            self.compile()
        data = self.make_dataset(x, y, batch_size=batch_size or DEFAULT_BATCH_SIZE)
        return keras.Model.evaluate(self, data, **kwargs)

    # --- inference --------------------------------------------------------------------
    def window_logits(self, windows):
        """Span logits `[windows, 2, sequence_length]` of a windows dict, in length-sorted chunks.

        Windows are sorted by length and run `WINDOW_CHUNK` at a time, each
        chunk cut to the serving length bucket of its longest window
        (`SERVING_BUCKET_STEP`), then put back in order; positions past a
        chunk's length get `MASKED_LOGIT`.
        """
        inputs = window_features(windows)
        length = self.sequence_length
        boundaries = tf.constant(bucket_boundaries(length, SERVING_BUCKET_STEP), tf.int32)
        lengths = token_lengths(inputs)
        order = tf.argsort(lengths, stable=True)
        inputs = {key: tf.gather(value, order) for key, value in inputs.items()}
        total = tf.shape(order)[0]
        chunks = (total + WINDOW_CHUNK - 1) // WINDOW_CHUNK
        outputs = tf.TensorArray(tf.float32, size=chunks, infer_shape=False,
                                 element_shape=tf.TensorShape([None, 2, length]))

        def body(i, outputs):
            rows = slice(i * WINDOW_CHUNK, (i + 1) * WINDOW_CHUNK)
            part = {key: value[rows] for key, value in inputs.items()}
            part = trim_to_bucket(part, boundaries)
            logits = tf.cast(self(part, training=False), tf.float32)
            pad = length - tf.shape(logits)[2]
            logits = tf.pad(logits, [[0, 0], [0, 0], [0, pad]], constant_values=MASKED_LOGIT)
            return i + 1, outputs.write(i, tf.ensure_shape(logits, [None, 2, length]))

        def more(i, _):
            return i < chunks

        _, outputs = tf.while_loop(more, body, [tf.constant(0), outputs])
        logits = tf.cond(
            chunks > 0, outputs.concat, lambda: tf.zeros([0, 2, length], tf.float32)
        )
        return tf.gather(logits, tf.argsort(order, stable=True))

    @tf.autograph.experimental.do_not_convert
    def answer(self, question, context):
        """The served graph: 1-D string tensors -> `{"answer", "score", "start", "end"}` tensors."""
        question = tf.convert_to_tensor(question, tf.string)
        context = tf.convert_to_tensor(context, tf.string)
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.shape(question)[0], tf.shape(context)[0],
                message="`question` and `context` must hold the same number of texts")]):
            question = tf.identity(question)
        windows = self.preprocessor(question, context)
        logits = self.window_logits(windows)
        spans = span_search(
            logits, windows["token_start"], windows["token_end"], windows["example_index"],
            tf.shape(question)[0], n_best=self.n_best, max_answer_length=self.max_answer_length,
        )
        text, start, end = answer_text(context, spans["start"], spans["end"])
        return {"answer": text, "score": spans["score"], "start": start, "end": end}

    def _compiled_answer(self):
        if self._answer_function is None:
            self.preprocessor.ready()
            self._answer_function = tf.function(
                self.answer, input_signature=text_signature(("question", "context")),
                reduce_retracing=True,
            )
        return self._answer_function

    def predict(self, x, contexts=None, batch_size=None, **kwargs):
        """Answer questions about contexts.

        Args:
            x: the questions (a list of str) with `contexts`, or
                `(questions, contexts)`, a `kt.data.from_squad` dataset or
                `kt.data.read_squad` examples. Prepared window features go
                to Keras and give the span logits.
            contexts: one context per question.
            batch_size: questions per call (default 32).

        Returns:
            A list with one dict per question: `answer` (str), `score`
            (float, the probability of the answer among the example's 20
            best candidates), `start`, `end` (int character offsets in the
            context, end exclusive: `context[start:end] == answer`). An empty
            context gives `{"answer": "", "score": 0.0, "start": 0, "end": 0}`.
        """
        if contexts is None and not self._is_examples(x):
            return super().predict(x, batch_size=batch_size, **kwargs)
        questions, texts = self._questions_and_contexts(x, contexts)
        batch_size = batch_size or PREDICT_BATCH_SIZE
        answer = self._compiled_answer()
        results = []
        for i in range(0, len(questions), batch_size):
            out = answer(tf.constant(questions[i:i + batch_size], tf.string),
                         tf.constant(texts[i:i + batch_size], tf.string))
            out = {key: value.numpy() for key, value in out.items()}
            for j in range(len(out["start"])):
                results.append({
                    "answer": out["answer"][j].decode("utf-8"),
                    "score": float(out["score"][j]),
                    "start": int(out["start"][j]),
                    "end": int(out["end"][j]),
                })
        return results

    def _questions_and_contexts(self, x, contexts):
        if contexts is not None:
            x = (x, contexts)
        elif isinstance(x, SquadExamples):
            return list(x.questions), list(x.contexts)
        elif isinstance(x, tf.data.Dataset):
            questions, texts = [], []
            examples, _, _ = self._examples(x, labelled=False)
            for element in examples.batch(1024).as_numpy_iterator():
                questions.extend(q.decode("utf-8") for q in element["question"])
                texts.extend(c.decode("utf-8") for c in element["context"])
            return questions, texts
        if isinstance(x, dict):
            x = (x.get("question"), x.get("context"))
        questions, texts = _texts(x[0], "questions"), _texts(x[1], "contexts")
        if len(questions) != len(texts):
            raise ValueError(
                f"{len(questions)} questions but {len(texts)} contexts: give one context "
                "per question."
            )
        return questions, texts

    def score(self, examples, metric="squad_v1", batch_size=None):
        """Predict and score against references: `{"exact_match", "f1", "count"}` (percentages).

        Args:
            examples: `kt.data.read_squad` examples (a path is read with it).
            metric: `"squad_v1"` (the official SQuAD v1.1 EM / F1,
                `kt.metrics.squad_v1`) or `"cmrc"` (character-level, for
                Chinese, `kt.metrics.cmrc`).
            batch_size: questions per call.
        """
        from ktransfer import metrics
        from ktransfer.data.squad import read_squad

        if not isinstance(examples, SquadExamples):
            examples = read_squad(examples)
        if metric not in ("squad_v1", "cmrc"):
            raise ValueError(f"`metric` must be 'squad_v1' or 'cmrc'. Received: {metric!r}")
        predictions = self.predict(examples, batch_size=batch_size)
        score = metrics.squad_v1 if metric == "squad_v1" else metrics.cmrc
        return score([p["answer"] for p in predictions], examples.references)

    # --- export -------------------------------------------------------------------------
    def serving_signatures(self):
        """`serving_default`: `question`, `context` (1-D strings) -> answer, score, start, end.

        Tokenisation, windows, the model and the span search run in the
        graph (`answer`); `start` / `end` are int32 character offsets into
        `context`, `score` the answer's float32 probability.
        """
        self.preprocessor.ready()

        def serve(question, context):
            return self.answer(question, context)

        return {"serving_default": (serve, text_signature(("question", "context")))}

    # --- serialisation --------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update({
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "doc_stride": self.doc_stride,
            "max_question_length": self.max_question_length,
            "max_answer_length": self.max_answer_length,
            "n_best": self.n_best,
            "dropout": self.dropout,
        })
        if self._preprocessor_choice != "auto":
            config["preprocessor"] = keras.saving.serialize_keras_object(self.preprocessor)
        return config


__all__ = ["QuestionAnswerer", "answer_spans"]
