"""Complete models built from ktransfer blocks."""

from ktransfer.tasks.bilstm import BiLSTMClassifier
from ktransfer.tasks.bilstm_tagger import BiLSTMTagger
from ktransfer.tasks.siamese import SiameseEncoder
from ktransfer.tasks.text_cnn import TextCNN
