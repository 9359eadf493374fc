"""Task metrics computed on whole datasets: entity F1 (NER), relation F1.

`entity_f1` scores named-entity chunks the way the CoNLL `conlleval` script
and `seqeval` (its default, non-strict mode) do, so the numbers are
comparable with published CoNLL-2003 results. A chunk counts as correct only
when its type, first word and last word all match. IOB1 (CoNLL-2003's own
scheme), IOB2 and IOBES tags are read with the same rules: an entity starts
at a `B-`/`S-` tag, or at an `I-`/`E-` tag whose type differs from the
previous tag's, or that follows `O`, `E-` or `S-`; it ends before `O`, a
`B-`/`S-` tag, or a change of type. Sentences are scored separately.

`relation_f1` is the official SemEval-2010 Task 8 score: macro-averaged F1
over the relation types, direction taken into account, excluding `Other`.

Both are plain functions over Python lists (they run once per evaluation,
over whole datasets, outside the training graph).

Example:

```python
import ktransfer as kt
gold = [["I-PER", "I-PER", "O", "I-LOC"]]
predicted = [["I-PER", "I-PER", "O", "O"]]
kt.metrics.entity_f1(gold, predicted)["f1"]  # 0.666...
```
"""

import collections


def entities(tags):
    """The entity chunks of one sentence's tags: a list of (type, start, end).

    `end` is inclusive. Tags are `"O"` or `"<prefix>-<type>"` with the prefix
    one of B, I, E, S (IOB1, IOB2, IOBES); a tag without a prefix (e.g.
    `"PER"`) is read as `I-PER`.

    ```python
    from ktransfer.metrics import entities
    entities(["I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-ORG"])
    # [('PER', 0, 1), ('LOC', 3, 4), ('ORG', 5, 5)]
    ```
    """
    chunks = []
    previous_prefix, previous_type, start = "O", None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, type_ = _split_tag(tag)
        ends = previous_prefix != "O" and (
            previous_prefix in ("E", "S")
            or prefix in ("B", "S", "O")
            or type_ != previous_type
        )
        if ends:
            chunks.append((previous_type, start, i - 1))
        starts = prefix != "O" and (
            prefix in ("B", "S")
            or previous_prefix in ("O", "E", "S")
            or type_ != previous_type
        )
        if starts:
            start = i
        previous_prefix, previous_type = prefix, type_
    return chunks


def entity_f1(gold, predicted):
    """Entity-level precision, recall and F1 (CoNLL / seqeval semantics).

    Args:
        gold: the true tags, a list of sentences, each a list of tag strings
            (or bytes, as `tf.data` yields them).
        predicted: the predicted tags, the same shape as `gold`. Either may
            also be a padded 2-D array or tensor of tags, such as the `tags`
            output of an exported tagger (bytes, each row padded with
            `b""`), or a `tf.RaggedTensor`: trailing empty tags are padding
            and are dropped; an empty tag before a real one is an error.

    Returns:
        A dict: `precision`, `recall`, `f1` (micro-averaged over all entity
        chunks; 0.0 when undefined), `per_type` (`{type: {"precision",
        "recall", "f1", "support"}}`), and the counts `num_gold`,
        `num_predicted`, `num_correct`.

    Example:

    ```python
    import ktransfer as kt
    kt.metrics.entity_f1([["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])
    # {'precision': 1.0, 'recall': 1.0, 'f1': 1.0, ...}
    ```
    """
    gold, predicted = _as_sentences(gold, "gold"), _as_sentences(predicted, "predicted")
    if len(gold) != len(predicted):
        raise ValueError(
            f"`gold` has {len(gold)} sentences but `predicted` has "
            f"{len(predicted)}: pass one predicted tag sequence per sentence."
        )
    gold_counts, predicted_counts, correct_counts = (collections.Counter() for _ in range(3))
    for i, (true_tags, predicted_tags) in enumerate(zip(gold, predicted)):
        if len(true_tags) != len(predicted_tags):
            raise ValueError(
                f"Sentence {i} has {len(true_tags)} gold tags but "
                f"{len(predicted_tags)} predicted: predict one tag per word."
            )
        true_chunks = set(entities(true_tags))
        predicted_chunks = set(entities(predicted_tags))
        gold_counts.update(chunk[0] for chunk in true_chunks)
        predicted_counts.update(chunk[0] for chunk in predicted_chunks)
        correct_counts.update(chunk[0] for chunk in true_chunks & predicted_chunks)
    result = _scores(
        sum(correct_counts.values()),
        sum(predicted_counts.values()),
        sum(gold_counts.values()),
    )
    result["per_type"] = {
        type_: dict(
            _scores(correct_counts[type_], predicted_counts[type_], gold_counts[type_]),
            support=gold_counts[type_],
        )
        for type_ in sorted(set(gold_counts) | set(predicted_counts))
    }
    result.update(
        num_gold=sum(gold_counts.values()),
        num_predicted=sum(predicted_counts.values()),
        num_correct=sum(correct_counts.values()),
    )
    return result


