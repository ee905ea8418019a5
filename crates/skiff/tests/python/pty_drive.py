"""Drives a command (argv) from a pseudo-terminal through the steps in $PTY_STEPS (JSON):
["wait", text, seconds] reads until text shows or time runs out; ["send", text] types it;
["resize", rows, cols] resizes the terminal (SIGWINCH); ["sleep", seconds] pauses.
Then reads until the command ends, prints everything it wrote and exits with its code."""
import fcntl
import json
import os
import pty
import select
import signal
import struct
import sys
import termios
import time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out = b""


def pump(seconds, until=None):
    global out
    end = time.time() + seconds
    while time.time() < end:
        if until is not None and until in out:
            return
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            out += data


for step in json.loads(os.environ["PTY_STEPS"]):
    if step[0] == "wait":
        pump(step[2], step[1].encode())
    elif step[0] == "send":
        os.write(fd, step[1].encode())
    elif step[0] == "resize":
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", step[1], step[2], 0, 0))
        os.kill(pid, signal.SIGWINCH)
    elif step[0] == "sleep":
        time.sleep(step[1])
pump(60)
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
