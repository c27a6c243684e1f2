"""``netcore.backends`` in a source checkout used without installing (``PYTHONPATH=.``).

An install maps the repository's top-level ``backends/`` folder to ``netcore.backends`` (see
pyproject.toml). Run straight from a checkout, nothing does; this loads that folder under the
same name, once, so ``PYTHONPATH=.`` works too (the GPU check runs that way).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def mount_backends() -> None:
    if "netcore.backends" in sys.modules or importlib.util.find_spec("netcore.backends") is not None:
        return  # installed (or editable): the normal import finds it
    folder = Path(__file__).resolve().parents[1] / "backends"
    spec = importlib.util.spec_from_file_location("netcore.backends", folder / "__init__.py", submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ImportError(f"netcore.backends is not installed and {folder} is not a source checkout's backends folder; pip install netcore")
    module = importlib.util.module_from_spec(spec)
    sys.modules["netcore.backends"] = module
    spec.loader.exec_module(module)
