"""Utilities that several ktransfer modules share, public and documented.

- `files`: write a folder or a file atomically (staged beside the target,
  renamed into place when complete; nothing half-written is left behind).
- `saved_model`: `write_saved_model`, the atomic TF Serving SavedModel
  writer every export uses, and `check_version_folder`.
- `progress`: `check_verbose` and `progress_bar`, the byte bar of asset
  fetching and conversion.
"""

from ktransfer.utils.files import atomic_directory
from ktransfer.utils.files import atomic_file

__all__ = ["atomic_directory", "atomic_file"]
from ktransfer.utils.saved_model import check_version_folder  # noqa: E402
from ktransfer.utils.saved_model import write_saved_model  # noqa: E402

__all__ += ["check_version_folder", "write_saved_model"]

# - `cache`: the run-once on-disk cache of `cache_features` and `soft_targets`
#   (`cache_path`, `write_once`, `read_manifest`, `weights_digest`).
# - `replicas`: loss sums over the replicas of a `tf.distribute` step
#   (`sum_over_replicas`, `global_mean`, `per_replica`, `unscale`, `gather_global_batch`).
from ktransfer.utils import cache  # noqa: E402
from ktransfer.utils import replicas  # noqa: E402

__all__ += ["cache", "replicas"]