def relation_f1(gold, predicted, other="Other"):
    """The official SemEval-2010 Task 8 score: direction-aware macro-F1.

    Labels are relation names with a direction, e.g. `"Cause-Effect(e1,e2)"`,
    and the `other` label. For each relation type (the name before `(`), a
    prediction is correct when type *and* direction match; precision divides
    the correct ones by every prediction of that type (either direction),
    recall by every gold example of that type. The score is the mean of the
    per-type F1 over the types other than `other` ("(9+1)-way evaluation
    with directionality taken into account", the task's official measure).

    Args:
        gold: the true labels, a list of str.
        predicted: the predicted labels, a list of str of the same length.
        other: the label left out of the average.

    Returns:
        A dict: `f1` (the official macro-F1), `precision` and `recall`
        (their macro averages), and `per_type` (`{type: {"precision",
        "recall", "f1", "support"}}`).

    Example:

    ```python
    import ktransfer as kt
    gold = ["Cause-Effect(e1,e2)", "Other", "Cause-Effect(e2,e1)"]
    predicted = ["Cause-Effect(e1,e2)", "Other", "Cause-Effect(e1,e2)"]
    kt.metrics.relation_f1(gold, predicted)["f1"]  # P=1/2, R=1/2 -> 0.5
    ```
    """
    gold = [_as_str(label) for label in gold]
    predicted = [_as_str(label) for label in predicted]
    if len(gold) != len(predicted):
        raise ValueError(
            f"`gold` has {len(gold)} labels but `predicted` has {len(predicted)}."
        )

    def relation_type(label):
        return label.split("(", 1)[0]

    gold_counts, predicted_counts, correct_counts = (collections.Counter() for _ in range(3))
    for true_label, predicted_label in zip(gold, predicted):
        gold_counts[relation_type(true_label)] += 1
        predicted_counts[relation_type(predicted_label)] += 1
        if true_label == predicted_label:
            correct_counts[relation_type(true_label)] += 1
    types = sorted((set(gold_counts) | set(predicted_counts)) - {other})
    if not types:
        raise ValueError(f"No relation other than {other!r} in `gold` or `predicted`.")
    per_type = {
        type_: dict(
            _scores(correct_counts[type_], predicted_counts[type_], gold_counts[type_]),
            support=gold_counts[type_],
        )
        for type_ in types
    }
    return {
        "precision": sum(s["precision"] for s in per_type.values()) / len(types),
        "recall": sum(s["recall"] for s in per_type.values()) / len(types),
        "f1": sum(s["f1"] for s in per_type.values()) / len(types),
        "per_type": per_type,
    }


def _scores(correct, num_predicted, num_gold):
    precision = correct / num_predicted if num_predicted else 0.0
    recall = correct / num_gold if num_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _split_tag(tag):
    tag = _as_str(tag)
    if tag == "O":
        return "O", None
    prefix, dash, type_ = tag.partition("-")
    if dash and prefix in ("B", "I", "E", "S"):
        return prefix, type_
    return "I", tag


def _as_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if not isinstance(value, str):
        if hasattr(value, "numpy") and callable(value.numpy):  # tf scalar tensors
            value = value.numpy()
        value = getattr(value, "item", lambda: value)()  # numpy scalars
        if isinstance(value, bytes):
            return value.decode("utf-8")
    if not isinstance(value, str):
        raise TypeError(f"Labels must be strings (or bytes). Received: {value!r}")
    return value


def _as_python(values):
    """Tensors (dense or ragged) and numpy arrays as nested Python lists."""
    if hasattr(values, "to_list"):  # tf.RaggedTensor
        return values.to_list()
    if hasattr(values, "numpy") and callable(values.numpy):  # tf.Tensor
        values = values.numpy()
    if hasattr(values, "tolist") and getattr(values, "ndim", 0) >= 1:  # np.ndarray
        return values.tolist()
    return values


