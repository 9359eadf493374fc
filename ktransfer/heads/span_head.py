"""`SpanHead`: start and end logits per token (extractive question answering), and the span search.

`SpanHead` maps per-token encoder outputs to two logits per token, the
answer's start and its end (BERT's SQuAD head: one dense layer, as Hugging
Face's `BertForQuestionAnswering` has). `span_search` turns the logits of
a batch of windows into one answer span per example, as Hugging Face's
`utils_qa.py` post-processes them: the `n_best` highest start and end
logits of each window, every valid pair (both in the context, end not
before start, at most `max_answer_length` tokens) scored `start + end`,
the best pair across all windows of the example, and a probability, the
softmax of the `n_best` best scores of the example.
"""

from ktransfer._keras import keras

import tensorflow as tf

DEFAULT_N_BEST = 20
DEFAULT_MAX_ANSWER_LENGTH = 30
# Logit given to padding positions (float32).
MASKED_LOGIT = -1e9


@keras.saving.register_keras_serializable(package="ktransfer")
class SpanHead(keras.layers.Layer):
    """Per-token encoder outputs `[batch, length, dim]` -> span logits `[batch, 2, length]`.

    Row 0 holds the start logits, row 1 the end logits, in float32 even
    under mixed precision; padding positions (`padding_mask` 0) get
    `MASKED_LOGIT`. Trained with `default_loss()` on targets `[batch, 2]`
    (the answer's start and end token; 0, the [CLS] token, when the window
    does not hold the answer), which is the mean of the start and end
    cross-entropies, Hugging Face's `(start_loss + end_loss) / 2`.

    Args:
        dropout: dropout on the token features before the dense layer
            (0 by default, as BERT's SQuAD head).

    Example:

    ```python
    import numpy as np, ktransfer as kt
    head = kt.heads.SpanHead()
    logits = head(np.zeros((2, 16, 384), "float32"))   # shape (2, 2, 16)
    loss = head.default_loss()   # sparse cross-entropy over the positions
    ```
    """

    def __init__(self, dropout=0.0, **kwargs):
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: {dropout!r}")
        super().__init__(**kwargs)
        self.dropout = float(dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout, name="dropout")
        self.output_dense = keras.layers.Dense(2, dtype="float32", name="span_logits")

    def build(self, inputs_shape, padding_mask_shape=None):
        input_shape = inputs_shape
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "SpanHead needs per-token inputs of shape [batch, length, features]. "
                f"Received shape: {input_shape}. Use an encoder with pooling=None."
            )
        self.output_dense.build(input_shape)
        self.built = True

    def call(self, inputs, padding_mask=None, training=None):
        logits = self.output_dense(self.dropout_layer(inputs, training=training))
        logits = keras.ops.transpose(keras.ops.cast(logits, "float32"), (0, 2, 1))
        if padding_mask is not None:
            mask = keras.ops.cast(padding_mask, "bool")[:, None, :]
            logits = keras.ops.where(mask, logits, MASKED_LOGIT)
        return logits

    def compute_output_shape(self, inputs_shape, padding_mask_shape=None):
        return (inputs_shape[0], 2, inputs_shape[1])

    def default_loss(self):
        """Sparse cross-entropy on logits, targets `[batch, 2]` (start, end token)."""
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def get_config(self):
        config = super().get_config()
        config["dropout"] = self.dropout
        return config


