"""``ingest new-source NAME``: a new connector that follows the folder contract.

:func:`scaffold` writes, from the templates in ``durable_ingest/templates/new_source``
(``common/`` plus ``websocket/`` or ``http/``):

* ``source_workers/connectors/<name>/``: ``source.py`` (settings from
  ``<NAME>_*`` variables, ``control``, ``start``), ``resources/events.py``
  (one resource, ``parse`` and ``process``), ``pipeline.py`` (``build``
  and ``CONNECTOR = ConnectorSpec(...)``), ``workflow.py``;
* ``schemas/<name>/events.avsc``;
* ``tests/servers/<name>.py``: a local provider speaking the protocol
  ``source.py`` expects;
* ``tests/unit/test_<name>_resource.py`` and
  ``tests/integration/test_<name>_source.py``, which pass as generated: the
  second runs ``ingest dev <name>`` against the local provider and reads the
  rows back from ClickHouse.

It refuses an invalid name, an existing connector, and any file that
already exists (nothing is written then).
"""

from __future__ import annotations

import ast
import keyword
import re
from pathlib import Path
from string import Template

from foundation.errors import ConfigError

KINDS = ("websocket", "http")
TEMPLATES = Path(__file__).parent / "templates" / "new_source"
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,23}$")
_RESERVED = {"ingest", "source", "sink", "stack", "test", "tests", "common"}


def default_root() -> Path:
    """The checkout the ``source_workers`` package is imported from."""
    import source_workers

    return Path(source_workers.__file__).resolve().parents[1]


def check_name(name: str, existing: set[str]) -> None:
    if not _NAME.match(name) or name.endswith("_") or "__" in name:
        raise ConfigError(
            f"connector name {name!r} is not valid: 2 to 24 lowercase letters, digits and "
            "single '_', starting with a letter (it becomes a package, a topic prefix and "
            "the <NAME>_ of its environment variables)"
        )
    if keyword.iskeyword(name) or name in _RESERVED:
        raise ConfigError(f"connector name {name!r} is reserved: choose another")
    if name in existing:
        raise ConfigError(
            f"connector {name} already exists (source_workers/connectors/{name}): "
            "new-source never overwrites one"
        )


def variables(name: str, kind: str) -> dict[str, str]:
    prefix = name.upper()
    return {
        "name": name,
        "Name": "".join(part.capitalize() for part in name.split("_")),
        "PREFIX": prefix,
        "kind": kind,
        "url_env": f"{prefix}_WS_URL" if kind == "websocket" else f"{prefix}_URL",
    }


def plan(name: str, kind: str, root: Path) -> dict[Path, str]:
    """Every file to write (absolute path) and its text."""
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    values = variables(name, kind)
    files: dict[Path, str] = {}
    for base in (TEMPLATES / "common", TEMPLATES / kind):
        for template in sorted(base.rglob("*.tmpl")):
            relative = template.relative_to(base).as_posix().removesuffix(".tmpl")
            target = root / relative.replace("{name}", name)
            files[target] = Template(template.read_text()).substitute(values)
    return files


def settings_variables(source_text: str, prefix: str) -> list[str]:
    """The ``<PREFIX>_<FIELD>`` variables of the ``...Settings`` model in a connector's
    ``source.py`` (its annotated fields, or their ``alias``)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source_text)):
        if isinstance(node, ast.ClassDef) and node.name.endswith("Settings"):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    field = item.target.id
                    if isinstance(item.value, ast.Call):
                        for kw in item.value.keywords:  # not `keyword`: the module is used
                            if kw.arg == "alias" and isinstance(kw.value, ast.Constant):
                                field = str(kw.value.value)
                    names.append(f"{prefix}_{field.upper()}")
    return names


def config_block(name: str, kind: str, variables: list[str]) -> str:
    """The commented ``ingest.toml`` block that names a new connector and its variables."""
    lines = [
        "",
        f"# {name} ({kind} connector, made by ingest new-source). Uncomment to run it",
        f"# (ingest source run {name}). Environment: {', '.join(variables)}.",
        f"# [sources.{name}]",
        "",
    ]
    return "\n".join(lines)


def scaffold(name: str, kind: str = "websocket", root: Path | None = None) -> list[Path]:
    """Write a new connector into the checkout at ``root``; the files written."""
    root = (root or default_root()).resolve()
    connectors = root / "source_workers" / "connectors"
    for needed in (connectors, root / "schemas", root / "tests" / "servers"):
        if not needed.is_dir():
            raise ConfigError(
                f"{root} is not a durable-ingest checkout ({needed.relative_to(root)} is "
                "missing): run new-source in one, or pass --root"
            )
    existing = {p.name for p in connectors.iterdir() if p.is_dir()}
    check_name(name, existing)
    files = plan(name, kind, root)
    taken = [path for path in files if path.exists()]
    if taken:
        raise ConfigError(
            f"{taken[0].relative_to(root)} already exists: new-source never overwrites a file"
        )
    written: list[Path] = []
    config = root / "ingest.toml"
    source = next(p for p in files if p.name == "source.py")
    block = config_block(name, kind, settings_variables(files[source], name.upper()))
    before = config.read_text(encoding="utf-8") if config.exists() else None
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as handle:
                handle.write(text)
            written.append(path)
        if before is not None:
            # Every connector variable is named in the shipped configuration
            # (tests/unit/test_shipped_config.py): the new one's too, commented.
            config.write_text(before.rstrip("\n") + "\n" + block, encoding="utf-8")
            written.append(config)
    except OSError as exc:
        for path in reversed(written):
            if path != config:
                path.unlink(missing_ok=True)
        if before is not None:
            config.write_text(before, encoding="utf-8")
        raise ConfigError(f"cannot write the new connector: {exc}") from None
    return written