def _as_sentences(sentences, name):
    if isinstance(sentences, (str, bytes)):
        raise TypeError(f"`{name}` must be a list of tag sequences, not one string.")
    if isinstance(sentences, dict):
        raise TypeError(
            f"`{name}` is a dict with keys {sorted(sentences)}; pass its tag "
            'sequences, e.g. `outputs["tags"]` of an exported tagger.'
        )
    sentences = _as_python(sentences)
    if getattr(sentences, "ndim", None) == 0 or not hasattr(sentences, "__iter__"):
        raise TypeError(
            f"`{name}` must be a list of sentences, each a list of tags. "
            f"Received: {sentences!r:.100}"
        )
    result = []
    for i, sentence in enumerate(sentences):
        sentence = _as_python(sentence)
        if isinstance(sentence, (str, bytes)):
            raise TypeError(
                f"`{name}` must be a list of sentences, each a list of tags; "
                f"found the string {sentence!r} in place of a sentence."
            )
        tags = [_as_str(tag) for tag in sentence]
        while tags and tags[-1] == "":  # padding of a dense batch of tags
            tags.pop()
        if "" in tags:
            raise ValueError(
                f"`{name}` sentence {i} has an empty tag at position "
                f"{tags.index('')}, before real tags: only trailing empty tags "
                "are read as padding. Every word needs a tag (`O` outside "
                "entities)."
            )
        result.append(tags)
    return result


# ---------------------------------------------------------------------------
# Extractive question answering (issue 21): SQuAD v1.1 and CMRC 2018 scores
# ---------------------------------------------------------------------------
import re as _re  # noqa: E402
import string as _string  # noqa: E402

_SQUAD_PUNCTUATION = frozenset(_string.punctuation)
_SQUAD_ARTICLES = _re.compile(r"\b(a|an|the)\b")
# The official CMRC 2018 script's punctuation list (cmrc2018_evaluate.py), as it is:
# its "……" is two characters, so a lone "…" is not removed.
_CMRC_PUNCTUATION = [
    "-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
    "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
    "「", "」", "（", "）", "－", "～", "『", "』",
]
_CMRC_CHINESE = _re.compile(r"[\u4e00-\u9fa5]")
_CMRC_WORD = _re.compile(r"\w+|[^\w\s]")


def _qa_text(value, what):
    if isinstance(value, dict) and "answer" in value:
        value = value["answer"]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
        if isinstance(value, bytes):
            value = value.decode("utf-8")
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str (an answer text). Received: {value!r:.80}")
    return value


def _qa_pairs(predictions, references):
    """[(prediction, [reference, ...]), ...] from lists or {id: ...} dicts."""
    if hasattr(references, "references") and hasattr(references, "ids"):  # kt.data.SquadExamples
        if isinstance(predictions, dict):
            references = dict(zip(references.ids, references.references))
        else:
            references = references.references
    if isinstance(predictions, dict) != isinstance(references, dict):
        raise TypeError(
            "Pass `predictions` and `references` both as lists (in the same order) or both as "
            "dicts {question id: ...}."
        )
    if isinstance(references, dict):
        pairs = []
        for qid, refs in references.items():
            # The official scripts count a question without a prediction as wrong.
            pairs.append((predictions.get(qid, ""), refs, qid))
    else:
        predictions, references = list(predictions), list(references)
        if len(predictions) != len(references):
            raise ValueError(
                f"{len(predictions)} predictions for {len(references)} questions: give one "
                "prediction per question."
            )
        pairs = [(p, r, i) for i, (p, r) in enumerate(zip(predictions, references))]
    out = []
    for prediction, refs, at in pairs:
        prediction = _qa_text(prediction, f"prediction {at!r}")
        if isinstance(refs, (str, bytes)) or (isinstance(refs, dict) and "answer" in refs):
            refs = [refs]
        refs = [_qa_text(r, f"reference {at!r}") for r in refs]
        if not refs:
            raise ValueError(f"Question {at!r} has no reference answer.")
        out.append((prediction, refs))
    return out


def squad_normalize(text):
    """The official SQuAD v1.1 answer normalisation.

    Lower case, punctuation (`string.punctuation`) removed, the articles
    a / an / the removed, whitespace collapsed (`evaluate-v1.1.py`'s
    `normalize_answer`).

    Example:

    ```python
    kt.metrics.squad_normalize("The  Eiffel-Tower!")   # 'eiffeltower'
    ```
    """
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCTUATION)
    return " ".join(_SQUAD_ARTICLES.sub(" ", text).split())


