"""Integrators generate clients from the spec: generate the Python one and use it.

Usage: python_client.py BASE_URL API_KEY WORK_DIR (run with a Python that has
openapi-python-client 0.29, whose dependencies, httpx and attrs, the generated client needs).

Generates the client from the running server's `/openapi.json` with openapi-python-client and
fails on any warning but the CSV bodies' (the generator takes JSON bodies only), then calls a
few endpoints with it against that server (a demo school's API key): the school, students, a
notice created, read back and listed (the notices API is what an enum written as `allOf` once
made the generator drop), a message to the bot, and an error read as the documented
`ErrorBody` with its `ErrorCode`.
"""
import importlib, os, re, subprocess, sys

base, key, work = sys.argv[1], sys.argv[2], sys.argv[3]
generator = os.path.join(os.path.dirname(sys.executable), "openapi-python-client")
out = subprocess.run(
    [generator, "generate", "--url", f"{base}/openapi.json", "--meta", "none", "--overwrite",
     "--output-path", os.path.join(work, "chatbot_client")],
    capture_output=True, text=True, cwd=work,
)
log = out.stdout + out.stderr
if out.returncode != 0:
    print(log)
    sys.exit(f"openapi-python-client failed (exit {out.returncode})")

# CSV-only or CSV-and-JSON bodies: the generator skips the CSV side, and says so.
CSV_OPERATIONS = {"POST /results/manual-template/", "POST /imports/{kind}/"}
problems = []
lines = log.splitlines()
for i, line in enumerate(lines):
    m = re.match(r"WARNING parsing (\S+ \S+) within", line)
    if m:
        following = "\n".join(lines[i + 1:i + 4])
        if m.group(1) in CSV_OPERATIONS and "Unsupported content type text/csv" in following:
            continue
        problems.append("\n".join(lines[i:i + 3]))
    elif re.search(r"Unable to process schema|Cannot parse response|Cannot take allOf|Invalid property", line):
        problems.append(line)
if problems:
    print(log)
    sys.exit("the Python client generated with warnings:\n" + "\n".join(problems))
print("generated the Python client: no warnings but the CSV bodies'")

sys.path.insert(0, work)
client_pkg = importlib.import_module("chatbot_client")
from chatbot_client.api.school import (  # noqa: E402
    create_notice, get_notice, get_school, list_notices, list_students,
)
from chatbot_client.api.conversations import send_message  # noqa: E402
from chatbot_client.models import (  # noqa: E402
    Audience, ErrorBody, ErrorCode, InboundMessage, NoticeIn, NoticeOut,
)

client = client_pkg.Client(base_url=f"{base}/api/v1/chatbot", headers={"X-API-KEY": key})

school = get_school.sync(client=client)
assert school is not None and school.name, f"school/: {school!r}"
students = list_students.sync(client=client, page_size=2)
assert students is not None and students.count > 0 and len(students.results) == 2, f"students/: {students!r}"
notice = create_notice.sync(client=client, body=NoticeIn(
    title="Sports day", body="Sports day is on Friday; bring water.", audience=Audience.SCHOOL))
assert isinstance(notice, NoticeOut) and notice.audience == Audience.SCHOOL, f"notices/ POST: {notice!r}"
again = get_notice.sync(client=client, id=notice.id)
assert isinstance(again, NoticeOut) and again.title == "Sports day", f"notices/{{id}}/: {again!r}"
listed = list_notices.sync(client=client, page_size=100)
assert listed is not None and any(n.id == notice.id for n in listed.results), "notices/ list misses it"
reply = send_message.sync(client=client, body=InboundMessage(phone="+2348030000002", text="hi", channel="pyclient"))
assert reply is not None and reply.replies, f"messages/: {reply!r}"
missing = get_notice.sync(client=client, id=987654321)
assert isinstance(missing, ErrorBody) and missing.error == ErrorCode.NOT_FOUND, f"a missing notice: {missing!r}"
print(f"called 7 operations with it: {school.name}, {students.count} students, notice {notice.id}, "
      f"{len(reply.replies)} bot replies, a missing notice read as {missing.error.value}")
