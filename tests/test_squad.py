"""SQuAD reader, offset tokenizers and windows (kt.data.squad): no model, fast."""

import io
import json
import warnings

import numpy as np
import pytest

import keras_hub
import tensorflow as tf

import ktransfer as kt
from ktransfer.data.squad import check_window_sizes

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "a", "film", "is", "great", "where", "paris", "in", "france", "cafe", "##s",
    "un", "##aff", "##able", "?", ",", ".", "!", "北", "京", "big", "city", "capital", "of",
    "what", "and", "it", "was",
]


def keras_hub_ids(tokenizer, texts):
    ids = tokenizer(tf.constant(texts))
    ids = ids.to_list() if hasattr(ids, "to_list") else ids
    return [[int(i) for i in row] for row in ids]


def squad_file(tmp_path, paragraphs, name="squad.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "T", "paragraphs": paragraphs}]}),
                    encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tokenizer():
    return keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True, strip_accents=True)


# --- the reader ------------------------------------------------------------------
def test_read_squad_skips_and_counts_misaligned_answers_naming_the_ids(tmp_path):
    context = "Paris is the capital of France."
    path = squad_file(tmp_path, [{"context": context, "qas": [
        {"id": "ok", "question": "What is Paris?", "answers": [
            {"text": "the capital of France", "answer_start": 9},
            {"text": "capital", "answer_start": 0}]},          # misaligned: dropped, kept as reference
        {"id": "bad1", "question": "Where?", "answers": [{"text": "France", "answer_start": 3}]},
        {"id": "bad2", "question": "Who?", "answers": [{"text": "Lyon", "answer_start": 0}]},
    ]}])
    with pytest.warns(UserWarning, match=r"skipped 2 of 3 questions.*'bad1', 'bad2'"):
        examples = kt.data.read_squad(path)
    assert len(examples) == 1 and examples.skipped == ["bad1", "bad2"] and examples.misaligned == 3
    assert examples.answers == [["the capital of France"]] and examples.answer_starts == [[9]]
    assert examples.references == [["the capital of France", "capital"]]
    assert examples[0]["question"] == "What is Paris?"
    with pytest.warns(UserWarning, match="bad1"):
        dataset = kt.data.from_squad(path)
    assert dataset.num_examples == 1 and dataset.skipped == ["bad1", "bad2"]
    (element,) = list(dataset.as_numpy_iterator())
    assert element["answer_text"] == b"the capital of France"
    assert (element["answer_start"], element["answer_end"]) == (9, 30)
    assert context[9:30] == "the capital of France"


def test_read_squad_offsets_are_characters_not_bytes(tmp_path):
    context = "Frédéric Chopin was born in Żelazowa Wola."
    start = context.index("Żelazowa")
    path = squad_file(tmp_path, [{"context": context, "qas": [
        {"id": "1", "question": "Where?", "answers": [{"text": "Żelazowa Wola", "answer_start": start}]}]}])
    (element,) = list(kt.data.from_squad(path).as_numpy_iterator())
    assert element["answer_end"] - element["answer_start"] == len("Żelazowa Wola")


