"""Task heads that sit on top of an encoder."""

from ktransfer.heads.classification_head import ClassificationHead

__all__ = ["ClassificationHead"]