def _squad_f1(prediction, reference):
    predicted = squad_normalize(prediction).split()
    gold = squad_normalize(reference).split()
    common = collections.Counter(predicted) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_v1(predictions, references):
    """The official SQuAD v1.1 scores: exact match and F1, in percent.

    Each prediction is compared with every reference answer of its question
    after `squad_normalize`; the question scores its best match (exact
    match: 1 if equal; F1: over whitespace tokens, bag-of-tokens overlap),
    averaged over questions and times 100, as `evaluate-v1.1.py` does (a
    question without a prediction, in dict form, scores 0).

    Args:
        predictions: answer texts (or `QuestionAnswerer.predict` dicts), a
            list in question order or a dict `{id: text}`.
        references: per question, a reference text or a list of them (a
            list, or a dict `{id: [texts]}`), or `kt.data.read_squad` examples.

    Returns:
        `{"exact_match": float, "f1": float, "count": int}`.

    Example:

    ```python
    import ktransfer as kt
    kt.metrics.squad_v1(["the Eiffel tower", "Paris"], [["Eiffel Tower"], ["Lyon", "Marseille"]])
    # {'exact_match': 50.0, 'f1': 50.0, 'count': 2}
    ```
    """
    pairs = _qa_pairs(predictions, references)
    exact = f1 = 0.0
    for prediction, refs in pairs:
        normal = squad_normalize(prediction)
        exact += max(float(normal == squad_normalize(r)) for r in refs)
        f1 += max(_squad_f1(prediction, r) for r in refs)
    count = len(pairs)
    if count == 0:
        return {"exact_match": 0.0, "f1": 0.0, "count": 0}
    return {"exact_match": 100.0 * exact / count, "f1": 100.0 * f1 / count, "count": count}


def cmrc_segments(text, remove_punctuation=True):
    """CMRC 2018's segmentation: each Chinese character alone, other runs as words.

    As `cmrc2018_evaluate.py`'s `mixed_segmentation`: lower case, stripped;
    CJK characters (U+4E00-U+9FA5) and the script's punctuation are single
    segments (punctuation dropped when `remove_punctuation`); runs of other
    characters are cut into words (the script uses `nltk.word_tokenize`,
    here words and single symbols, `\\w+|[^\\w\\s]`; the two differ only on
    English contractions and similar inside a Chinese answer).

    Example:

    ```python
    kt.metrics.cmrc_segments("北京2008年奥运会。")   # ['北', '京', '2008', '年', '奥', '运', '会']
    ```
    """
    text = str(text).lower().strip()
    segments, run = [], ""
    for ch in text:
        if remove_punctuation and ch in _CMRC_PUNCTUATION:
            continue
        if _CMRC_CHINESE.match(ch) or ch in _CMRC_PUNCTUATION:
            if run:
                segments.extend(_CMRC_WORD.findall(run))
                run = ""
            segments.append(ch)
        else:
            run += ch
    if run:
        segments.extend(_CMRC_WORD.findall(run))
    return segments