def test_read_squad_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        kt.data.read_squad(str(bad))
    bad.write_text(json.dumps({"rows": []}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"no 'data' field.*SQuAD v1.1 file is"):
        kt.data.read_squad(str(bad))
    path = squad_file(tmp_path, [{"context": "x", "qas": [{"id": "1", "question": "q"}]}])
    with pytest.raises(ValueError, match=r"qas\[0\] has no 'answers'"):
        kt.data.read_squad(path)


@pytest.mark.shared_data
def test_cmrc_trial_skips_its_five_unusable_answers(shared_data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        examples = kt.data.read_squad(f"{shared_data}/cmrc2018_trial/cmrc2018_trial.json")
    assert len(examples) == 997 and len(examples.skipped) == 5
    assert any("skipped 5 of 1002" in str(w.message) for w in caught)
    xquad = kt.data.read_squad(f"{shared_data}/squad_small/xquad.en.json")
    assert len(xquad) == 1190 and not xquad.skipped


# --- offsets ---------------------------------------------------------------------
def test_wordpiece_offsets_give_the_same_ids_as_keras_hub_and_character_spans(tokenizer):
    texts = ["Where is Paris?", "The cafés, unaffable!  北京 is big.", "", "Café in  Paris"]
    ids, starts, ends = kt.data.OffsetTokenizer(tokenizer)(tf.constant(texts))
    assert ids.to_list() == keras_hub_ids(tokenizer, texts)
    spans = [[t[s:e] for s, e in zip(a, b)] for t, a, b in zip(texts, starts.to_list(), ends.to_list())]
    assert spans[0] == ["Where", "is", "Paris", "?"]
    # Accented words normalise to other bytes: the word's first piece starts and
    # its last piece ends at the word's character boundaries.
    assert spans[1] == ["The", "café", "s", ",", "un", "aff", "able", "!", "北", "京", "is", "big", "."]
    assert spans[2] == [] and spans[3] == ["Café", "in", "Paris"]


def test_sentencepiece_offsets_cover_the_text(tmp_path):
    pytest.importorskip("sentencepiece")
    import sentencepiece as spm

    lines = ["the film was great", "paris is the capital of france", "北京是中国的首都", "a big city"]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 20), model_writer=model, vocab_size=60, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
    )
    tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=model.getvalue())
    texts = ["Paris is the capital", "北京是首都", ""]
    ids, starts, ends = kt.data.OffsetTokenizer(tokenizer)(tf.constant(texts))
    assert ids.to_list() == keras_hub_ids(tokenizer, texts)
    for text, a, b in zip(texts, starts.to_list(), ends.to_list()):
        assert a == sorted(a) and all(0 <= s <= e <= len(text) for s, e in zip(a, b))
        assert "".join(text[s:e] for s, e in zip(a, b)).replace(" ", "") == text.replace(" ", "")
    preprocessor = kt.data.QuestionAnsweringPreprocessor(tokenizer, 16, 2, 4)
    windows = preprocessor(tf.constant(["capital?"]), tf.constant(["Paris is the capital"]))
    assert preprocessor.context_segment == 0 and int(tf.reduce_max(windows["segment_ids"])) == 0
    assert int(windows["token_ids"][0, 0]) == tokenizer.start_token_id


# --- windows ---------------------------------------------------------------------
def windows_of(tokenizer, questions, contexts, answers=None, sequence_length=16, doc_stride=3,
               max_question_length=4):
    preprocessor = kt.data.QuestionAnsweringPreprocessor(
        tokenizer, sequence_length=sequence_length, doc_stride=doc_stride,
        max_question_length=max_question_length)
    starts = ends = None
    if answers is not None:
        starts = tf.constant([c.index(a) for c, a in zip(contexts, answers)])
        ends = tf.constant([c.index(a) + len(a) for c, a in zip(contexts, answers)])
    out = preprocessor(tf.constant(questions), tf.constant(contexts), starts, ends)
    return {k: v.numpy() for k, v in out.items()}


