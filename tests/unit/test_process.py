"""The frame every process runs in (:mod:`foundation.process`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 on this platform")
def test_sigusr1_writes_every_threads_stack_and_the_process_goes_on() -> None:
    code = (
        "import sys, threading, time\n"
        "from foundation.process import dump_stacks_on_sigusr1\n"
        "dump_stacks_on_sigusr1()\n"
        "def waiting_in_a_thread(): time.sleep(30)\n"
        "threading.Thread(target=waiting_in_a_thread, daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "print('still running', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        out, err = process.communicate("go on\n", timeout=10)
    finally:
        process.kill()
    assert out == "still running\n"
    assert process.returncode == 0
    assert "waiting_in_a_thread" in err  # the other thread's stack
    assert "<module>" in err  # the main thread's
