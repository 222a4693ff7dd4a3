"""A newcomer's path: the README's set-up commands, run as written on a fresh clone.

Reads the first ```sh block of the README's "## Set up" section. It must hold two commands: the
test command, which `.ci/run` runs in its own step (so it is only checked to be `cargo test`
here), and the command that starts the service. That one runs in a fresh clone of this one,
with no DATABASE_URL or REDIS_URL (a newcomer has neither), until the service is ready and the
demo credentials it printed work against the REST API. Run from the clone's root (`.ci/run`
does); the build cache is CARGO_TARGET_DIR's, shared with the other steps.
"""
import json, os, re, shutil, signal, subprocess, sys, tempfile, time, urllib.request

PORT = 18180


def fail(message):
    print(f"newcomer's path: {message}")
    sys.exit(1)


readme = open("README.md").read()
section = re.search(r"^## Set up\n(.*?)(?=^## )", readme, flags=re.S | re.M)
if not section:
    fail("the README has no '## Set up' section")
block = re.search(r"```sh\n(.*?)```", section.group(1), flags=re.S)
if not block:
    fail("the Set up section has no ```sh block")
commands = [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]
if len(commands) != 2:
    fail(f"expected two set-up commands, found {len(commands)}: {commands}")
tests = [c for c in commands if c == "cargo test"]
if len(tests) != 1:
    fail(f"one of the two commands must be `cargo test` (run by .ci/run's test step): {commands}")
start = next(c for c in commands if c != "cargo test")
print(f"set-up command: {start}")

clone = tempfile.mkdtemp(prefix="chatbot-newcomer-")
try:
    subprocess.run(["git", "clone", "-q", os.getcwd(), clone], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CHATBOT_DATA_DIR", "CHATBOT_CONFIG")}
    env["CHATBOT_LISTEN"] = f"127.0.0.1:{PORT}"
    log = open(os.path.join(clone, "serve.log"), "w+")
    server = subprocess.Popen(start, shell=True, cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 40 * 60  # a cold release build on 2 cores takes ~12 minutes
        ready = False
        while time.time() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/readyz", timeout=2) as r:
                    ready = r.status == 200
            except OSError:
                pass
            if ready:
                break
            time.sleep(1)
        log.seek(0)
        output = log.read()
        if not ready:
            print(output[-4000:])
            fail("the service did not become ready")
        keys = re.findall(r"X-API-KEY:\s+(\S+)", output)
        if not keys:
            print(output[-4000:])
            fail("`serve --demo` printed no demo API key")
        request = urllib.request.Request(f"http://127.0.0.1:{PORT}/api/v1/chatbot/setup-status/", headers={"X-API-KEY": keys[0]})
        with urllib.request.urlopen(request, timeout=10) as r:
            status = json.load(r)
        if not isinstance(status, dict) or "steps" not in status:
            fail(f"setup-status/ answered {status!r}")
        done = sum(1 for s in status["steps"] if s.get("done"))
        print(f"ready on :{PORT}; the printed key reads setup-status/ ({done} of {len(status['steps'])} steps done)")
        if not os.path.exists(os.path.join(clone, "data", "chatbot.sqlite")):
            fail("no embedded database in the clone's ./data")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
finally:
    shutil.rmtree(clone, ignore_errors=True)
print("newcomer's path: ok")
