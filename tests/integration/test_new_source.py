"""``ingest new-source``: what it generates passes lint, types and its own tests, untouched.

Each test works on a copy of this checkout in a temporary directory (the
generated files never land in the real tree), imported first through
``PYTHONPATH``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPIED = (
    "pyproject.toml",
    "ingest.toml",
    "foundation",
    "durable_ingest",
    "staging",
    "source_workers",
    "sink_workers",
    "schemas",
)
LONG = "a" * 20 + "_b2c"  # the longest name allowed: 24 characters


def copy_checkout(target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ingest")
    target.mkdir(parents=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    # The test suite's shared parts, without its test modules.
    shutil.copytree(
        ROOT / "tests", target / "tests", ignore=shutil.ignore_patterns("test_*.py", "__pycache__")
    )
    # The folder contract and the shipped configuration's, for the new connectors.
    for kept in ("tests/unit/test_connector_contract.py", "tests/unit/test_shipped_config.py"):
        shutil.copy2(ROOT / kept, target / kept)
    return target


def python(tree: Path, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env["PYTHONPATH"] = str(tree)
    return subprocess.run(
        [sys.executable, *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def new_source(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return python(tree, "-m", "durable_ingest.cli", "new-source", *args, timeout_s=60)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    yield copy_checkout(tmp_path / "checkout")


def generated(tree: Path, name: str) -> list[str]:
    return [
        f"source_workers/connectors/{name}",
        f"tests/servers/{name}.py",
        f"tests/unit/test_{name}_resource.py",
        f"tests/integration/test_{name}_source.py",
    ]


def test_both_kinds_generate_connectors_whose_tests_pass_untouched(tree: Path) -> None:
    for name, kind in (("wsdemo", "websocket"), (LONG, "http")):
        done = new_source(tree, name, "--kind", kind)
        assert done.returncode == 0, done.stderr
        assert f"created {tree / 'schemas' / name / 'events.avsc'}" in done.stdout
        assert f"named its variables in {tree / 'ingest.toml'}" in done.stdout
    files = [*generated(tree, "wsdemo"), *generated(tree, LONG)]
    lint = python(tree, "-m", "ruff", "check", *files)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    formatted = python(tree, "-m", "ruff", "format", "--check", *files)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    typed = python(
        tree, "-m", "mypy", "source_workers/connectors/wsdemo", f"source_workers/connectors/{LONG}"
    )
    assert typed.returncode == 0, typed.stdout + typed.stderr
    tests = python(
        tree,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/unit/test_wsdemo_resource.py",
        f"tests/unit/test_{LONG}_resource.py",
        "tests/integration/test_wsdemo_source.py",
        f"tests/integration/test_{LONG}_source.py",
        "tests/unit/test_connector_contract.py",
        "tests/unit/test_shipped_config.py",
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "skipped" not in tests.stdout and "deselected" not in tests.stdout, tests.stdout
    # The new connectors are connectors: found by folder, with their defaults.
    found = python(
        tree, "-c", "from source_workers.connectors import CONNECTORS; print(','.join(CONNECTORS))"
    )
    assert {"wsdemo", LONG} <= set(found.stdout.strip().split(","))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["coinbase"], "connector coinbase already exists"),
        (["Quakes"], "is not valid"),
        (["q"], "is not valid"),
        (["a__b"], "is not valid"),
        (["x" * 25], "is not valid"),
        (["class"], "is reserved"),
        (["ingest"], "is reserved"),
        (["fine", "--root", "/"], "is not a durable-ingest checkout"),
    ],
)
def test_bad_names_and_places_are_refused_in_one_line(
    tree: Path, args: list[str], message: str
) -> None:
    done = new_source(tree, *args)
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("ingest: error:") and message in done.stderr
    assert done.stderr.count("\n") == 1


def test_nothing_is_overwritten_or_half_written(tree: Path) -> None:
    mine = tree / "tests" / "servers" / "taken.py"
    mine.write_text("# my own file\n")
    done = new_source(tree, "taken")
    assert done.returncode == 2 and "tests/servers/taken.py already exists" in done.stderr
    assert mine.read_text() == "# my own file\n"
    assert not (tree / "source_workers" / "connectors" / "taken").exists()
    assert not (tree / "schemas" / "taken").exists()
    again = new_source(tree, "fresh")
    assert again.returncode == 0
    twice = new_source(tree, "fresh")
    assert twice.returncode == 2 and "connector fresh already exists" in twice.stderr
