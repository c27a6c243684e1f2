"""The benchmark report: FLOP counts, epoch normalisation, the table, the plot, `python -m benchmarks`
and its alias `netcore bench`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.report import epoch_flop, load_rows, table


def test_epoch_flop_of_the_tutorial_network():
    # forward 2*12960, weight gradients 2*12960, gradients passed down 2*(256 + 160) per sample
    assert epoch_flop([784, 16, 16, 10], 1) == 2 * 12960 + 2 * 12960 + 2 * 416
    assert epoch_flop([784, 16, 16, 10], 60_000) == 3_160_320_000


def bench(name, median, group="g", **info):
    return {"name": name, "group": group, "stats": {"median": median}, "extra_info": info}


DOC = {
    "benchmarks": [
        bench("fast", 0.010, label="numba", backend="numba", dtype="float32", samples=1000, flop=2e9),
        bench("ref", 0.040, label="numpy", backend="numpy", dtype="float32", samples=1000, reference="numpy"),
        bench("naive", 0.5, label="python", backend="python", dtype="float64", samples=10, epoch_samples=1000, reference="python"),
    ]
}


def test_rows_are_normalised_to_a_full_epoch():
    rows = {r.label: r for r in load_rows(DOC)}
    assert rows["numba"].ms == pytest.approx(10.0) and rows["numba"].gflops == pytest.approx(200.0)
    assert rows["python"].extrapolated and rows["python"].ms == pytest.approx(50_000.0)
    assert not rows["numpy"].extrapolated


def test_table_has_speedups_against_the_references():
    text = table(load_rows(DOC))
    assert "| numba | 10.0 | 200.0 | 5,000x | 4.00x |" in text
    assert "| python | 50,000.0 (extrapolated) |" in text
    assert text.index("| numba |") < text.index("| numpy |") < text.index("| python |")  # fastest first


def test_bench_command_reports_a_json_file_and_plots(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(DOC))
    png = tmp_path / "bench.png"
    assert main(["--benchmark-json", str(path), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| numba | 10.0 |" in out and f"plot written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.png", "run.json"]


def test_bench_command_rejects_a_run_without_timings(tmp_path, capsys):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"benchmarks": []}))
    assert main(["--benchmark-json", str(path)]) == 1
    assert "holds no benchmarks" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["not json", json.dumps({"benchmarks": [{"name": "x"}]}), json.dumps([1, 2])])
def test_bench_command_rejects_what_is_not_a_benchmark_run(tmp_path, capsys, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["--benchmark-json", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a pytest-benchmark JSON file" in err


def test_a_plot_format_matplotlib_cannot_write_is_refused_before_the_run(tmp_path, capsys):
    assert main(["--plot", str(tmp_path / "bench.txt"), "--", "-k", "nothing"]) == 1
    assert "extension .txt; use one of" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_product_never_imports_the_benchmarks():
    root = Path(__file__).resolve().parents[1]
    offenders = [str(p.relative_to(root)) for folder in ("netcore", "backends") for p in (root / folder).rglob("*.py")
                 if any(line.lstrip().startswith(("import benchmarks", "from benchmarks")) for line in p.read_text().splitlines())]
    assert offenders == []


def test_netcore_bench_is_an_alias_of_python_m_benchmarks(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(DOC))
    run = subprocess.run([sys.executable, "-m", "netcore", "bench", "--benchmark-json", "run.json"], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert run.returncode == 0, run.stderr
    assert "| numba | 10.0 | 200.0 | 5,000x | 4.00x |" in run.stdout  # a path relative to where the command ran


def test_netcore_bench_without_a_checkout_says_so(monkeypatch, capsys):
    from netcore import cli

    monkeypatch.setattr(cli, "checkout_root", lambda: None)
    assert cli.main(["bench", "--benchmark-json", "x.json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "netcore bench runs `python -m benchmarks` from a source checkout" in err
