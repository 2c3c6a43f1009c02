"""The figure catalogue drawn by worker processes (``figures --jobs N``): the same PNGs as one process, each cached
analysis computed once, a worker's error as one line, and Ctrl-C as everywhere in the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from matplotlib.figure import Figure

from prodlab import __main__ as cli
from prodlab import cache, chapters, checkpoints, config, figures, plotting  # noqa: F401  (chapters: the figures)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the workers see test figures by fork")
DATA_FIGURES = [fid for fid in figures.REGISTRY if fid.startswith("data-")][:3]


def noisy() -> Figure:
    """A figure drawn from the global random state: the same in any process only because each figure is seeded."""
    fig = plotting.new_figure(3, 2)
    fig.add_subplot().imshow(torch.rand(8, 8).numpy())
    return plotting.finish(fig)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty cache (in tmp_path) and a catalogue of the given figure functions (id -> function)."""
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setattr(cache, "_MEMORY", {})

    def catalogue(makers: dict) -> None:
        specs = {fid: figures.FigureSpec(fid, fid, "§0", "00_test", "a test", make) for fid, make in makers.items()}
        monkeypatch.setattr(figures, "REGISTRY", specs)

    return catalogue


def test_workers_draw_the_same_pngs_and_index_as_one_process(tmp_path, isolated):
    isolated({**{fid: figures.REGISTRY[fid].make for fid in DATA_FIGURES}, "noisy-a": noisy, "noisy-b": noisy})
    serial = figures.write_catalogue(tmp_path / "serial", jobs=1)
    parallel = figures.write_catalogue(tmp_path / "parallel", jobs=2)
    assert [p.name for p in serial] == [p.name for p in parallel]
    for a, b in zip(serial, parallel, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    rows = [(tmp_path / d / "index.md").read_text().splitlines() for d in ("serial", "parallel")]
    no_seconds = [[line.rsplit("|", 2)[0] for line in lines] for lines in rows]
    assert no_seconds[0] == no_seconds[1]  # the same rows, in catalogue order


def test_a_cached_analysis_is_computed_once_while_both_workers_need_it(tmp_path, isolated, monkeypatch):
    log = tmp_path / "computed.log"

    def slow() -> cache.Result:
        with log.open("a") as f:
            f.write(f"start {os.getpid()}\n")
        time.sleep(2)
        with log.open("a") as f:
            f.write(f"end {os.getpid()}\n")
        return {"value": torch.arange(3.0)}

    monkeypatch.setitem(cache.REGISTRY, "test-slow", cache.Computation("test-slow", slow, "a test"))

    def uses_it() -> Figure:
        fig = plotting.new_figure(2, 2)
        fig.add_subplot().plot(cache.get("test-slow")["value"].numpy())
        return plotting.finish(fig)

    isolated({"first": uses_it, "second": uses_it, "third": noisy})
    written = figures.write_catalogue(tmp_path / "out", jobs=2)
    assert all(p.is_file() for p in written)
    assert log.read_text().split()[::2] == ["start", "end"], log.read_text()  # once, never two at a time


def test_a_workers_error_is_one_line_and_status_1(tmp_path, isolated, capsys):
    def broken() -> Figure:
        raise checkpoints.CheckpointError("no checkpoint 'nope': train it first")

    isolated({"fine": noisy, "broken": broken, "fine-too": noisy})
    assert cli.main(["figures", "--out", str(tmp_path), "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert err == "error: no checkpoint 'nope': train it first\n"


def test_a_workers_bug_shows_the_workers_traceback(tmp_path, isolated):
    def buggy() -> Figure:
        return 1 / 0

    isolated({"fine": noisy, "buggy": buggy})
    with pytest.raises(ZeroDivisionError) as failure:
        figures.write_catalogue(tmp_path, jobs=2)
    assert "in buggy" in str(failure.value.__cause__)


def test_a_worker_that_missed_the_stop_signal_still_stops_at_once(tmp_path, isolated):
    """A signal that reaches a worker just after fork is lost (CPython clears pending signals there): the stop
    must not hang on it until the 30-s timeout."""
    def deaf() -> Figure:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as if the stop's SIGINT came too early
        time.sleep(1.0)
        return noisy()

    def broken() -> Figure:
        raise checkpoints.CheckpointError("no checkpoint 'nope'")

    isolated({"deaf": deaf, "broken": broken})
    start = time.perf_counter()
    with pytest.raises(checkpoints.CheckpointError):
        figures.write_catalogue(tmp_path, jobs=2)
    assert time.perf_counter() - start < 15.0  # the figure's 1 s, then the worker reads its stop


CTRL_C = """
import os
import time
from prodlab import __main__ as cli, chapters, figures  # the chapters first: the catalogue is then replaced

def slow():
    open(os.path.join({marks!r}, str(os.getpid())), "w").close()  # this worker is drawing now
    time.sleep(600)  # far longer than any start-up: Ctrl-C always finds it drawing

figures.REGISTRY.clear()
for fid in ("slow-a", "slow-b", "slow-c"):
    figures.register(fid, fid, "§0", "00_test", "a test")(slow)
raise SystemExit(cli.main(["figures", "--out", {out!r}, "--jobs", "2"]))
"""


@pytest.mark.integration
def test_ctrl_c_stops_the_workers_and_exits_130(tmp_path):
    marks = tmp_path / "drawing"
    marks.mkdir()
    script = textwrap.dedent(CTRL_C).format(out=str(tmp_path / "out"), marks=str(marks))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True,  # its own process group, as in a terminal
                               preexec_fn=_terminal_signals)
    try:
        for _ in range(1200):  # both workers are drawing (on a loaded machine their start can take long)
            if len(list(marks.iterdir())) >= 2:
                break
            time.sleep(0.1)
        workers = _children(process.pid)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert "Traceback" not in err
    assert len(workers) == 2 and not any(_alive(pid) for pid in workers)


def _terminal_signals() -> None:
    """Ctrl-C as in a terminal: pytest-xdist's workers ignore SIGINT, and a child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
