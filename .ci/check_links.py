"""Relative links in the project's Markdown documents resolve: to a file that exists, and, for
a `#heading`, to a heading of that document. Run from the clone's root (`.ci/run` does)."""
import pathlib, re, subprocess, sys

def slug(title):
    s = title.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")

files = subprocess.run(["git", "ls-files", "*.md"], capture_output=True, text=True, check=True).stdout.split()
anchors = {}
for f in files:
    text = pathlib.Path(f).read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    anchors[pathlib.Path(f).resolve()] = {slug(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}
bad = []
for f in files:
    text = pathlib.Path(f).read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("<"):
            continue
        path, _, anchor = target.partition("#")
        dest = (pathlib.Path(f).parent / path).resolve() if path else pathlib.Path(f).resolve()
        if not dest.exists():
            bad.append(f"{f}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors.get(dest, set()):
            bad.append(f"{f}: {target} (no such heading)")
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
