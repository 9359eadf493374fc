"""Text datasets as `tf.data`: readers (`from_*`) and `prepare`."""

from ktransfer.data.conll import from_conll, prepare_tokens, tag_vocabulary
from ktransfer.data.domains import zip_domains
from ktransfer.data.mixing import mix
from ktransfer.data.pipeline import bucket_boundaries
from ktransfer.data.pipeline import default_bucket_step
from ktransfer.data.pipeline import prepare
from ktransfer.data.readers import from_csv
from ktransfer.data.readers import from_jsonl
from ktransfer.data.readers import from_lists
from ktransfer.data.readers import from_tfds
from ktransfer.data.readers import from_tsv
from ktransfer.data.squad import OffsetTokenizer, QuestionAnsweringPreprocessor, SquadExamples, from_squad, read_squad, squad_windows  # noqa: F401,E501

__all__ = [
    "bucket_boundaries",
    "default_bucket_step",
    "from_conll",
    "from_csv",
    "from_jsonl",
    "from_lists",
    "from_tfds",
    "from_tsv",
    "mix",
    "prepare",
    "prepare_tokens",
    "tag_vocabulary",
    "zip_domains",
]
