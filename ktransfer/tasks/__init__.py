"""Tasks: models that own their preprocessor, take raw strings, and export themselves.

- `Task`: the base class (`kt.tasks.task`); `TextClassifier`: binary,
  multi-class, multi-label and sentence-pair classification.
- Word-vector models: `TextCNN`, `BiLSTMClassifier`, `BiLSTMTagger`;
  `SiameseEncoder` (sentence similarity).
- `serving`: the pieces of the served graphs tasks share.
"""

from ktransfer.tasks import serving
from ktransfer.tasks.bilstm import BiLSTMClassifier
from ktransfer.tasks.bilstm_tagger import BiLSTMTagger
from ktransfer.tasks.siamese import SiameseEncoder
from ktransfer.tasks.task import Task
from ktransfer.tasks.text_cnn import TextCNN
from ktransfer.tasks.text_classifier import TextClassifier

# Token, relation, similarity and multi-task tasks (helper D).
from ktransfer.tasks.multi_task import MultiTask
from ktransfer.tasks.relation_classifier import RelationClassifier
from ktransfer.tasks.relation_classifier import mark_entities
from ktransfer.tasks.sentence_similarity import SentenceSimilarity
from ktransfer.tasks.token_classifier import TaggingPreprocessor
from ktransfer.tasks.token_classifier import TokenClassifier
from ktransfer.tasks.question_answerer import QuestionAnswerer  # noqa: F401

# The base of the word-vector classifiers TextCNN and BiLSTMClassifier (helper C).
from ktransfer.tasks.word_vector_model import WordVectorClassifier  # noqa: E402,F401

# Encoder-decoder warm-started from a pretrained encoder (issue 23).
from ktransfer.tasks.seq2seq import Seq2Seq  # noqa: E402,F401
from ktransfer.tasks.seq2seq import Seq2SeqPreprocessor  # noqa: E402,F401

# Zero-shot classification by similarity to label descriptions (issue 20).
from ktransfer.tasks.zero_shot import ZeroShotClassifier  # noqa: E402,F401
