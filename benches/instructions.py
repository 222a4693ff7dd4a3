#!/usr/bin/env python3
"""Instructions per request, under callgrind: a count that does not depend on what else the
machine is doing (wall-clock rates on a shared 2-core machine swing by a quarter from one
round to the next, more than most changes move them).

Runs `chatbot serve --no-workers` under `valgrind --tool=callgrind` on the embedded SQLite
default with the demo schools, warms it up, then sends N `GET /healthz` and N signed webhook
deliveries (each its own message id, 64 connections), zeroing the counters before each phase
and dumping them after, and prints instructions per request, the whole process (every
thread) and the queue's SQLite work. The batch sizes the writer sees vary with timing, so
totals move by a few per cent from run to run.

    cargo build --release
    python3 benches/instructions.py [--bin target/release/chatbot] [--requests 2000] [--keep DIR]

With --keep, the two callgrind dumps are copied to DIR (healthz.out, webhook.out) for
callgrind_annotate or kcachegrind.
"""
import argparse, glob, hashlib, hmac, http.client, json, os, socket, subprocess, sys
import shutil, tempfile, threading, time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deliveries(n, tag, secret, number):
    out = []
    for i in range(n):
        sender = "23480%08d" % (10_000_000 + i % 50_000)
        body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [
            {"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550100001", "phone_number_id": number},
                "contacts": [{"profile": {"name": "Parent"}, "wa_id": sender}],
                "messages": [{"from": sender, "id": f"wamid.instr.{tag}.{i}", "timestamp": "1763800000",
                              "type": "text", "text": {"body": "hi"}}]}}]}]},
            separators=(",", ":")).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        out.append(("POST", "/api/v1/chatbot/webhooks/whatsapp/", body,
                    {"content-type": "application/json", "X-Hub-Signature-256": signature}))
    return out


def send(port, requests, connections):
    """Send `requests` over `connections` keep-alive connections; the count of non-200s."""
    lock, state = threading.Lock(), {"next": 0, "bad": 0}

    def loop():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= len(requests):
                return
            method, path, body, headers = requests[i]
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                with lock:
                    state["bad"] += 1

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return state["bad"]


def totals(path):
    """(all instructions, those under sqlite3_step) of one callgrind dump."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no", path],
                          capture_output=True, text=True, check=True).stdout
    whole = sqlite = 0
    for line in text.splitlines():
        parts = line.split()
        if not parts or not parts[0].replace(",", "").isdigit():
            continue
        count = int(parts[0].replace(",", ""))
        if "PROGRAM TOTALS" in line:
            whole = count
        elif line.rstrip().endswith("]") and ":sqlite3_step " in line:
            sqlite = count
    return whole, sqlite


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "chatbot"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--keep", metavar="DIR", help="copy the callgrind dumps into DIR")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            sys.exit(f"{tool} is needed (Debian: apt-get install valgrind)")
    if not os.path.exists(args.bin):
        sys.exit(f"no binary at {args.bin}; run cargo build --release first, or pass --bin")

    with tempfile.TemporaryDirectory() as work:
        port = free_port()
        env = dict(os.environ, CHATBOT_DATA_DIR=os.path.join(work, "data"), CHATBOT_LOG="warn",
                   CHATBOT_SECRET_KEY="bench-secret-key-0123456789abcdef-0123456789",
                   CHATBOT_LISTEN=f"127.0.0.1:{port}", CHATBOT_WHATSAPP_API_BASE="http://127.0.0.1:9")
        seeded = json.loads(subprocess.run([args.bin, "seed-demo", "--json"], env=env, capture_output=True,
                                           check=True).stdout)
        wa = seeded["tenants"][0]["whatsapp"]
        secret, number = wa["app_secret"], wa["phone_number_id"]
        out = os.path.join(work, "callgrind.out")
        server = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", args.bin,
                                   "serve", "--no-workers"], env=env, cwd=work,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 300
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.time() > deadline or server.poll() is not None:
                    sys.exit("the server did not start under valgrind")
                time.sleep(1)
            healthz = [("GET", "/healthz", None, {})] * args.requests
            send(port, deliveries(200, "warm", secret, number), 16)
            send(port, healthz[:200], 16)
            control = lambda *a: subprocess.run(["callgrind_control", *a, str(server.pid)],
                                                capture_output=True, check=True)
            results = {}
            for name, requests in (("healthz", healthz),
                                   ("webhook", deliveries(args.requests, "run", secret, number))):
                control("-z")
                bad = send(port, requests, args.connections)
                control("-d", name)
                if bad:
                    sys.exit(f"{bad} of {len(requests)} {name} requests were not answered 200")
                dump = max(glob.glob(out + "*"), key=os.path.getmtime)
                results[name] = totals(dump)
                if args.keep:
                    os.makedirs(args.keep, exist_ok=True)
                    shutil.copy(dump, os.path.join(args.keep, f"{name}.out"))
        finally:
            server.terminate()
            server.wait()
    n = args.requests
    print(f"instructions per request, {n} requests over {args.connections} connections, whole process:")
    print(f"GET /healthz         {results['healthz'][0] / n:>10,.0f}")
    print(f"webhook delivery     {results['webhook'][0] / n:>10,.0f}   of which the queue's SQLite statements {results['webhook'][1] / n:,.0f}")


if __name__ == "__main__":
    main()
