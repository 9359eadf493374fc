"""kt.metrics.bleu / chrf / rouge: the numbers of sacrebleu and rouge-score, and known values."""

import pytest

import ktransfer as kt

PREDICTIONS = ["the cat sat on a mat", "hello there"]
REFERENCES = [["the cat sat on the mat", "a cat"], ["hello there friend"]]


def test_bleu_equals_sacrebleu_and_a_hand_computed_value():
    import sacrebleu

    result = kt.metrics.bleu(PREDICTIONS, REFERENCES)
    # sacrebleu's own call, references as streams (None: no second reference).
    own = sacrebleu.corpus_bleu(PREDICTIONS, [["the cat sat on the mat", "hello there friend"],
                                              ["a cat", None]])
    assert result["score"] == own.score
    # By hand: clipped n-gram precisions 8/8, 4/6, 2/4, 1/3; hypothesis 8 tokens,
    # closest references 6 + 3 = 9: BP = exp(1 - 9/8).
    assert result["precisions"] == pytest.approx([100.0, 200 / 3, 50.0, 100 / 3])
    assert result["brevity_penalty"] == pytest.approx(0.8824969, abs=1e-6)
    assert result["score"] == pytest.approx(50.95098, abs=1e-4)
    assert "nrefs:var" in result["signature"] and "tok:13a" in result["signature"]


def test_bleu_tokenize_zh_equals_sacrebleu():
    import sacrebleu

    predictions, references = ["我喜欢吃苹果。", "今天天气很好"], ["我喜欢吃香蕉。", "今天天气很好"]
    result = kt.metrics.bleu(predictions, references, tokenize="zh")
    assert result["score"] == sacrebleu.corpus_bleu(predictions, [references], tokenize="zh").score
    assert kt.metrics.bleu(["我喜欢猫"], ["我喜欢猫"], tokenize="zh")["score"] == pytest.approx(100.0)
    # Without zh tokenisation a sentence is one "word": no 4-gram, BLEU 0.
    assert kt.metrics.bleu(predictions, references)["score"] < result["score"]


def test_chrf_equals_sacrebleu():
    import sacrebleu

    result = kt.metrics.chrf(PREDICTIONS, REFERENCES)
    own = sacrebleu.corpus_chrf(PREDICTIONS, [["the cat sat on the mat", "hello there friend"],
                                              ["a cat", None]])
    assert result["score"] == own.score
    assert kt.metrics.chrf(["the cat sat"], [["the cat sat"]])["score"] == pytest.approx(100.0)
    plus = kt.metrics.chrf(PREDICTIONS, REFERENCES, word_order=2)
    assert plus["score"] == sacrebleu.corpus_chrf(
        PREDICTIONS, [["the cat sat on the mat", "hello there friend"], ["a cat", None]],
        word_order=2).score


def test_rouge_equals_rouge_score_max_over_references():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    result = kt.metrics.rouge(PREDICTIONS, REFERENCES)
    for name in ("rouge1", "rouge2", "rougeL"):
        best = [max(scorer.score(r, p)[name].fmeasure for r in refs)
                for p, refs in zip(PREDICTIONS, REFERENCES)]
        assert result[name] == pytest.approx(100 * sum(best) / len(best))
    assert result["count"] == 2
    # Known value: "the cat sat" vs "the cat sat down": P 1, R 3/4 -> F 6/7; bigrams F 4/5.
    single = kt.metrics.rouge(["the cat sat"], [["a dog ran", "the cat sat down"]])
    assert single["rouge1"] == pytest.approx(600 / 7) and single["rouge2"] == pytest.approx(80.0)


def test_generation_metrics_clear_errors():
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        kt.metrics.bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="not one string"):
        kt.metrics.rouge("a cat", ["a cat"])
    with pytest.raises(ValueError, match="empty"):
        kt.metrics.chrf([], [])
    with pytest.raises(ValueError, match=r"references\[0\]"):
        kt.metrics.bleu(["a"], [[]])


def test_bleu_max_ngram_order_equals_sacrebleu():
    import sacrebleu

    streams = [["the cat sat on the mat", "hello there friend"], ["a cat", None]]
    for order in (1, 2):
        result = kt.metrics.bleu(PREDICTIONS, REFERENCES, max_ngram_order=order)
        own = sacrebleu.metrics.BLEU(max_ngram_order=order).corpus_score(PREDICTIONS, streams)
        assert result["score"] == own.score and len(result["precisions"]) == order
        assert "ngram:" not in result["signature"] or f"ngram:{order}" in result["signature"]
    # BLEU-1, BLEU-2 from the hand-computed precisions above (8/8, 4/6) and BP exp(1 - 9/8).
    assert kt.metrics.bleu(PREDICTIONS, REFERENCES, max_ngram_order=2)["score"] == pytest.approx(
        100 * 0.8824969 * (2 / 3) ** 0.5, abs=1e-4
    )
    # Known value: BLEU-1 of "the cat sat" against "a cat sat" is 2/3 (no brevity penalty).
    assert kt.metrics.bleu(["the cat sat"], ["a cat sat"], max_ngram_order=1)["score"] == (
        pytest.approx(200 / 3)
    )
    with pytest.raises(ValueError, match="max_ngram_order"):
        kt.metrics.bleu(["a"], ["a"], max_ngram_order=0)


def test_distinct_counts_distinct_ngrams_over_the_corpus():
    result = kt.metrics.distinct(["i am fine", "i am ok"])
    # unigrams: i am fine i am ok -> 4 of 6; bigrams: (i am) x2, (am fine), (am ok) -> 3 of 4.
    assert result == {"distinct1": pytest.approx(400 / 6), "distinct2": pytest.approx(75.0)}
    assert kt.metrics.distinct(["hi", "hi"], orders=2) == {"distinct2": 0.0}  # no bigram
    assert kt.metrics.distinct([b"a b", "a c"], orders=(1,)) == {"distinct1": pytest.approx(75.0)}
    with pytest.raises(ValueError, match="not one string"):
        kt.metrics.distinct("a b")
    with pytest.raises(ValueError, match="orders"):
        kt.metrics.distinct(["a"], orders=(0,))
    with pytest.raises(TypeError, match=r"predictions\[0\]"):
        kt.metrics.distinct([3])