def _longest_common_run(a, b):
    """Length of the longest common contiguous run of two sequences (the script's find_lcs)."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def _cmrc_strip(text):
    text = str(text).lower().strip()
    return "".join(ch for ch in text if ch not in _CMRC_PUNCTUATION)


def cmrc(predictions, references):
    """CMRC 2018 scores for Chinese answers: exact match and F1, in percent.

    The official `cmrc2018_evaluate.py`: F1 over `cmrc_segments` (Chinese
    characters one by one, punctuation removed) with the longest common
    run of segments as the overlap, exact match on the texts with the
    script's punctuation removed; the best over a question's references,
    averaged, times 100. Whitespace-token F1 (`squad_v1`) is meaningless
    for Chinese, which has no spaces.

    Args:
        predictions, references: as `squad_v1`.

    Returns:
        `{"exact_match": float, "f1": float, "count": int}`.

    Example:

    ```python
    import ktransfer as kt
    kt.metrics.cmrc(["北京市"], [["北京"]])   # {'exact_match': 0.0, 'f1': 80.0, 'count': 1}
    ```
    """
    pairs = _qa_pairs(predictions, references)
    exact = f1 = 0.0
    for prediction, refs in pairs:
        predicted = cmrc_segments(prediction)
        best = 0.0
        for reference in refs:
            gold = cmrc_segments(reference)
            overlap = _longest_common_run(gold, predicted)
            if overlap:
                precision, recall = overlap / len(predicted), overlap / len(gold)
                best = max(best, 2 * precision * recall / (precision + recall))
        f1 += best
        stripped = _cmrc_strip(prediction)
        exact += float(any(_cmrc_strip(r) == stripped for r in refs))
    count = len(pairs)
    if count == 0:
        return {"exact_match": 0.0, "f1": 0.0, "count": 0}
    return {"exact_match": 100.0 * exact / count, "f1": 100.0 * f1 / count, "count": count}


# ---------------------------------------------------------------------------
# Generation metrics: BLEU and chrF (sacrebleu), ROUGE (rouge-score)
# ---------------------------------------------------------------------------


def _generation_pairs(predictions, references):
    """`(predictions, [[refs of 1], [refs of 2], ...])`: strs, and one list of references each."""
    if isinstance(predictions, (str, bytes)):
        raise ValueError("`predictions` must be a list of texts, not one string: wrap it in a list.")
    predictions = [p.decode("utf-8") if isinstance(p, bytes) else p for p in predictions]
    references = list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions for {len(references)} references: give one "
            "reference (or a list of references) per prediction."
        )
    if not predictions:
        raise ValueError("`predictions` is empty: give at least one text.")
    out = []
    for i, (prediction, refs) in enumerate(zip(predictions, references)):
        if not isinstance(prediction, str):
            raise TypeError(f"predictions[{i}] is not a str: {prediction!r:.60}")
        refs = [refs] if isinstance(refs, (str, bytes)) else list(refs)
        refs = [r.decode("utf-8") if isinstance(r, bytes) else r for r in refs]
        if not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references[{i}] must be a text or a non-empty list of texts.")
        out.append(refs)
    return predictions, out


def _reference_streams(references):
    """sacrebleu's layout: one stream per reference slot, None where an example has fewer."""
    slots = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(slots)]


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError:  # pragma: no cover - a dependency of ktransfer
        raise ImportError(
            "kt.metrics.bleu / chrf need sacrebleu: pip install 'sacrebleu==2.5.1'."
        ) from None
    return sacrebleu


def bleu(predictions, references, tokenize="13a", lowercase=False, max_ngram_order=4):
    """Corpus BLEU (0-100) as sacrebleu computes it (`sacrebleu.corpus_bleu`).

    Args:
        predictions: generated texts.
        references: per prediction, one reference text or a list of them
            (examples may have different numbers of references).
        tokenize: sacrebleu's tokenizer: `"13a"` (its default, for
            English), `"zh"` (Chinese: each CJK character a token), `"intl"`,
            `"char"`, `"none"`, ...
        lowercase: case-insensitive BLEU.
        max_ngram_order: the longest n-gram (4: BLEU-4, the usual BLEU;
            1 and 2: the BLEU-1 / BLEU-2 of dialogue papers, the geometric
            mean of the 1..n-gram precisions times the brevity penalty).

    Returns:
        `{"score": float, "precisions": [max_ngram_order floats],
        "brevity_penalty": float, "signature": str}`; the signature names the
        settings, for reporting.

    Example:

    ```python
    import ktransfer as kt
    kt.metrics.bleu(["the cat sat on the mat"], [["the cat sat on the mat"]])["score"]   # 100.0
    kt.metrics.bleu(["我喜欢猫"], [["我喜欢猫"]], tokenize="zh")["score"]   # 100.0
    kt.metrics.bleu(["the cat sat"], ["a cat sat"], max_ngram_order=1)["score"]   # BLEU-1: 66.67
    ```
    """
    if isinstance(max_ngram_order, bool) or not isinstance(max_ngram_order, int) or (
        max_ngram_order < 1
    ):
        raise ValueError(
            "`max_ngram_order` must be a positive int (4 for BLEU-4). "
            f"Received: {max_ngram_order!r}"
        )
    sacrebleu = _sacrebleu()
    predictions, references = _generation_pairs(predictions, references)
    metric = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase,
                                    max_ngram_order=max_ngram_order)
    result = metric.corpus_score(predictions, _reference_streams(references))
    return {
        "score": float(result.score),
        "precisions": [float(p) for p in result.precisions],
        "brevity_penalty": float(result.bp),
        "signature": str(metric.get_signature()),
    }


