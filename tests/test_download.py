"""MNIST / Fashion-MNIST: the search order, and downloads from a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from netcore import datasets
from netcore.datasets import FILES, DatasetUnavailableError, Reason, Source, load_data, load_dataset, write_idx


def make_files(folder: Path, n_train=30, n_test=10, seed=0) -> dict[str, str]:
    """The four MNIST-format files, gzipped; returns their MD5s."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8), rng.integers(0, 10, n_train).astype(np.uint8),
              rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8), rng.integers(0, 10, n_test).astype(np.uint8)]
    for name, array in zip(FILES, arrays):
        write_idx(folder / name, array)
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in FILES}


class Server:
    """A static file server on 127.0.0.1; ``truncate`` cuts every response in half mid-body."""

    def __init__(self, root: Path, truncate: bool = False) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                path = root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if truncate else body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NETCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NETCORE_DATA", raising=False)
    return tmp_path


def use_source(monkeypatch, mirrors, md5):
    monkeypatch.setitem(datasets.SOURCES, "mnist", Source("mnist", tuple(mirrors), md5))


def test_downloads_verifies_and_caches(env, monkeypatch):
    md5 = make_files(env / "served")
    server = Server(env / "served")
    try:
        use_source(monkeypatch, ["http://127.0.0.1:9/nothing-here/", server.url], md5)  # a dead mirror first
        (X, y), (X_test, y_test) = load_dataset("mnist")
        assert X.shape == (30, 784) and X.dtype == np.uint8 and X_test.shape == (10, 784)
        cached = sorted(p.name for p in (env / "cache" / "mnist").iterdir())
        assert cached == sorted(FILES)
        served = len(server.requests)
        load_dataset("mnist")  # the second time comes from the cache
        assert len(server.requests) == served
    finally:
        server.close()


def test_checksum_mismatch_leaves_nothing_and_says_so(env, monkeypatch):
    md5 = make_files(env / "served")
    md5[FILES[0]] = "0" * 32
    server = Server(env / "served")
    try:
        use_source(monkeypatch, [server.url], md5)
        with pytest.raises(DatasetUnavailableError, match=r"checksum mismatch: MD5 [0-9a-f]{32}, published 0{32}"):
            load_dataset("mnist")
    finally:
        server.close()
    assert not (env / "cache" / "mnist").exists()


def test_interrupted_download_leaves_nothing(env, monkeypatch):
    md5 = make_files(env / "served")
    server = Server(env / "served", truncate=True)
    try:
        use_source(monkeypatch, [server.url], md5)
        with pytest.raises(DatasetUnavailableError, match="could not download train-images-idx3-ubyte.gz"):
            load_dataset("mnist")
    finally:
        server.close()
    assert not (env / "cache" / "mnist").exists() or not any((env / "cache" / "mnist").iterdir())


def test_offline_fails_fast_and_says_where_to_put_the_files(env, monkeypatch):
    use_source(monkeypatch, ["http://127.0.0.1:9/"], dict.fromkeys(FILES, "0" * 32))  # nothing listens on port 9
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset("mnist")
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "mnist is not on disk and could not download" in message
    assert f"put {', '.join(FILES)} (gzipped or not) in one of: " in message and str(env / "cache" / "mnist") in message
    assert (err.value.dataset, err.value.reason) == ("mnist", Reason.DOWNLOAD_FAILED)  # fields, for code that acts on it
    assert err.value.detail.startswith("could not download train-images-idx3-ubyte.gz: http://127.0.0.1:9/")
    assert err.value.hint in message and err.value.why == "mnist is not on disk and " + err.value.detail
    with pytest.raises(DatasetUnavailableError, match="is not on disk; put") as err:
        load_dataset("mnist", download_if_missing=False)
    assert err.value.reason is Reason.NOT_ON_DISK and err.value.why == "mnist is not on disk"


def test_default_data_falls_back_to_the_digits_and_says_why(env, monkeypatch):
    use_source(monkeypatch, ["http://127.0.0.1:9/"], dict.fromkeys(FILES, "0" * 32))
    data = load_data(validation=0.1)
    assert data.source == {"dataset": "digits"} and data.image_shape == (8, 8) and data.n_features == 64
    assert data.notes == (f"using scikit-learn's bundled digits, because mnist is not on disk and could not download {FILES[0]}: "
                          f"http://127.0.0.1:9/{FILES[0]}: <urlopen error [Errno 111] Connection refused>",)
    with pytest.raises(DatasetUnavailableError):  # a dataset named is never replaced
        load_data("mnist")


def test_search_order_explicit_dir_then_env_then_cache_then_system(env, monkeypatch):
    for name, seed in (("explicit", 1), ("netcore_data/mnist", 2), ("cache/mnist", 3), ("system", 4)):
        make_files(env / name, seed=seed)
    monkeypatch.setitem(datasets.SOURCES, "mnist", Source("mnist", (), {}, (str(env / "system"),)))
    monkeypatch.setenv("NETCORE_DATA", str(env / "netcore_data"))

    def first_pixel_row(**kw):
        return load_dataset("mnist", download_if_missing=False, **kw)[0][0][0]

    expected = {k: np.random.default_rng(k).integers(0, 256, (30, 28, 28)).astype(np.uint8)[0].ravel() for k in (1, 2, 3, 4)}
    np.testing.assert_array_equal(first_pixel_row(data_dir=env / "explicit"), expected[1])
    np.testing.assert_array_equal(first_pixel_row(), expected[2])
    monkeypatch.delenv("NETCORE_DATA")
    np.testing.assert_array_equal(first_pixel_row(), expected[3])
    for f in (env / "cache" / "mnist").iterdir():
        f.unlink()
    np.testing.assert_array_equal(first_pixel_row(), expected[4])


def test_uncompressed_files_are_found_too(env):
    folder = env / "raw"
    make_files(folder)
    for f in list(folder.iterdir()):
        f.with_suffix("").write_bytes(gzip.decompress(f.read_bytes()))
        f.unlink()
    (X, _), _ = load_dataset("mnist", data_dir=folder, download_if_missing=False)
    assert X.shape == (30, 784)


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; choose one of mnist, fashion-mnist"):
        load_dataset("cifar")
