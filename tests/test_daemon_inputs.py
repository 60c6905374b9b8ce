"""The daemons refuse bad input before they run: settings files, the agent's --out, an unreachable broker."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

DAEMONS = ("site_daemon", "prediction_worker", "mobile_agent")
PROGS = {
    "site_daemon": "edgeoff-site",
    "prediction_worker": "edgeoff-worker",
    "mobile_agent": "edgeoff-agent",
}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


def _run(
    module: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        cwd=cwd,
        check=False,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize("module", DAEMONS)
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, ": no such file"),
        ("EDGEOFF_SITE_SITE=ed\nsite ed\n", ":2: not a KEY=value line: 'site ed'"),
        ("# a comment\n\n; another\n[section]\n", ":4: not a KEY=value line: '[section]'"),
    ],
)
def test_a_missing_or_malformed_settings_file_is_refused(
    tmp_path: Path, module: str, content: str | None, reason: str
) -> None:
    path = tmp_path / "daemon.env"
    if content is not None:
        path.write_text(content)
    code, err = _run(module, "--settings-file", str(path))
    assert code == 2
    prog = PROGS[module]
    assert err.splitlines() == [
        f"{prog}: error: argument --settings-file: {path}{reason} (see {prog} --help)"
    ]


def test_a_valid_settings_file_is_read(tmp_path: Path) -> None:
    """Comments, blank lines, `export` and quotes are KEY=value lines too; the setting takes effect."""
    path = tmp_path / "site.env"
    path.write_text("# the site\n\nexport EDGEOFF_SITE_SITE=zz\nEDGEOFF_SITE_LOG_LEVEL='INFO'\n")
    code, err = _run("site_daemon", "--settings-file", str(path))
    assert code == 2
    # the site id came from the file: the daemon got as far as looking it up in the scenario
    assert err.splitlines() == [
        "edgeoff-site: error: scenario 'paper' has no site 'zz' (has: md, ed, ec, er, cd)"
    ]


def test_the_agent_refuses_a_folder_as_out_before_running(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    env = {"EDGEOFF_AGENT_BROKER__PORT": str(_closed_port()), "EDGEOFF_AGENT_WAIT_SITES_S": "30"}
    code, err = _run("mobile_agent", "--out", str(folder), "--duration-s", "60", env=env)
    assert code == 2
    assert err.splitlines() == [f"edgeoff-agent: error: {folder}: is a folder; give a file name"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no results.tmp or .results.*.tmp
    assert list(folder.iterdir()) == []


def test_the_agent_fails_when_it_never_reaches_the_broker(tmp_path: Path) -> None:
    out = tmp_path / "agent.json"
    port = _closed_port()
    env = {
        "EDGEOFF_AGENT_BROKER__PORT": str(port),
        "EDGEOFF_AGENT_BROKER__CONNECT_TIMEOUT_S": "1",
        "EDGEOFF_AGENT_WAIT_SITES_S": "0",  # no wait for sites; the broker still gets one connect timeout
    }
    code, err = _run("mobile_agent", "--out", str(out), "--duration-s", "600", env=env)
    assert code == 1
    assert f"edgeoff-agent: error: could not connect to the broker at 127.0.0.1:{port} in 1 s" in err
    assert "Traceback" not in err
    assert not out.exists()
