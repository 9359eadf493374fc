"""kt.metrics.squad_v1 (official SQuAD v1.1 EM / F1) and kt.metrics.cmrc (CMRC 2018)."""

import numpy as np
import pytest

import ktransfer as kt
from ktransfer.metrics import cmrc_segments
from ktransfer.metrics import squad_normalize


def test_squad_normalisation_is_the_official_one():
    assert squad_normalize("The  Eiffel Tower!") == "eiffel tower"
    assert squad_normalize("an apple, a pear & the plum.") == "apple pear plum"
    assert squad_normalize("theatre") == "theatre"            # articles only as whole words
    assert squad_normalize("Saint-Denis") == "saintdenis"     # punctuation removed, not a space


@pytest.mark.parametrize("prediction, references, exact, f1", [
    ("The Eiffel Tower!", ["eiffel tower"], 100.0, 100.0),
    ("the big red dog", ["red dog runs"], 0.0, 100 * 2 / 3),  # 2 of 3 tokens each way
    ("x x y", ["x y"], 0.0, 80.0),                           # bag of tokens: P 2/3, R 1
    ("Paris", ["Lyon", "paris."], 100.0, 100.0),             # best reference
    ("London", ["Paris"], 0.0, 0.0),
    ("", ["the"], 100.0, 0.0),                               # v1.1: both normalise to "", F1 0
])
def test_squad_v1_hand_made_cases(prediction, references, exact, f1):
    score = kt.metrics.squad_v1([prediction], [references])
    assert score["count"] == 1
    assert score["exact_match"] == pytest.approx(exact)
    assert score["f1"] == pytest.approx(f1)


def test_squad_v1_averages_and_accepts_ids_and_predict_outputs():
    predictions = [{"answer": "Paris", "score": 0.9, "start": 0, "end": 5}, "the Seine river"]
    score = kt.metrics.squad_v1(predictions, [["Paris"], "Seine"])
    assert score["exact_match"] == pytest.approx(50.0)
    assert score["f1"] == pytest.approx((100 + 100 * 2 * 0.5 / 1.5) / 2)
    # Dicts by id: a question without a prediction scores 0, as the official script counts it.
    by_id = kt.metrics.squad_v1({"q1": "Paris"}, {"q1": ["Paris"], "q2": ["Rome"]})
    assert by_id == {"exact_match": 50.0, "f1": 50.0, "count": 2}
    with pytest.raises(ValueError, match="2 predictions for 1 questions"):
        kt.metrics.squad_v1(["a", "b"], [["a"]])
    with pytest.raises(TypeError, match="both as lists"):
        kt.metrics.squad_v1({"q1": "a"}, [["a"]])


def test_squad_v1_reads_squad_examples(tmp_path):
    import json

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "1", "question": "Where?", "answers": [{"text": "France", "answer_start": 12},
                                                     {"text": "in France", "answer_start": 9}]}]}]}]}))
    examples = kt.data.read_squad(str(path))
    assert kt.metrics.squad_v1(["in France"], examples)["exact_match"] == 100.0
    assert kt.metrics.squad_v1({"1": "France"}, examples)["exact_match"] == 100.0


@pytest.mark.parametrize("prediction, references, exact, f1", [
    ("北京市", ["北京"], 0.0, 80.0),                  # 2 common characters: P 2/3, R 1
    ("《红楼梦》", ["红楼梦"], 100.0, 100.0),         # the script's punctuation removed
    ("2008年", ["2008年8月"], 0.0, 100 * 2 / 3),       # non-Chinese runs are words
    ("北京上海", ["上海北京"], 0.0, 50.0),            # longest common run, not a bag of characters
    ("长江", ["黄河", "长江。"], 100.0, 100.0),        # best reference
])
def test_cmrc_hand_made_cases(prediction, references, exact, f1):
    score = kt.metrics.cmrc([prediction], [references])
    assert score["exact_match"] == pytest.approx(exact)
    assert score["f1"] == pytest.approx(f1)


def test_cmrc_segments_chinese_by_character():
    assert cmrc_segments("北京2008年奥运会。") == ["北", "京", "2008", "年", "奥", "运", "会"]
    assert cmrc_segments("第一，Beijing Olympics", remove_punctuation=False) == [
        "第", "一", "，", "beijing", "olympics"]


def perturbed_cases(seed=0, n=400):
    """(prediction, references) pairs from edits of real-looking answers (none normalising to "")."""
    answers = [
        "Saint Bernadette Soubirous", "a copper statue of Christ", "the Main Building",
        "a Marian place of prayer and reflection", "September 1876", "Denver Broncos",
        "the 1970s", "Frédéric Chopin", "14.5 million", "Father Edward Sorin", "iPod Classic",
        "the Ming dynasty", "U.S. News & World Report", "over 100 years", "Beyoncé's",
    ]
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        refs = list(rng.choice(answers, size=int(rng.integers(1, 4)), replace=False))
        words = str(rng.choice(refs)).split()
        edit = int(rng.integers(0, 6))
        if edit == 0 and len(words) > 1:
            words.pop(int(rng.integers(0, len(words))))
        elif edit == 1:
            words.insert(0, str(rng.choice(["the", "a", "An", "in", "of"])))
        elif edit == 2:
            words[-1] = words[-1] + str(rng.choice([".", ",", "!", "'s"]))
        elif edit == 3:
            words = [w.upper() if rng.random() < 0.5 else w for w in words]
        elif edit == 4:
            words = str(rng.choice(answers)).split()
        else:
            words = words + str(rng.choice(answers)).split()[:2]
        prediction = " ".join(words)
        if squad_normalize(prediction) and all(squad_normalize(r) for r in refs):
            cases.append((prediction, refs))
    return cases


def test_squad_v1_agrees_with_torchmetrics_squad():
    """Independent implementation of the official v1.1 script (torchmetrics, under the bench extra)."""
    try:
        from torchmetrics.functional.text import squad
    except ImportError:
        pytest.skip("torchmetrics is not installed (pip install -e '.[bench]' brings torch; "
                    "torchmetrics==1.9.0 is its SQuAD reference)")
    cases = perturbed_cases()
    preds = [{"prediction_text": p, "id": str(i)} for i, (p, _) in enumerate(cases)]
    target = [{"answers": {"answer_start": [0] * len(r), "text": r}, "id": str(i)}
              for i, (_, r) in enumerate(cases)]
    expected = squad(preds, target)
    ours = kt.metrics.squad_v1([p for p, _ in cases], [r for _, r in cases])
    assert 10 < ours["exact_match"] < 90 and 10 < ours["f1"] < 95   # the cases are mixed
    assert ours["exact_match"] == pytest.approx(float(expected["exact_match"]), abs=1e-4)
    assert ours["f1"] == pytest.approx(float(expected["f1"]), abs=1e-4)
