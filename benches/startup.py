#!/usr/bin/env python3
"""Start-up to ready: time from spawning `chatbot serve` on an empty data dir (SQLite data and
queue, migrations included) to the first 200 from /readyz. Prints min / median / max.

    python3 benches/startup.py [--runs 15] [--demo] [--binary target/release/chatbot]

Builds the release binary first unless --binary is given.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def one_run(binary, demo):
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = dict(os.environ, CHATBOT_DATA_DIR=data_dir, CHATBOT_LISTEN=f"127.0.0.1:{port}", CHATBOT_LOG="warn")
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        args = [binary, "serve"] + (["--demo"] if demo else [])
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not ready(port):
                if proc.poll() is not None:
                    sys.exit(f"chatbot exited with {proc.returncode} before it was ready")
                if time.perf_counter() - start > 60:
                    sys.exit("not ready after 60 s")
                time.sleep(0.002)
            return (time.perf_counter() - start) * 1000
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--demo", action="store_true", help="also seed the demo schools (serve --demo)")
    parser.add_argument("--binary", help="chatbot binary (default: build target/release/chatbot)")
    args = parser.parse_args()
    binary = args.binary
    if binary is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=root, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
        binary = os.path.join(target, "release", "chatbot")
    times = [one_run(binary, args.demo) for _ in range(args.runs)]
    label = "serve --demo" if args.demo else "serve"
    print(f"start-up to ready ({label}, empty SQLite data dir, {args.runs} runs): "
          f"min {min(times):.0f} ms, median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")


if __name__ == "__main__":
    main()
