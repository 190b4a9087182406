"""docs/new-source.md, followed mechanically: from ``ingest new-source`` to rows in chDB.

In a copy of this checkout without the committed ``usgs`` example (the state
before the walkthrough), the test does what the page says, in the page's
order: it runs each ``<!-- run -->`` block with bash (``.venv/bin/`` meaning
the running interpreter's bin directory), starts each
``<!-- run: background -->`` block as a terminal of its own and pastes the
``export NAME=...`` line it prints over the page's ``export NAME=...`` lines,
and writes each ``<!-- file: PATH -->`` block to PATH. Then: the files it
produced are the committed ones byte for byte (the page and the example
cannot drift apart), and the page's ``ingest dev usgs`` put every revision of
the local feed into chDB.

The page's test step runs its lint and type checks, and its pytest command
collects the tests without running them: the files are the committed ones,
byte for byte, and the suite runs those same tests itself. The collected count
must be the count the page shows as passed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.integration.test_new_source import copy_checkout
from tests.servers.usgs import UsgsProvider

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "new-source.md"
EXAMPLE = (
    "source_workers/connectors/usgs",
    "schemas/usgs",
    "tests/servers/usgs.py",
    "tests/unit/test_usgs_resource.py",
    "tests/integration/test_usgs_source.py",
)
"""Everything the walkthrough produces, as committed."""
GENERATED_AS_IS = {
    "source_workers/connectors/usgs/__init__.py",
    "source_workers/connectors/usgs/resources/__init__.py",
    "source_workers/connectors/usgs/workflow.py",
}
"""What ``ingest new-source`` writes and the page keeps unchanged."""
_BLOCK = re.compile(
    r"^<!-- (run|run: background|file: (?P<path>\S+)) -->\n```[\w-]*\n(?P<body>.*?)^```$"
    r"(?:\n\n```text\n(?P<shown>.*?)^```$)?",
    re.MULTILINE | re.DOTALL,
)
_PROGRESS = re.compile(r"^\d\d:\d\d  staged ")
_MARKER = re.compile(r"^<!-- (run|run: background|file: \S+) -->$", re.MULTILINE)
_EXPORT = re.compile(r"^export (\w+)=")
_PYTEST = re.compile(r"^(\S*python -m pytest)\b(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Step:
    kind: str
    """``run``, ``background`` or ``file``."""
    body: str
    path: str = ""
    shown: str = ""
    """The output the page shows right under a ``run`` block (a ``text`` block), if any."""


def steps(text: str) -> list[Step]:
    """The page's marked blocks, in order; a marker not followed by a code block fails."""
    found = [
        Step(
            "file" if m["path"] else m.group(1).removeprefix("run: "),
            m["body"],
            m["path"] or "",
            m["shown"] or "",
        )
        for m in _BLOCK.finditer(text)
    ]
    assert len(found) == len(_MARKER.findall(text)), "a marker without a code block under it"
    return found


def shape(line: str) -> re.Pattern[str]:
    """A shown output line as a pattern: ``...`` stands for anything, every number for any
    number; the words must be the ones printed (runs of spaces count as one)."""
    pattern = re.escape(" ".join(line.split()))
    pattern = re.sub(r"(?:\\\.){3,}", ".*?", pattern)  # one wildcard for any run of 3+ dots
    pattern = re.sub(r"(\\\.)?\d+(\\\.\d+)?", r"[\\d.,]+", pattern)
    return re.compile(pattern)


def unseen(shown: str, printed: str) -> list[str]:
    """The lines the page shows that the command did not print (by shape). Progress lines
    vary from run to run: only their trailing notes, like ``(source not connected)``, must
    be printed too."""
    actual = [" ".join(ln.split()) for ln in printed.splitlines() if ln.strip()]
    missing = []
    for line in shown.splitlines():
        if not line.strip():
            continue
        if _PROGRESS.match(line):
            notes = re.findall(r"\([a-z][^()]*\)$", line.strip())
            missing += [note for note in notes if note not in printed]
            continue
        pattern = shape(line)
        if not any(pattern.fullmatch(a) for a in actual):
            missing.append(line)
    return missing


def files_under(tree: Path) -> dict[str, bytes]:
    """The example's files in ``tree`` (caches aside), by relative path."""
    found: dict[str, bytes] = {}
    for name in EXAMPLE:
        top = tree / name
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                found[path.relative_to(tree).as_posix()] = path.read_bytes()
    return found


def test_the_page_writes_every_file_of_the_example_it_does_not_keep() -> None:
    """Each committed file is written in full by the page or kept as ingest new-source
    generated it; the page writes nothing outside the example; commands come in order."""
    page = steps(PAGE.read_text())
    written = [s.path for s in page if s.kind == "file"]
    committed = set(files_under(ROOT))
    assert len(written) == len(set(written)), "a file written twice"
    assert set(written) | GENERATED_AS_IS == committed
    assert not set(written) & GENERATED_AS_IS
    kinds = [s.kind for s in page]
    scaffold = [i for i, s in enumerate(page) if "ingest new-source usgs --kind http" in s.body]
    assert scaffold and scaffold[0] < kinds.index("file"), "scaffold first, then write files"
    dev = [i for i, s in enumerate(page) if s.kind == "run" and "ingest dev usgs" in s.body]
    sql = [i for i, s in enumerate(page) if s.kind == "run" and "ingest sql" in s.body]
    assert dev and sql and kinds.index("background") < dev[0] < sql[0]


