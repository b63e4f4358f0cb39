"""Runs a command under a pseudo-terminal and follows a script of steps.

Usage: python3 pty_driver.py STEPS_JSON COMMAND...
STEPS_JSON is a list of {"expect": REGEX} (wait up to 60 s for it in the output after the
previous match) and {"send": TEXT} (type it). Prints one JSON object: the transcript, the
exit code, and the step that timed out, if any.
"""
import json, os, pty, re, select, sys, time

steps = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])

out = b""
pos = 0
failed = None


def pump(timeout):
    global out
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return True
    try:
        data = os.read(fd, 65536)
    except OSError:
        return False
    if not data:
        return False
    out += data
    return True


for i, step in enumerate(steps):
    if "send" in step:
        os.write(fd, step["send"].encode())
        continue
    pattern = re.compile(step["expect"].encode(), re.S)
    deadline = time.time() + step.get("timeout", 60)
    while True:
        m = pattern.search(out, pos)
        if m:
            pos = m.end()
            break
        if time.time() > deadline or not pump(0.1):
            m = pattern.search(out, pos)
            if m:
                pos = m.end()
                break
            failed = i
            break
    if failed is not None:
        break

deadline = time.time() + 30
done, status = 0, 0
while time.time() < deadline:
    alive = pump(0.1)
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if not alive:
        time.sleep(0.05)
if not done:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
while pump(0):
    pass
code = os.waitstatus_to_exitcode(status)
print(json.dumps({"transcript": out.decode("utf-8", "replace"), "code": code, "failed": failed}))
