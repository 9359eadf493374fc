"""Byte progress bars for long file work (fetching, unpacking, converting assets).

Both `kt.assets` and the converters in `ktransfer.convert` show the same bar
and take the same `verbose` argument, so it is defined once here.

```python
from ktransfer.utils.progress import check_verbose, progress_bar
verbose = check_verbose("auto")           # "auto", 0 or 1; anything else is refused
with progress_bar(0, 1024, "Copying") as bar:   # verbose=0: no output
    bar.update(1024)
```
"""

import sys

VERBOSITIES = ("auto", 0, 1)


def check_verbose(verbose):
    """`verbose` if it is "auto", 0 or 1; a clear ValueError otherwise."""
    if isinstance(verbose, bool) or verbose not in VERBOSITIES:
        raise ValueError(f"`verbose` must be 'auto', 0 or 1. Received: {verbose!r}")
    return verbose


def progress_bar(verbose, total, description):
    """A tqdm byte bar on stderr: shown with verbose=1, on a terminal with "auto".

    With "auto" off a terminal (logs), one line says what starts instead.
    """
    from tqdm import tqdm  # the well-kept bar (a tensorflow-datasets dependency)

    if verbose == "auto":
        if not sys.stderr.isatty():  # logs: one line per step instead of a live bar
            print(f"{description} ({total / 2**20:.1f} MiB) ...", file=sys.stderr)
        disable = None  # tqdm's auto: off when stderr is not a terminal
    else:
        disable = not verbose
    return tqdm(
        total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, disable=disable, leave=True,
    )