def span_search(logits, token_start, token_end, example_index, num_examples,
                n_best=DEFAULT_N_BEST, max_answer_length=DEFAULT_MAX_ANSWER_LENGTH):
    """The best answer span of each example from the span logits of its windows.

    Hugging Face's `utils_qa.postprocess_qa_predictions` in the graph: per
    window, the `n_best` highest start logits and `n_best` highest end
    logits among the context tokens; each pair whose end is not before its
    start and spans at most `max_answer_length` tokens is a candidate
    scored `start_logit + end_logit`; an example's answer is its best
    candidate over all its windows, and its probability the softmax of its
    `n_best` best candidates' scores (as `utils_qa.py` computes
    `probability`). (`utils_qa.py` takes the top logits over every
    position and then drops those outside the context; taking them among
    context tokens only can only find candidates at least as good.)

    Args:
        logits: float32 `[windows, 2, length]` (`SpanHead` outputs).
        token_start, token_end: int32 `[windows, length]` character offsets
            of context tokens, -1 elsewhere (`kt.data.squad_windows`).
        example_index: int32 `[windows]`, ascending: each window's example.
        num_examples: the number of examples (a scalar).
        n_best, max_answer_length: see above.

    Returns:
        A dict of `[num_examples]` tensors: `start`, `end` (int32 character
        offsets, end exclusive; 0 and 0 when an example has no candidate,
        e.g. an empty context), `score` (float32 probability; 0 when none)
        and `logit_score` (float32 `start + end` logit; -inf when none).

    Example:

    ```python
    import numpy as np
    import ktransfer as kt
    # One window of 8 positions: [CLS] q [SEP] + 4 context tokens at characters 0, 4, 9, 14.
    token_start = np.array([[-1, -1, -1, 0, 4, 9, 14, -1]], "int32")
    token_end = np.array([[-1, -1, -1, 3, 8, 13, 18, -1]], "int32")
    logits = np.zeros([1, 2, 8], "float32")
    logits[0, 0, 4] = logits[0, 1, 5] = 5.0          # start at token 4, end at token 5
    spans = kt.heads.span_search(logits, token_start, token_end, np.array([0], "int32"), 1)
    spans["start"].numpy(), spans["end"].numpy()      # (array([4]), array([13]))
    ```
    (In a task: `windows = preprocessor(questions, contexts)`, `logits =
    model(kt.data.squad.features(windows))`, then the windows' offsets.)
    """
    logits = tf.cast(logits, tf.float32)
    token_start = tf.cast(token_start, tf.int32)
    token_end = tf.cast(token_end, tf.int32)
    example_index = tf.cast(example_index, tf.int32)
    num_examples = tf.cast(num_examples, tf.int32)
    length = tf.shape(token_start)[1]
    logits = logits[:, :, :length]
    is_context = token_start >= 0
    ninf = tf.constant(float("-inf"), tf.float32)
    starts = tf.where(is_context, logits[:, 0], ninf)
    ends = tf.where(is_context, logits[:, 1], ninf)
    k = tf.minimum(int(n_best), length)
    start_values, start_tokens = tf.math.top_k(starts, k)
    end_values, end_tokens = tf.math.top_k(ends, k)
    scores = start_values[:, :, None] + end_values[:, None, :]
    span = end_tokens[:, None, :] - start_tokens[:, :, None] + 1
    valid = tf.math.is_finite(scores) & (span >= 1) & (span <= int(max_answer_length))
    scores = tf.reshape(tf.where(valid, scores, ninf), [tf.shape(scores)[0], k * k])
    per_example = tf.RaggedTensor.from_value_rowids(scores, example_index, nrows=num_examples)
    candidates = per_example.merge_dims(1, 2).to_tensor(default_value=ninf)  # [examples, W*k*k]
    candidates = tf.pad(candidates, [[0, 0], [0, 1]], constant_values=float("-inf"))
    best = tf.argmax(candidates, axis=1, output_type=tf.int32)
    best_score = tf.reduce_max(candidates, axis=1)
    found = tf.math.is_finite(best_score)
    pairs = k * k
    window = tf.cast(per_example.row_starts(), tf.int32) + best // pairs
    window = tf.where(found, window, 0)
    pair = best % pairs
    top = tf.math.top_k(candidates, tf.minimum(int(n_best), tf.shape(candidates)[1]))
    shifted = tf.where(tf.math.is_finite(top.values), tf.exp(top.values - best_score[:, None]), 0.0)
    probability = 1.0 / tf.maximum(tf.reduce_sum(shifted, axis=1), 1e-30)

    def take(values, rows, columns):
        rows = tf.clip_by_value(rows, 0, tf.maximum(tf.shape(values)[0] - 1, 0))
        return tf.gather_nd(values, tf.stack([rows, columns], axis=1))

    start_token = take(start_tokens, window, pair // k)
    end_token = take(end_tokens, window, pair % k)
    char_start = take(token_start, window, start_token)
    char_end = take(token_end, window, end_token)
    zero = tf.zeros_like(char_start)
    return {
        "start": tf.where(found, char_start, zero),
        "end": tf.where(found, char_end, zero),
        "score": tf.where(found, probability, 0.0),
        "logit_score": best_score,
    }


def answer_text(context, start, end):
    """`(answer, start, end)`: the text at character offsets, spaces at its ends dropped.

    `context` is a 1-D `tf.string` tensor, `start` / `end` int32 character
    offsets (end exclusive). SentencePiece tokens can hold the space before
    a word; the offsets move past leading and trailing whitespace.
    """
    start = tf.cast(start, tf.int32)
    end = tf.cast(end, tf.int32)
    text = tf.strings.substr(context, start, tf.maximum(end - start, 0), unit="UTF8_CHAR")
    stripped_left = tf.strings.regex_replace(text, r"^\s+", "")
    stripped = tf.strings.regex_replace(stripped_left, r"\s+$", "")

    def chars(value):
        return tf.strings.length(value, unit="UTF8_CHAR")

    lead = chars(text) - chars(stripped_left)
    trail = chars(stripped_left) - chars(stripped)
    new_start = start + lead
    new_end = tf.maximum(end - trail, new_start)
    empty = tf.equal(tf.strings.length(stripped), 0)
    return stripped, tf.where(empty, start, new_start), tf.where(empty, start, new_end)


__all__ = ["DEFAULT_MAX_ANSWER_LENGTH", "DEFAULT_N_BEST", "SpanHead", "answer_text", "span_search"]
