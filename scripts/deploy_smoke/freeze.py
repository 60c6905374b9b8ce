"""Freeze one thread of a process (ptrace), leaving its other threads running: a real hung serve loop.

SIGSTOP (or a cgroup freeze) stops every thread of a process, so it cannot show what the daemon's own
watchdog thread does when only the loop hangs (a deadlock, a call that never returns). PTRACE_SEIZE plus
PTRACE_INTERRUPT stops just the thread given (the main thread, which runs the serve loop); the watchdog
thread goes on and, `loop_watchdog_s` later, ends the process. The freezer holds the thread until the
process exits or `hold_s` passes (then it detaches and the loop resumes: the check fails).
"""

from __future__ import annotations

import subprocess
import sys

from .common import SmokeError

_FREEZER = r"""
import ctypes, os, sys, time
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT, WALL = 17, 0x4206, 0x4207, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
tid, hold = int(sys.argv[1]), float(sys.argv[2])
if libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0 or libc.ptrace(PTRACE_INTERRUPT, tid, None, None) != 0:
    print("error", os.strerror(ctypes.get_errno()), flush=True)
    sys.exit(1)
os.waitpid(tid, WALL)
print("frozen", flush=True)
deadline = time.monotonic() + hold
while time.monotonic() < deadline:
    pid, status = os.waitpid(tid, WALL | os.WNOHANG)
    if pid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
        print("exited", flush=True)
        sys.exit(0)
    time.sleep(0.2)
libc.ptrace(PTRACE_DETACH, tid, None, None)
print("released", flush=True)
"""


def freeze_main_thread(pid: int, *, hold_s: float) -> subprocess.Popen[str]:
    """Freeze the main thread of `pid` (host pid, root) and return the freezer once the thread is stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _FREEZER, str(pid), str(hold_s)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "frozen":
        proc.kill()
        proc.wait(5)
        raise SmokeError(f"could not freeze the main thread of pid {pid}: {line or 'freezer exited'}")
    return proc
