"""Complete models built from ktransfer blocks."""

from ktransfer.models.bilstm import BiLSTMClassifier
from ktransfer.models.bilstm_tagger import BiLSTMTagger
from ktransfer.models.siamese import SiameseEncoder
from ktransfer.models.text_cnn import TextCNN
