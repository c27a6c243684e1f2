"""The one atomic write (netcore.files), through the saves that use it: whole files or none, the
normal file mode, no `.part` files left for good, and no folder created behind the user's back."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from netcore import MLP, Trainer


@pytest.fixture
def net():
    return MLP([4, 3, 2], backend="numpy", dtype="float64", seed=0)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_saves_get_the_normal_file_mode(tmp_path, net, umask_022):
    net.save(str(tmp_path / "net.npz"))
    Trainer(net).save(str(tmp_path / "trainer.npz"))
    for name in ("net.npz", "trainer.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644  # as open() gives under umask 022, not mkstemp's 0600


def test_an_existing_file_keeps_its_mode(tmp_path, net):
    path = tmp_path / "net.npz"
    net.save(str(path))
    path.chmod(0o640)
    net.save(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_saving_into_a_missing_folder_is_an_error_and_creates_nothing(tmp_path, net):
    with pytest.raises(FileNotFoundError, match=r"cannot write .*missing/net.npz: folder .*missing does not exist"):
        net.save(str(tmp_path / "missing" / "net.npz"))
    assert list(tmp_path.iterdir()) == []  # no silent mkdir
    (tmp_path / "afile").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"folder .*afile is not a folder"):
        Trainer(net).save(str(tmp_path / "afile" / "net.npz"))


def test_saving_over_a_folder_is_an_error(tmp_path, net):
    (tmp_path / "net.npz").mkdir()
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        net.save(str(tmp_path / "net.npz"))


def test_a_killed_save_leaves_a_part_file_that_the_next_save_removes(tmp_path, net):
    path = tmp_path / "net.npz"
    script = ("import os, signal, numpy as np\n"
              "from netcore import MLP\n"
              "def savez(fh, **arrays):\n    fh.write(b'half a checkpoint')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
              "np.savez = savez\n"
              f"MLP([4, 3, 2], backend='numpy').save({str(path)!r})\n")
    run = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert run.returncode == -9
    stale = [p.name for p in tmp_path.iterdir()]
    assert len(stale) == 1 and stale[0].startswith(".net.npz.") and stale[0].endswith(".part") and not path.exists()
    net.save(str(path))
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]


def test_parts_of_a_running_process_are_kept(tmp_path):
    from netcore.files import remove_stale_parts

    mine = tmp_path / f".x.npz.{os.getpid()}-abc.part"  # this process is alive: its write may be in progress
    old_style = tmp_path / ".x.npz.k2j4h5.part"  # left by an older netcore, which named no process
    for p in (mine, old_style):
        p.write_bytes(b"")
    assert remove_stale_parts(tmp_path / "x.npz") == [old_style]
    assert mine.exists()


def test_an_interrupted_write_keeps_the_previous_file(tmp_path):
    from netcore.files import atomic_write

    path = tmp_path / "data.bin"
    atomic_write(path, lambda fh: fh.write(b"version 1"))

    def fails(fh):
        fh.write(b"version 2, half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=r"cannot write .*data.bin: No space left on device"):
        atomic_write(path, fails)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda fh: (_ for _ in ()).throw(KeyboardInterrupt))
    assert path.read_bytes() == b"version 1" and [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_idx_writes_are_atomic_too(tmp_path):
    from netcore.datasets import write_idx

    path = tmp_path / "x-idx1-ubyte"
    write_idx(path, np.arange(3, dtype=np.uint8))
    with pytest.raises(TypeError):
        write_idx(path, np.arange(3, dtype=np.int64))
    assert path.read_bytes()[-3:] == bytes([0, 1, 2])
