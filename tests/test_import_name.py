"""The compute layer installs as netcore.backends: a user's own folder named "backends" cannot shadow it."""

from __future__ import annotations

import subprocess
import sys


def test_a_backends_folder_in_the_working_directory_does_not_shadow_netcores(tmp_path):
    (tmp_path / "backends").mkdir()
    (tmp_path / "backends" / "__init__.py").write_text("raise ImportError('the user project backends package was imported')\n")
    code = "import netcore; print(netcore.get_backend('numpy').name, netcore.backends.__name__)"
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env={"PATH": ""})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["numpy", "netcore.backends"]


def test_the_compute_layer_is_one_module_under_one_name():
    import netcore
    from netcore import backends

    assert backends.__name__ == "netcore.backends" and netcore.backends is backends
    assert "backends" not in sys.modules  # nothing imports it under its folder's name
