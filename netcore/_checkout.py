"""``netcore.backends`` when netcore runs from a source checkout.

An install maps the repository's top-level ``backends/`` folder to ``netcore.backends`` (see
pyproject.toml). Run from a checkout, this package and its compute layer must come from the
same tree: with ``PYTHONPATH=.`` and nothing installed (the GPU check runs that way), or from a
second checkout or worktree while another one is installed in editable mode, the normal import
would find nothing, or the other tree's. So in a checkout (a ``pyproject.toml`` beside the
folders) the folder beside this package is loaded as ``netcore.backends``, once.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def mount_backends() -> None:
    root = Path(__file__).resolve().parents[1]
    folder = root / "backends"
    if "netcore.backends" in sys.modules or not ((root / "pyproject.toml").is_file() and (folder / "__init__.py").is_file()):
        return  # already imported, or an installed wheel (netcore/backends/ is a subfolder): the normal import
    spec = importlib.util.spec_from_file_location("netcore.backends", folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["netcore.backends"] = module
    spec.loader.exec_module(module)
    sys.modules["netcore"].backends = module  # as the import system binds a loaded submodule