class Terminal:
    """Runs the page's commands in ``tree`` as a newcomer's terminal would."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "USGS_"))}
        self.env["PYTHONPATH"] = str(tree)
        self.bin = f"{Path(sys.executable).parent}/"
        self.pasted: dict[str, str] = {}
        """NAME -> the ``export NAME=...`` line a background command printed."""
        self.background: list[subprocess.Popen[str]] = []
        self.outputs: list[tuple[str, str]] = []

    def script(self, body: str) -> str:
        """The block as the newcomer runs it: a pasted ``export`` line in place of the
        page's, and what it exports kept for the commands after it, as a terminal keeps it."""
        lines = []
        for line in body.splitlines():
            export = _EXPORT.match(line)
            if export and export[1] in self.pasted:
                line = self.pasted[export[1]]
                value = line.split("=", 1)[1].split("#", 1)[0].strip()
                self.env[export[1]] = value
            lines.append(line.replace(".venv/bin/", self.bin))
        return "\n".join(lines)

    def run(self, body: str) -> None:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.script(body)],
            cwd=self.tree,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{body}\n{done.stdout}\n{done.stderr}"
        self.outputs.append((body, done.stdout + done.stderr))

    def start(self, body: str) -> None:
        process = subprocess.Popen(
            ["bash", "-c", "exec " + self.script(body).strip()],
            cwd=self.tree,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.background.append(process)
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        export = _EXPORT.match(line)
        assert export, f"{body} printed {line!r}, not an export line"
        self.pasted[export[1]] = line

    def output_of(self, command: str) -> str:
        return "\n".join(out for body, out in self.outputs if command in body)

    def close(self) -> None:
        for process in self.background:
            process.terminate()
            process.communicate(timeout=30)


def test_the_walkthrough_builds_the_committed_example_end_to_end(tmp_path: Path) -> None:
    """Scaffold, write the files, check them, run ingest dev against the local feed: the
    files are the committed ones, the page's test count is right, the revisions are rows
    in chDB."""
    tree = copy_checkout(tmp_path / "checkout")
    shutil.copy2(ROOT / "ingest.toml", tree / "ingest.toml")
    for name in EXAMPLE:  # the state before the walkthrough
        path = tree / name
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)
    terminal = Terminal(tree)
    try:
        for step in steps(PAGE.read_text()):
            if step.kind == "file":
                target = tree / step.path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(step.body)
            elif step.kind == "background":
                terminal.start(step.body)
            elif _PYTEST.search(step.body):
                collect = _PYTEST.sub(r"\1 --collect-only -n0\2", step.body)
                terminal.run(collect)
                claimed = re.search(r"^(\d+) passed", step.shown, re.MULTILINE)
                assert claimed, f"the page shows no passed count under:\n{step.body}"
                printed = terminal.outputs[-1][1]
                assert f"{claimed[1]} tests collected" in printed, f"{collect}\n{printed}"
            else:
                terminal.run(step.body)
                if step.shown:  # the page shows what the command prints, still
                    printed = terminal.outputs[-1][1]
                    assert unseen(step.shown, printed) == [], f"{step.body}\n{printed}"
    finally:
        terminal.close()
    # (1) What the page produced is what is committed.
    produced, committed = files_under(tree), files_under(ROOT)
    assert sorted(produced) == sorted(committed)
    assert [p for p in committed if produced[p] != committed[p]] == []
    # (2) The page's test step collected as many tests as it shows passing (the suite
    # runs them: they are the committed files).
    tests = terminal.output_of("-m pytest")
    assert not re.search(r"error|skipped|deselected", tests), tests
    # (3) The page's ingest dev wrote every revision of the local feed: rows in chDB.
    revisions = UsgsProvider().revisions()
    dev = terminal.output_of("ingest dev usgs")
    assert f"done: {len(revisions)} records staged" in dev, dev
    assert f"usgs_earthquakes: {len(revisions)} rows" in dev, dev
    assert "reviewed" in terminal.output_of("ingest sql")
    query = subprocess.run(
        [
            sys.executable,
            "-m",
            "durable_ingest.cli",
            "sql",
            "SELECT id, toUnixTimestamp64Milli(updated) FROM usgs_earthquakes FINAL "
            "ORDER BY id, updated",
            "--format",
            "json",
        ],
        cwd=tree,
        env=terminal.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert query.returncode == 0, query.stderr
    assert [tuple(row) for row in json.loads(query.stdout)["rows"]] == revisions