def test_windows_share_doc_stride_tokens_and_label_the_answer_or_cls(tokenizer):
    context = " ".join(["the film is great"] * 6) + " paris in france"   # 24 + 3 = 27 tokens
    question = "where is paris in the big city"                        # 7 tokens, cut to 4
    w = windows_of(tokenizer, [question], [context], ["france"])
    room, step = 16 - 3 - 4, 16 - 3 - 4 - 3                             # 9 context tokens, step 6
    assert list(w["example_index"]) == [0] * 4                          # 1 + ceil((27 - 9) / 6)
    ids = w["token_ids"]
    vocab = tokenizer.get_vocabulary()
    first = [vocab[i] for i in ids[0]]
    assert first[:6] == ["[CLS]", "where", "is", "paris", "in", "[SEP]"]
    assert first[15] == "[SEP]" and sum(w["padding_mask"][0]) == 16
    assert list(w["segment_ids"][0]) == [0] * 6 + [1] * 10
    context_tokens = [list(ids[r][6:6 + room]) for r in range(3)]
    for r in range(2):   # neighbours share doc_stride tokens
        assert context_tokens[r][step:] == context_tokens[r + 1][:room - step]
    # The answer ("france", the last token) is only in the last window; the others point at [CLS].
    assert list(w["start_positions"][:3]) == [0, 0, 0] and list(w["end_positions"][:3]) == [0, 0, 0]
    s, e = w["start_positions"][3], w["end_positions"][3]
    assert s == e > 0 and context[w["token_start"][3, s]:w["token_end"][3, e]] == "france"
    # Offsets only on context tokens.
    assert (w["token_start"][:, :6] == -1).all() and (w["token_start"][0, 6:15] >= 0).all()


def test_an_answer_cut_by_a_window_boundary_points_at_cls(tokenizer):
    context = "a b c d e f g the film is great"                        # "the film" spans windows
    w = windows_of(tokenizer, ["what"], [context], ["the film"], sequence_length=12, doc_stride=2,
                   max_question_length=2)
    # room 12 - 3 - 1 = 8 tokens: window 0 holds "a .. g the", window 1 starts at token 6.
    assert list(w["example_index"]) == [0, 0]
    assert (w["start_positions"][0], w["end_positions"][0]) == (0, 0)
    s, e = w["start_positions"][1], w["end_positions"][1]
    assert context[w["token_start"][1, s]:w["token_end"][1, e]] == "the film"


def test_empty_context_gives_one_window_without_context(tokenizer):
    w = windows_of(tokenizer, ["where is paris", "what"], ["", "paris"])
    assert list(w["example_index"]) == [0, 1]
    vocab = tokenizer.get_vocabulary()
    assert [vocab[i] for i in w["token_ids"][0][:6]] == ["[CLS]", "where", "is", "paris", "[SEP]", "[SEP]"]
    assert (w["token_start"][0] == -1).all() and sum(w["padding_mask"][0]) == 6


def test_window_sizes_are_checked():
    check_window_sizes(384, 128, 64)
    with pytest.raises(ValueError, match="doc_stride=317 must be smaller.*= 317"):
        check_window_sizes(384, 317, 64)
    with pytest.raises(ValueError, match="no room for context"):
        check_window_sizes(16, 2, 13)
    with pytest.raises(ValueError, match="positive int"):
        check_window_sizes(16, 2.5, 4)


def test_window_labels_recover_the_answers_of_many_examples(tokenizer):
    rng = np.random.default_rng(0)
    words = ["the", "film", "is", "great", "paris", "in", "france", "big", "city"]
    contexts, answers = [], []
    for _ in range(40):
        tokens = list(rng.choice(words, size=rng.integers(1, 40)))
        i = int(rng.integers(0, len(tokens)))
        j = int(rng.integers(i, min(len(tokens), i + 3)))
        context = " ".join(tokens)
        prefix = " ".join(tokens[:i])
        start = len(prefix) + (1 if prefix else 0)
        answers.append((start, " ".join(tokens[i:j + 1])))
        contexts.append(context)
    preprocessor = kt.data.QuestionAnsweringPreprocessor(tokenizer, 20, 4, 4)
    starts = tf.constant([s for s, _ in answers])
    ends = tf.constant([s + len(t) for s, t in answers])
    w = preprocessor(tf.constant(["what is"] * 40), tf.constant(contexts), starts, ends)
    w = {k: v.numpy() for k, v in w.items()}
    found = set()
    for r, example in enumerate(w["example_index"]):
        s, e = w["start_positions"][r], w["end_positions"][r]
        if s:
            start, text = answers[example]
            assert (w["token_start"][r, s], w["token_end"][r, e]) == (start, start + len(text))
            found.add(int(example))
    assert found == set(range(40))   # every answer (at most 3 tokens) fits some window
