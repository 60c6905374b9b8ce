"""`edgeoff up` without brokers: bad input refused before anything starts, stale work folders, verdicts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeoff.ops.health import HealthRecord, write_health
from launcher.cli import main
from launcher.up import workdir
from launcher.up.children import Child, Children, StartError, StartInterruptedError, wait_ready
from launcher.up.report import RunWindow, detectable, read_injections, run_failure
from mobile_agent.meter import Injection


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (not an MQTT broker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def _nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a broker or daemon was started before the bad input was refused")

    monkeypatch.setattr("launcher.up.command.start_brokers", forbidden)
    monkeypatch.setattr("launcher.up.children.subprocess.Popen", forbidden)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--time-compression", "0"], "argument --time-compression: must be a positive, finite number"),
        (["--duration", "0"], "argument --duration: must be a positive, finite number of seconds: '0'"),
        (["--duration", "-5"], "argument --duration: must be a positive, finite number of seconds: '-5'"),
        (["--duration", "nan"], "argument --duration: must be a positive, finite number"),
        (["--time-scale", "0"], "argument --time-scale: must be a positive, finite number"),
        (["--seed", "-1"], "argument --seed: must be at least 0"),
        (["--redis", "notaurl"], "argument --redis: not a Redis URL"),
        (["--broker", "localhost"], "argument --broker: must be HOST:PORT"),
        (["--engine", "oracle"], "argument --engine: invalid choice: 'oracle'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_nothing_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    _nothing_starts(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        main(["up", "--own-brokers", "--out", str(tmp_path / "run"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("edgeoff up: error: ")
    assert message in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["existing file", "under a file", "unwritable folder"])
def test_bad_out_exit_2_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    _nothing_starts(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("keep me\n")
    out, message = {
        "existing file": (blocker, f"{blocker}: exists and is not a folder"),
        "under a file": (blocker / "run", f"{blocker} is a file, not a folder"),
        "unwritable folder": (Path("/proc/self/run"), "cannot write in /proc/self"),
    }[case]
    assert main(["up", "--own-brokers", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert blocker.read_text() == "keep me\n"


def test_a_broker_address_that_does_not_speak_mqtt_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, silent_port: int
) -> None:
    _nothing_starts(monkeypatch)
    out = tmp_path / "run"
    assert main(["up", "--broker", f"127.0.0.1:{silent_port}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"--broker 127.0.0.1:{silent_port} accepts connections but does not answer MQTT" in err
    assert not out.exists()


def test_an_unknown_node_names_the_scenario_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _nothing_starts(monkeypatch)
    paper = (Path(__file__).parents[1] / "edgeoff" / "scenarios" / "paper.toml").read_text()
    scenario = tmp_path / "s.toml"
    scenario.write_text(paper.replace('ec = "19_1"', 'ec = "21_1"', 1))
    out = tmp_path / "run"
    assert main(["up", "--own-brokers", "--scenario", str(scenario), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{scenario}: datasets.DS1.ec: unknown node '21_1'" in err
    assert not out.exists()


# ------------------------------------------------------------------ work folders of killed runs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _folder(parent: Path, name: str, owner: dict[str, Any] | None) -> Path:
    folder = parent / name
    (folder / "secrets" / "passwords").mkdir(parents=True)
    (folder / "secrets" / "passwords" / "observer").write_text("secret\n")
    if owner is not None:
        (folder / workdir.OWNER).write_text(json.dumps(owner))
    return folder


def test_work_folders_of_killed_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    me = {"pid": os.getpid(), "start": workdir._start_time(os.getpid())}
    live = _folder(tmp_path, f"{workdir.PREFIX}live", me)
    dead = _folder(tmp_path, f"{workdir.PREFIX}dead", {"pid": _dead_pid(), "start": "1"})
    reused = _folder(tmp_path, f"{workdir.PREFIX}reused", {"pid": os.getpid(), "start": "0"})  # pid reused
    fresh = _folder(tmp_path, f"{workdir.PREFIX}fresh", None)  # being created right now
    old = _folder(tmp_path, f"{workdir.PREFIX}old", None)
    other = _folder(tmp_path, "someone-else", {"pid": _dead_pid()})
    now = old.stat().st_mtime + workdir.UNCLAIMED_GRACE_S + 1
    os.utime(fresh, (now, now))
    removed = workdir.remove_stale(tmp_path, now=now)
    assert sorted(removed) == sorted([dead, reused, old])
    assert all(folder.exists() for folder in (live, fresh, other))
    assert not any(folder.exists() for folder in (dead, reused, old))


def test_work_folder_is_private_records_its_owner_and_goes_away() -> None:
    with workdir.work_folder() as folder:
        assert folder.stat().st_mode & 0o777 == 0o700
        owner = json.loads((folder / workdir.OWNER).read_text())
        assert owner == {"pid": os.getpid(), "start": workdir._start_time(os.getpid())}
    assert not folder.exists()


# ------------------------------------------------------------------ what a run reports


def test_detectable_failures_are_long_enough_and_inside_the_agents_run() -> None:
    window = RunWindow(start=100.0, end=200.0)
    injections = [
        Injection("ed", 90.0, 5.0),  # before the agent was ready
        Injection("ed", 110.0, 1.0),  # shorter than the 1.5 s detector
        Injection("ec", 120.0, 3.0),  # detectable
        Injection("cd", 199.0, 9.0),  # its detection would come after the agent stopped
        Injection("er", 150.0, 1.6),  # detectable
    ]
    assert detectable(injections, 1.5, window) == [injections[2], injections[4]]


def test_injection_records_are_read_from_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "site-ed.injections.jsonl"
    path.write_text('{"site": "ed", "ts": 1.5, "down_s": 2.0, "session": 3}\n{"site": "ed", "ts"')
    assert read_injections(path) == [Injection("ed", 1.5, 2.0)]  # the line cut short by a kill: skipped
    assert read_injections(tmp_path / "missing.jsonl") == []


def _record(apps: int, remote: int, failures: int) -> dict[str, Any]:
    return {"apps": apps, "offloads_per_1000_apps": remote / max(apps, 1) * 1000, "failures": failures}


def test_a_run_fails_when_no_application_could_use_a_site() -> None:
    assert run_failure(_record(20, 50, 3), []) is None
    assert "no application ran" in str(run_failure(_record(0, 0, 0), []))
    assert "no application could use any site (0 remote attempts" in str(run_failure(_record(20, 0, 0), []))
    assert "(12 remote attempts, 12 failed)" in str(run_failure(_record(20, 12, 12), []))


def test_a_run_fails_when_a_daemon_died_during_it(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    log = tmp_path / "site-ed.log"
    with log.open("wb") as fh:
        child = Child("site-ed", proc, fh, log)
        assert (
            run_failure(_record(20, 50, 0), [child]) == f"exited during the run: site-ed (code 3); see {log}"
        )


# ------------------------------------------------------------------ edgeoff status --run DIR


def test_status_run_explains_a_folder_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"edgeoff status: error: {tmp_path}/connection.json does not exist: is {tmp_path} the --out of "
        "`edgeoff up`?\n"
    )


def test_status_run_of_a_run_that_ended(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    connection = {
        "broker": "127.0.0.1:1",
        "username": "observer",
        "password_file": str(tmp_path / "gone" / "observer"),
        "redis": "redis://127.0.0.1:2/0",
        "redis_password_file": str(tmp_path / "gone" / "redis-password"),
    }
    (tmp_path / "connection.json").write_text(json.dumps(connection))
    assert main(["status", "--run", str(tmp_path)]) == 2
    assert f"the run in {tmp_path} has ended" in capsys.readouterr().err


# ------------------------------------------------------------------ daemons until ready


def _children(tmp_path: Path) -> Children:
    logs = tmp_path / "logs"
    logs.mkdir()
    return Children(logs)


def test_a_child_that_exits_at_start_is_named_with_its_own_error(tmp_path: Path) -> None:
    children = _children(tmp_path)
    try:
        error = "edgeoff-site: error: max_concurrent_tasks: bad"
        code = f"import sys; print('starting'); print({error!r}); sys.exit(2)"
        child = children.start("site-ed", [sys.executable, "-c", code])
        with pytest.raises(StartError) as info:
            wait_ready([(child, tmp_path / "never.json")], 60)
        assert str(info.value) == f"site-ed exited at start (code 2): {error}; see {child.log_path}"
    finally:
        children.stop_all()


def test_ready_children_pass_and_a_silent_one_times_out_or_is_interrupted(tmp_path: Path) -> None:
    children = _children(tmp_path)
    ready_file = tmp_path / "ready.json"
    write_health(ready_file, HealthRecord(name="w", pid=1, ts=0.0, ready=True, broker=True, redis=True))
    try:
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
        ready = children.start("prediction-worker", sleeper)
        wait_ready([(ready, ready_file)], 60)  # returns: the health file says ready
        silent = children.start("agent", sleeper)
        ticks = iter([0.0, 0.0, 100.0])
        with pytest.raises(StartError, match=r"^agent was not ready after 5 s"):
            wait_ready([(silent, tmp_path / "none.json")], 5, clock=lambda: next(ticks))
        stop = threading.Event()
        stop.set()
        with pytest.raises(StartInterruptedError):
            wait_ready([(silent, tmp_path / "none.json")], 60, stop)
    finally:
        children.stop_all()
