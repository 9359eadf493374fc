"""kt.tasks.QuestionAnswerer and kt.heads.span_search on the tiny BERT (tests/conftest.py).

One small model is trained once per module (it learns to point at "great"
in a few epochs) and used by every test; one export, answered in one fresh
process (TensorFlow + tensorflow_text only) for all the request shapes the
issue names.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import tensorflow as tf

import ktransfer as kt
from ktransfer.tasks.question_answerer import answer_spans

WORDS = ["the", "film", "movie", "plot", "acting", "is", "was", "very", "not", "bad", "dull",
         "and", "but", "it", "fine"]
QUESTION = "is it great"
LONG_CONTEXT = " ".join(["the film is very dull and the plot is bad"] * 14 + ["but it is great"])


def great_data(n, seed):
    """Contexts of random words with one "great" somewhere: the answer."""
    rng = np.random.default_rng(seed)
    contexts = []
    for _ in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(4, 30))))
        words.insert(int(rng.integers(0, len(words) + 1)), "great")
        contexts.append(" ".join(words))
    return [QUESTION] * n, contexts, ["great"] * n


def squad_json(path, questions, contexts, answers):
    paragraphs = [{"context": c, "qas": [{"id": str(i), "question": q, "answers": [
        {"text": a, "answer_start": c.index(a)}]}]} for i, (q, c, a) in enumerate(zip(questions, contexts, answers))]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return str(path)


@pytest.fixture(scope="module")
def trained(tiny_preset, tmp_path_factory):
    keras.utils.set_random_seed(0)
    qa = kt.tasks.QuestionAnswerer.from_preset(tiny_preset, sequence_length=32, doc_stride=8,
                                               max_question_length=8)
    qa.compile(optimizer=keras.optimizers.Adam(5e-3))
    questions, contexts, answers = great_data(64, 0)
    path = squad_json(tmp_path_factory.mktemp("squad") / "train.json", questions, contexts, answers)
    before = qa.evaluate(x=(questions, contexts), y=answers, verbose=0, return_dict=True)["loss"]
    history = qa.fit(kt.data.from_squad(path), batch_size=16, epochs=3, verbose=0)
    return qa, before, history


def test_fit_on_a_squad_file_learns_the_answers(trained):
    qa, before, history = trained
    losses = history.history["loss"]
    assert len(losses) == 3 and losses[-1] < 0.3 * before
    questions, contexts, _ = great_data(24, 1)
    predictions = qa.predict(questions, contexts)
    assert sum(p["answer"] == "great" for p in predictions) >= 20
    for p, context in zip(predictions, contexts):
        assert context[p["start"]:p["end"]] == p["answer"] and 0.0 < p["score"] <= 1.0
    # SQuAD scores of the same predictions.
    score = kt.metrics.squad_v1([p["answer"] for p in predictions], [["great"]] * 24)
    assert score["exact_match"] >= 80.0


def test_predict_edge_cases(trained):
    qa, _, _ = trained
    questions = [QUESTION, QUESTION, "is it bad", QUESTION]
    contexts = ["", LONG_CONTEXT, "a fine film", "très great, the film"]
    assert qa.count_windows((questions[1:2], contexts[1:2])) > 4
    empty, long, no_answer, accented = qa.predict(questions, contexts, batch_size=3)
    assert empty == {"answer": "", "score": 0.0, "start": 0, "end": 0}
    assert long["answer"] == "great" and LONG_CONTEXT[long["start"]:long["end"]] == "great"
    assert no_answer["answer"] and "a fine film"[no_answer["start"]:no_answer["end"]] == no_answer["answer"]
    assert accented["answer"] == "great" and accented["start"] == 5      # character offsets
    # Non-ASCII texts train too (answers located by character offsets).
    loss = qa.evaluate(x=([QUESTION], [contexts[3]]), y=[{"text": "great", "answer_start": 5}],
                       verbose=0, return_dict=True)["loss"]
    assert np.isfinite(loss)
    assert qa.predict(questions[:1] * 0, contexts[:1] * 0) == []
    with pytest.raises(ValueError, match="2 questions but 1 contexts"):
        qa.predict([QUESTION, QUESTION], ["x"])


def test_training_batches_are_length_bucketed(trained):
    qa, _, _ = trained
    questions, contexts, answers = great_data(40, 3)
    widths = set()
    for features, targets in qa.make_dataset((questions, contexts), answers, batch_size=8, shuffle=True):
        widths.add(int(features["token_ids"].shape[1]))
        assert targets.shape[1] == 2 and int(tf.reduce_max(targets)) < features["token_ids"].shape[1]
    assert widths <= {8, 16, 24, 32} and min(widths) < 32


def test_answers_are_checked(trained):
    qa, _, _ = trained
    assert [list(v) for v in answer_spans(["great", {"text": "is", "answer_start": 5}, (0, "it")],
                                          ["a great film", "it s is", "it"])] == [[2, 5, 0], [7, 7, 2]]
    with pytest.raises(ValueError, match="not in its context"):
        qa.fit(x=(["q"], ["the film"]), y=["great"], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="not at answer_start=1"):
        answer_spans([{"text": "film", "answer_start": 1}], ["the film"])
    with pytest.raises(ValueError, match="pooling='mean'"):
        kt.tasks.QuestionAnswerer(encoder=kt.encoders.BertEncoder(qa.encoder.backbone, pooling="mean"))


def test_keras_round_trip_gives_the_same_logits(trained, tmp_path):
    qa, _, _ = trained
    path = str(tmp_path / "qa.keras")
    qa.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, kt.tasks.QuestionAnswerer) and loaded.doc_stride == 8
    windows = qa.preprocessor(tf.constant([QUESTION]), tf.constant([LONG_CONTEXT]))
    features = kt.data.squad.features(windows)
    np.testing.assert_allclose(loaded(features), qa(features), atol=1e-6)
    loaded_windows = loaded.preprocessor.ready()(tf.constant([QUESTION]), tf.constant([LONG_CONTEXT]))
    np.testing.assert_array_equal(loaded_windows["token_start"], windows["token_start"])


# --- span search against Hugging Face's utils_qa.py post-processing ------------------
def reference_postprocess(start_logits, end_logits, offsets, example_of, num_examples,
                          n_best=20, max_answer_length=30):
    """A numpy port of utils_qa.postprocess_qa_predictions (SQuAD v1: no null answer)."""
    results = []
    for example in range(num_examples):
        candidates = []
        for f in np.flatnonzero(example_of == example):
            starts = np.argsort(start_logits[f])[-1:-n_best - 1:-1]
            ends = np.argsort(end_logits[f])[-1:-n_best - 1:-1]
            for s in starts:
                for e in ends:
                    if offsets[f][s] is None or offsets[f][e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    candidates.append((offsets[f][s][0], offsets[f][e][1],
                                       start_logits[f][s] + end_logits[f][e]))
        candidates = sorted(candidates, key=lambda c: c[2], reverse=True)[:n_best]
        if not candidates:
            results.append((0, 0, 0.0))
            continue
        scores = np.array([c[2] for c in candidates])
        probabilities = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        results.append((candidates[0][0], candidates[0][1], probabilities[0]))
    return results


def test_span_search_matches_utils_qa_postprocessing():
    rng = np.random.default_rng(0)
    windows, length = 9, 40
    example_of = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3], np.int32)
    token_start = np.full([windows, length], -1, np.int32)
    token_end = np.full([windows, length], -1, np.int32)
    offsets = []
    for w in range(windows):
        n = int(rng.integers(0, 30)) if w != 3 else 0    # example 1: no context token at all
        begin = int(rng.integers(0, 100))
        spans = [(begin + 4 * i, begin + 4 * i + 3) for i in range(n)]
        token_start[w, 5:5 + n] = [s for s, _ in spans]
        token_end[w, 5:5 + n] = [e for _, e in spans]
        offsets.append([None] * 5 + spans + [None] * (length - 5 - n))
    logits = rng.normal(size=[windows, 2, length]).astype("float32") * 3
    # Positions outside the context get the lowest logits, so taking the top 20
    # among context tokens (span_search) and over all positions (utils_qa) agree.
    logits = np.where(token_start[:, None, :] >= 0, logits, -50.0).astype("float32")
    for n_best, max_answer_length in ((20, 30), (3, 2)):
        out = kt.heads.span_search(logits, token_start, token_end, example_of, 4, n_best=n_best,
                                   max_answer_length=max_answer_length)
        expected = reference_postprocess(logits[:, 0], logits[:, 1], offsets, example_of, 4,
                                         n_best, max_answer_length)
        for i, (start, end, probability) in enumerate(expected):
            assert (int(out["start"][i]), int(out["end"][i])) == (start, end)
            assert float(out["score"][i]) == pytest.approx(probability, rel=1e-4, abs=1e-6)
    assert int(out["start"][1]) == int(out["end"][1]) == 0 and float(out["score"][1]) == 0.0
    # High logits outside the context (e.g. [CLS]) are ignored, never the answer.
    cls_heavy = logits.copy()
    cls_heavy[:, :, 0] = 100.0
    out = kt.heads.span_search(cls_heavy, token_start, token_end, example_of, 4)
    assert [int(s) for s in out["start"]] == [e[0] for e in reference_postprocess(
        logits[:, 0], logits[:, 1], offsets, example_of, 4)]


# --- export ------------------------------------------------------------------------------
SERVE_MANY = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = []
for request in json.loads(sys.argv[2]):
    answer = serve(question=tf.constant(request["question"]), context=tf.constant(request["context"]))
    out.append({"answer": [a.decode("utf-8") for a in answer["answer"].numpy()],
                "score": answer["score"].numpy().tolist(), "start": answer["start"].numpy().tolist(),
                "end": answer["end"].numpy().tolist(),
                "dtypes": sorted(f"{k}:{v.dtype.name}" for k, v in answer.items())})
print(json.dumps({"answers": out, "foreign": sorted(m for m in ("keras_hub", "ktransfer") if m in sys.modules)}))
"""