def chrf(predictions, references, word_order=0):
    """Corpus chrF (0-100) as sacrebleu computes it; `word_order=2` is chrF++.

    Character n-gram F-score (n <= 6, beta 2): needs no tokenisation, so it
    suits Chinese and other languages without spaces.

    Example:

    ```python
    import ktransfer as kt
    kt.metrics.chrf(["the cat sat"], [["the cat sat"]])["score"]   # 100.0
    ```
    """
    sacrebleu = _sacrebleu()
    predictions, references = _generation_pairs(predictions, references)
    metric = sacrebleu.metrics.CHRF(word_order=word_order)
    result = metric.corpus_score(predictions, _reference_streams(references))
    return {"score": float(result.score), "signature": str(metric.get_signature())}


def distinct(predictions, orders=(1, 2)):
    """Distinct-n (0-100): distinct n-grams / all n-grams over the predictions (Li et al. 2016).

    The diversity of generated replies ("A Diversity-Promoting Objective
    Function for Neural Conversation Models"): the n-grams of every
    prediction (words split on whitespace; a text shorter than n has
    none) pooled over the corpus; the number of different ones over their
    count, times 100. No reference is needed. A corpus without any n-gram
    scores 0.

    Args:
        predictions: generated texts.
        orders: the n's (1 and 2: distinct-1 and distinct-2).

    Returns:
        `{"distinct1": float, "distinct2": float, ...}`, one per order.

    Example:

    ```python
    import ktransfer as kt
    kt.metrics.distinct(["i am fine", "i am ok"])   # {'distinct1': 66.67, 'distinct2': 75.0}
    ```
    """
    if isinstance(predictions, (str, bytes)):
        raise ValueError("`predictions` must be a list of texts, not one string: wrap it "
                         "in a list.")
    predictions = [p.decode("utf-8") if isinstance(p, bytes) else p for p in predictions]
    bad = next((i for i, p in enumerate(predictions) if not isinstance(p, str)), None)
    if bad is not None:
        raise TypeError(f"predictions[{bad}] is not a str: {predictions[bad]!r:.60}")
    orders = (orders,) if isinstance(orders, int) else tuple(orders)
    if not orders or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in orders):
        raise ValueError(f"`orders` must be positive ints, e.g. (1, 2). Received: {orders!r}")
    result = {}
    for n in orders:
        grams = [tuple(words[i:i + n]) for words in (p.split() for p in predictions)
                 for i in range(len(words) - n + 1)]
        result[f"distinct{n}"] = 100.0 * len(set(grams)) / len(grams) if grams else 0.0
    return result


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(predictions, references, rouge_types=ROUGE_TYPES, use_stemmer=True):
    """ROUGE F1 (0-100) with Google's `rouge-score`, max over each prediction's references.

    Each prediction scores its best reference (`RougeScorer.score_multi`,
    by F-measure), averaged over predictions and times 100. rouge-score's
    tokenizer keeps only `[a-z0-9]` words (lower-cased; with
    `use_stemmer`, Porter-stemmed): for other scripts use `bleu` / `chrf`.

    Args:
        predictions: generated texts.
        references: per prediction, one reference or a list of them (e.g.
            DialogSum's three test summaries).
        rouge_types: `"rouge1"`, `"rouge2"`, `"rougeL"`, `"rougeLsum"`.
        use_stemmer: Porter stemming (as most summarisation papers report).

    Returns:
        `{rouge_type: float, ..., "count": int}`.

    Example:

    ```python
    import ktransfer as kt
    kt.metrics.rouge(["the cat sat"], [["a dog ran", "the cat sat down"]])["rouge1"]   # 85.71...
    ```
    """
    try:
        from rouge_score import rouge_scorer
    except ImportError:  # pragma: no cover - a dependency of ktransfer
        raise ImportError("kt.metrics.rouge needs rouge-score: pip install 'rouge-score==0.1.2'.") from None
    predictions, references = _generation_pairs(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer)
    totals = {name: 0.0 for name in rouge_types}
    for prediction, refs in zip(predictions, references):
        scores = scorer.score_multi(refs, prediction)
        for name in rouge_types:
            totals[name] += scores[name].fmeasure
    result = {name: 100.0 * total / len(predictions) for name, total in totals.items()}
    result["count"] = len(predictions)
    return result
