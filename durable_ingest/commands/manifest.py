"""``ingest manifest [--out FILE | --check [FILE]]``: the component manifest.

Prints the manifest that :mod:`durable_ingest.manifest` builds from the code
(every connector's source, resources, schemas, targets, checkpoint shape,
settings and extension points) as JSON; ``--out FILE`` writes it instead.
``--check`` compares FILE (default: ``docs/manifest.json`` of the checkout this
package runs from) with the code and exits 2 with one line naming the first
difference, e.g. ``connectors.coinbase.resources.matches.key``. See
docs/manifest.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from durable_ingest.commands import Subcommands
from foundation.config import Settings
from foundation.errors import StopError

_DEFAULT = ""  # --check without FILE


def register(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "manifest",
        help="the component manifest (connectors, resources, schemas, settings, extension "
        "points) as JSON, built from the code",
    )
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--out", type=Path, metavar="FILE", help="write it to FILE (e.g. docs/manifest.json)"
    )
    modes.add_argument(
        "--check",
        nargs="?",
        const=_DEFAULT,
        default=None,
        metavar="FILE",
        help="exit 2 naming the first difference when FILE (default: the checkout's "
        "docs/manifest.json) differs from the code",
    )
    parser.set_defaults(handler=_manifest, needs_settings=False)


def _manifest(args: argparse.Namespace, _settings: Settings) -> int:
    from durable_ingest.manifest import build, render

    manifest = build()
    if args.check is not None:
        file = Path(args.check) if args.check != _DEFAULT else default_file()
        check(file, manifest)
        print(f"{file}: up to date with the code")
        return 0
    text = render(manifest)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text, encoding="utf-8", newline="\n")
    except OSError as exc:
        raise StopError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"wrote {args.out}")
    return 0


def default_file() -> Path:
    """``docs/manifest.json`` of the checkout this package is imported from."""
    import durable_ingest
    from durable_ingest.manifest import DEFAULT_PATH

    root = Path(durable_ingest.__file__).resolve().parents[1]
    if not ((root / "pyproject.toml").is_file() and (root / "docs").is_dir()):
        raise StopError(
            "no docs/ folder beside this durable-ingest (an installed package has none): "
            "pass the manifest to compare, as in `ingest manifest --check FILE`"
        )
    file = root / DEFAULT_PATH
    cwd = Path.cwd().resolve()
    return file.relative_to(cwd) if file.is_relative_to(cwd) else file


def check(file: Path, manifest: dict[str, Any]) -> None:
    """Raise StopError (one line) unless ``file`` holds ``manifest`` as ``render`` writes it."""
    from durable_ingest.manifest import render

    fix = f"regenerate it with `ingest manifest --out {file}`"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StopError(
            f"{file} does not exist: write it with `ingest manifest --out {file}`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StopError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        written = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StopError(
            f"{file} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): {fix}"
        ) from None
    difference = first_difference(manifest, written)
    if difference is not None:
        raise StopError(f"{file} differs from the code at {difference}: {fix}")
    if text != render(manifest):
        raise StopError(f"{file} holds the manifest but not as `ingest manifest` writes it: {fix}")


def first_difference(code: Any, file: Any, path: str = "") -> str | None:
    """Where ``file`` first differs from ``code`` (in sorted-key order), in one line, or
    None. Paths read like ``connectors.coinbase.resources.matches.key``."""
    if isinstance(code, dict) and isinstance(file, dict):
        for key in sorted(set(code) | set(file)):
            where = f"{path}.{key}" if path else str(key)
            if key not in file:
                return f"{where}: the code has {_brief(code[key])}, the file has nothing"
            if key not in code:
                return f"{where}: the file has {_brief(file[key])}, the code has nothing"
            found = first_difference(code[key], file[key], where)
            if found is not None:
                return found
        return None
    if isinstance(code, list) and isinstance(file, list):
        for index, (ours, theirs) in enumerate(zip(code, file, strict=False)):
            found = first_difference(ours, theirs, f"{path}[{index}]")
            if found is not None:
                return found
        if len(code) != len(file):
            return f"{path}: the code has {len(code)} items, the file has {len(file)}"
        return None
    if type(code) is not type(file) or code != file:
        return f"{path or '(top level)'}: the code has {_brief(code)}, the file has {_brief(file)}"
    return None


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
