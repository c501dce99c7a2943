"""A Ctrl-C or SIGTERM that a library swallows (a KeyboardInterrupt raised inside a finalizer is only
printed) still stops the command and publishes nothing (edgehad.core.stop)."""

from __future__ import annotations

import signal

import click
import pytest
from click.testing import CliRunner

from edgehad.cli.common import command_errors
from edgehad.core import stop
from edgehad.core.files import staging_dir


def _command(signum):
    @click.command()
    @command_errors(stopped="nothing was written")
    def cmd():
        try:
            signal.raise_signal(signum)   # the handler raises here ...
        except KeyboardInterrupt:         # ... and a library's finalizer swallows it
            pass
        click.echo("finished as if never stopped")
    return cmd


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_swallowed_stop_still_ends_the_command_as_stopped(signum, code, said):
    # what was installed before (under pytest-xdist, a test before this one in the same worker can leave
    # SIGINT ignored: seen in a full run) must be what is installed after
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(_command(signum))
    # the body ran to its end (the stop was swallowed), and still the command exits as stopped (the
    # "error: {said}: ..." line itself is checked with real signals in tests/e2e/test_out_folder.py)
    assert "finished as if never stopped" in result.output
    assert result.exit_code == code, result.output
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before   # handlers put back
    stop.clear()


def test_a_recorded_stop_publishes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    stop.request(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt), staging_dir(out) as stage:
            (stage / "report.json").write_text('{"new": 1}')
    finally:
        stop.clear()
    assert (out / "report.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]   # no staging folder left
    stop.check()   # cleared: nothing raised


@pytest.mark.parametrize("streamed", [False, True], ids=["communicate", "streamed"])
def test_a_swallowed_stop_ends_the_wait_on_a_child_and_kills_it(streamed):
    """`edgehad micro` waits on its probe: a stop recorded while it waits kills the probe and raises, instead of
    waiting out the probe's time limit (the probe below would sleep 60 s and then exit 0)."""
    import os
    import sys

    from edgehad.core.children import run_child

    code = "import os, sys, time; print(os.getpid(), file=sys.stderr, flush=True); time.sleep(60)"
    pids = []
    stop.request(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_child([sys.executable, "-c", code], timeout=120,
                      on_stderr_line=pids.append if streamed else None)
    finally:
        stop.clear()
    for pid in pids:   # the streamed child said its pid: it is gone (killed and reaped)
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def _held_command(signum, times, reached):
    @click.command()
    @command_errors(stopped="nothing was written")
    def cmd():
        with stop.held("the exporter"):
            for i in range(times):
                signal.raise_signal(signum)
                reached.append(f"after signal {i + 1}")   # the handler returned: the stop is held
            reached.append("end of the held call")
        reached.append("after the held call")             # never: held() raised the stop as the call returned
    return cmd


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_inside_an_exporter_is_held_until_it_returns(signum, code):
    """No KeyboardInterrupt inside an exporter's C++ (a SIGTERM there once ended a convert in SIGABRT):
    the first stop is recorded, the call runs to its end, and the command then ends as stopped."""
    reached = []
    result = CliRunner().invoke(_held_command(signum, 1, reached))
    assert reached == ["after signal 1", "end of the held call"]
    assert result.exit_code == code, result.output
    assert stop.holding() is None
    stop.clear()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_second_stop_inside_an_exporter_stops_at_once(signum, code):
    reached = []
    result = CliRunner().invoke(_held_command(signum, 2, reached))
    assert reached == ["after signal 1"]   # the second signal raised where it landed
    assert result.exit_code == code, result.output
    assert stop.holding() is None
    stop.clear()


def test_held_without_a_stop_returns_as_the_call_did():
    with stop.held("the exporter"):
        assert stop.holding() == "the exporter"
        with stop.held("an inner call"):
            assert stop.holding() == "an inner call"
    assert stop.holding() is None and not stop.pending()


def test_held_in_another_thread_holds_nothing():
    import threading

    seen = []

    def body():
        with stop.held("an export in a thread"):
            seen.append(stop.holding())
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [None]
