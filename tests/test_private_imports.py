"""No ktransfer module imports another module's private name.

What two modules share is a public, documented function; a private name
(`_helper`) is free to change with its own module. The scan reads every
module of the package with `ast` and fails on `from ktransfer.x import _name`
(relative imports included) unless `_name` is itself a private *module*
(`from ktransfer import _keras`). A public name of a private module is fine
(`from ktransfer._keras import keras`).
"""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ktransfer")


def _is_module(dotted):
    """Whether `ktransfer.a.b` names a module or a package of the source tree."""
    parts = dotted.split(".")[1:]
    path = os.path.join(PACKAGE, *parts)
    return os.path.isfile(path + ".py") or os.path.isfile(os.path.join(path, "__init__.py"))


def _module_name(path):
    relative = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")]
    parts = relative.split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node, module, is_package):
    """The absolute module of an `ImportFrom` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports(source, module, is_package=False):
    """`(line, "from x import _name")` for each private name imported across modules."""
    offences = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        origin = _resolve(node, module, is_package)
        if origin != "ktransfer" and not origin.startswith("ktransfer."):
            continue
        for alias in node.names:
            name = alias.name
            if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
                continue
            if _is_module(f"{origin}.{name}"):
                continue  # a private module: `from ktransfer import _keras`
            offences.append((node.lineno, f"from {origin} import {name}"))
    return offences


def package_modules():
    for folder, _, files in os.walk(PACKAGE):
        for file in sorted(files):
            if file.endswith(".py"):
                yield os.path.join(folder, file)


def test_no_module_imports_another_modules_private_name():
    found = []
    for path in package_modules():
        with open(path, encoding="utf-8") as f:
            source = f.read()
        module = _module_name(path)
        for line, what in private_imports(source, module, path.endswith("__init__.py")):
            found.append(f"{os.path.relpath(path, os.path.dirname(PACKAGE))}:{line}: {what}")
    assert not found, (
        "Modules import private names of other modules; make what they share a public, "
        "documented function:\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    "source, offends",
    [
        ("from ktransfer.export import _walk_layers", True),
        ("from ktransfer.methods.feature_extraction import numpy_batches, _digest", True),
        ("def f():\n    from ktransfer.export import _output_activation", True),
        ("from . import _helper_function", True),
        ("from ktransfer._keras import keras", False),  # a public name of a private module
        ("from ktransfer import _keras", False),  # a private module itself
        ("from ktransfer.methods.fewshot import _embedding", False),
        ("from ktransfer.methods.fewshot._embedding import Embedder", False),
        ("from ktransfer.data import __version__", False),  # a dunder
        ("from numpy import _private_thing", False),  # not ktransfer
    ],
)
def test_the_scan_tells_private_names_from_private_modules(source, offends):
    found = private_imports(source, "ktransfer.methods.distill")
    assert bool(found) is offends, found
