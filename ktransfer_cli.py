"""The `ktransfer` console script: answers `ktransfer` / `ktransfer --help` at once.

`import ktransfer` loads TensorFlow and Keras (seconds), and any module inside
the package implies it. So the console script starts here, outside the
package: the command list and a mistyped command are answered from
`ktransfer/app/cli.py` loaded as a plain file (it imports only the standard
library at load time), without importing the package; every command runs
through `ktransfer.app.cli.main` as before.
"""

import importlib.util
import os
import sys


def _light_cli():
    """`ktransfer/app/cli.py` as a stand-alone module, the package not imported."""
    spec = importlib.util.find_spec("ktransfer")  # finds it without running __init__
    path = os.path.join(spec.submodule_search_locations[0], "app", "cli.py")
    light = importlib.util.spec_from_file_location("_ktransfer_cli_help", path)
    module = importlib.util.module_from_spec(light)
    light.loader.exec_module(module)
    return module


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    light = _light_cli()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in light.COMMANDS:
        return light.main(argv)  # the help or the usage error; no command runs
    from ktransfer.app.cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
