"""Utilities that several ktransfer modules share, public and documented.

- `files`: write a folder or a file atomically (staged beside the target,
  renamed into place when complete; nothing half-written is left behind).
"""

from ktransfer.utils.files import atomic_directory
from ktransfer.utils.files import atomic_file

__all__ = ["atomic_directory", "atomic_file"]
