"""Task heads that sit on top of an encoder."""

from ktransfer.heads.classification_head import ClassificationHead
from ktransfer.heads.relation_head import RelationHead, add_entity_markers
from ktransfer.heads.token_classification_head import TokenClassificationHead
from ktransfer.heads.span_head import SpanHead, span_search  # noqa: F401

__all__ = ["ClassificationHead", "RelationHead", "TokenClassificationHead", "add_entity_markers"]