def test_export_answers_in_a_fresh_process(trained, tmp_path):
    qa, _, _ = trained
    path = qa.export(str(tmp_path / "saved_models" / "qa" / "1"))
    questions, contexts, _ = great_data(62, 4)
    batch = {"question": questions + [QUESTION, "is it bad"], "context": contexts + [LONG_CONTEXT, "a fine film"]}
    requests = [
        {"question": [QUESTION], "context": [contexts[0]]},             # batch of 1
        batch,                                                          # batch of 64
        {"question": [QUESTION], "context": [""]},                      # empty context
        {"question": [QUESTION], "context": [LONG_CONTEXT]},            # more than 4 windows
        {"question": ["is it bad"], "context": ["a fine film"]},        # no answer in a short context
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", SERVE_MANY, path, json.dumps(requests)],
                            capture_output=True, text=True, env=env, cwd="/", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    assert reply["foreign"] == []
    for request, served in zip(requests, reply["answers"]):
        assert served["dtypes"] == ["answer:string", "end:int32", "score:float32", "start:int32"]
        expected = qa.predict(request["question"], request["context"], batch_size=64)
        assert served["answer"] == [e["answer"] for e in expected]
        assert served["start"] == [e["start"] for e in expected]
        assert served["end"] == [e["end"] for e in expected]
        np.testing.assert_allclose(served["score"], [e["score"] for e in expected], atol=1e-5)
    assert reply["answers"][2] == {"answer": [""], "score": [0.0], "start": [0], "end": [0],
                                   "dtypes": reply["answers"][2]["dtypes"]}
    assert reply["answers"][3]["answer"] == ["great"]
    assert sum(a == "great" for a in reply["answers"][1]["answer"]) >= 55
