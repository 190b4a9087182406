"""The architecture stays visible: layers with one-way imports and no import cycle, a pure
core without I/O, and third-party clients at one edge each (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("foundation", "durable_ingest", "staging", "source_workers", "sink_workers", "schemas")
# The layers, bottom up: a module imports from its own layer and the ones below, never
# from above. schemas/ holds the Avro files (data); the workers never import the CLI.
LAYERS = {
    "foundation": 0,
    "schemas": 0,
    "staging": 1,
    "source_workers": 2,
    "sink_workers": 2,
    "durable_ingest": 3,
}
PURE = (
    "staging/codec.py",
    "staging/schemas.py",
    "staging/resource.py",
    "staging/envelope.py",
    "staging/avro_fast.py",
    "staging/record_check.py",
    "staging/decoder.py",
    "staging/offsets.py",
    "staging/protocol.py",
    "staging/checkpoints.py",
    "foundation/config.py",
    "foundation/errors.py",
    "sink_workers/tables.py",
    "sink_workers/columns.py",
    "sink_workers/batching.py",
    "sink_workers/containers.py",
    "staging/restage.py",
    "durable_ingest/operations/replay_avro.py",
    "staging/deadletters.py",
    "foundation/metrics.py",
    "source_workers/authoring.py",
    "source_workers/frames.py",
    "foundation/backoff.py",
    "source_workers/buffer.py",
    "source_workers/transport/urls.py",
    "source_workers/transport/answers.py",
    "source_workers/transport/protocol.py",
    "source_workers/transport/memory.py",
    "source_workers/connectors/coinbase/trades.py",
    "source_workers/connectors/coinbase/resources/matches.py",
    "source_workers/capture.py",
    "durable_ingest/progress.py",
    "durable_ingest/render.py",
    "durable_ingest/operations/status.py",
    "durable_ingest/operations/replay_plan.py",
    "durable_ingest/operations/replay_keys.py",
    "durable_ingest/apache_kafka/layout.py",
    "staging/times.py",
    "sink_workers/sink_metrics.py",
)
IO_LIBRARIES = (
    "confluent_kafka",
    "clickhouse_connect",
    "chdb",
    "websockets",
    "httpx",
    "socket",
    "subprocess",
)
# Where each third-party client may be imported (its adapter), and nowhere else.
EDGES = {
    "confluent_kafka": ("staging/kafka/",),
    "clickhouse_connect": ("sink_workers/clickhouse/warehouse.py", "sink_workers/clickhouse/"),
    "websockets": ("source_workers/transport/",),
    "httpx": ("source_workers/transport/http.py",),
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def modules() -> list[Path]:
    return [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Every project module and the project modules it imports: at the top, inside
    functions and under ``TYPE_CHECKING`` alike (a type-only loop is still a loop)."""
    paths = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:  # `from pkg import module` imports the module
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in paths else base)
        resolved = set()
        for target in targets:
            while target and target not in paths:
                target = target.rpartition(".")[0]
            if target and target != name:
                resolved.add(target)
        graph[name] = resolved
    return graph


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if layers[target.split(".")[0]] > layers[module.split(".")[0]]
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            if target.split(".")[0] != module.split(".")[0]:
                result.setdefault(module.split(".")[0], set()).add(target.split(".")[0])
    return result


def test_every_package_has_a_layer() -> None:
    assert set(PACKAGES) == set(LAYERS)


def test_no_import_runs_up_a_layer() -> None:
    """foundation < staging < source_workers, sink_workers < durable_ingest (the CLI,
    dev mode, the stack, operations): so no worker imports the CLI."""
    assert upward_imports(import_graph(ROOT, PACKAGES), LAYERS) == []


def test_no_import_cycle() -> None:
    """No two modules import each other, even through others or only for types, and no
    two packages do (sink_workers may use source_workers' connectors, not the reverse)."""
    graph = import_graph(ROOT, PACKAGES)
    assert cycles(graph) == []
    assert cycles(package_graph(graph)) == []


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    """A planted upward import, module loop and package loop are each reported."""
    files = {
        "low/__init__.py": "",
        "low/a.py": "from low import b\n",
        "low/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from low.a import X\n",
        "low/c.py": "def f():\n    from high.cli import main\n",
        "high/__init__.py": "",
        "high/cli.py": "from low.c import f\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, ("low", "high"))
    assert upward_imports(graph, {"low": 0, "high": 1}) == ["low.c imports high.cli"]
    assert sorted(cycles(graph)) == [["high.cli", "low.c"], ["low.a", "low.b"]]
    assert cycles(package_graph(graph)) == [["high", "low"]]


@pytest.mark.parametrize("module", PURE)
def test_pure_core_does_no_io(module: str) -> None:
    """Pure modules import no Kafka, ClickHouse, websocket, socket or process library."""
    assert not imports(ROOT / module) & set(IO_LIBRARIES)


def test_third_party_clients_stay_in_their_adapter() -> None:
    """confluent_kafka only in staging/kafka/, clickhouse_connect in the warehouse modules,
    websockets only in source_workers/transport/, httpx only in its http.py."""
    offenders = []
    for path in modules():
        relative = path.relative_to(ROOT).as_posix()
        for library, edge in EDGES.items():
            if library in imports(path) and not relative.startswith(edge):
                offenders.append(f"{relative} imports {library}")
    assert offenders == []


def test_modules_stay_small() -> None:
    """No module passes about 400 lines: split by concept before that."""
    long = {
        p.relative_to(ROOT).as_posix(): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > 420
    }
    assert long == {}
