"""The loopback Apache Kafka cluster's layout and node properties, and the jar cache. Pure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from durable_ingest.apache_kafka.jars import (
    ENV_CACHE,
    MARKER,
    KafkaJars,
    cache_root,
    cached_jars,
    java_major,
    kafka_jars,
    kafka_version,
    maven_cause,
    pom_digest,
)
from durable_ingest.apache_kafka.layout import (
    ClusterLayout,
    meta_cluster_id,
    plan_layout,
    render_properties,
)
from foundation.errors import StackError


def three() -> ClusterLayout:
    return plan_layout("abc", "4.1.1", [9092, 9093, 9094], [19092, 19093, 19094])


def test_three_combined_nodes_replicate_three_times_with_two_in_sync() -> None:
    """From 3 brokers on, topics default to 3 replicas and min.insync.replicas 2."""
    layout = three()
    assert layout.bootstrap == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert (layout.replication_factor, layout.min_insync_replicas) == (3, 2)
    props = layout.properties(layout.node(2), Path("/data/node-2"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094"
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9093"
    for key in ("default.replication.factor", "offsets.topic.replication.factor"):
        assert props[key] == "3"
    for key in ("min.insync.replicas", "transaction.state.log.min.isr"):
        assert props[key] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    assert props["log.dirs"] == "/data/node-2"


def test_one_node_holds_one_replica_and_a_broker_only_node_listens_once() -> None:
    """One node: replication factor 1; a node past the controllers is a broker only."""
    one = plan_layout("x", "4.1.1", [9092], [19092])
    assert (one.replication_factor, one.min_insync_replicas) == (1, 1)
    assert one.properties(one.node(1), Path("d"))["offsets.topic.replication.factor"] == "1"
    mixed = plan_layout("x", "4.1.1", [1, 2, 3], [11])
    broker = mixed.properties(mixed.node(3), Path("d"))
    assert broker["process.roles"] == "broker"
    assert broker["listeners"] == "PLAINTEXT://127.0.0.1:3"
    assert broker["controller.quorum.voters"] == "1@127.0.0.1:11"


@pytest.mark.parametrize(("brokers", "controllers"), [(1, 2), (3, 0), (5, 4)])
def test_controller_counts_out_of_range_are_refused(brokers: int, controllers: int) -> None:
    """Between 1 and min(3, brokers) controllers."""
    with pytest.raises(StackError, match="--controllers must be between 1 and"):
        plan_layout("x", "4.1.1", list(range(1, brokers + 1)), list(range(11, 11 + controllers)))


def test_the_layout_survives_its_file_and_a_foreign_file_is_refused(tmp_path: Path) -> None:
    """cluster.json round-trips; a file that is not one is one clear error."""
    layout = three()
    assert ClusterLayout.from_json(layout.to_json(), tmp_path) == layout
    with pytest.raises(StackError, match="is not a cluster layout"):
        ClusterLayout.from_json('{"nodes": 3}', tmp_path / "cluster.json")


def test_properties_render_and_meta_is_read() -> None:
    """Properties are key=value lines; meta.properties gives its cluster.id."""
    assert render_properties({"a": "1", "b.c": "x"}) == "a=1\nb.c=x\n"
    meta = "#\n#Fri Dec 04\nnode.id=1\nversion=1\ncluster.id=eWrmGJYRSeGHVNfwmUVoyw\n"
    assert meta_cluster_id(meta) == "eWrmGJYRSeGHVNfwmUVoyw"
    assert meta_cluster_id("node.id=1\n") is None


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("no version here", None),
    ],
)
def test_java_versions_are_read_from_java_version(output: str, major: int | None) -> None:
    assert java_major(output) == major


def test_maven_cause_is_its_first_real_error_line() -> None:
    """The one line a failed fetch reports: Maven's first [ERROR], colours stripped."""
    output = (
        "\x1b[1;31m[ERROR]\x1b[m Failed to execute goal on project x: Could not resolve "
        "dependencies for project io:x:pom:1: Could not transfer artifact\n"
        "[ERROR] -> [Help 1]\n[ERROR] To see the full stack trace\n"
    )
    assert maven_cause(output).startswith("Failed to execute goal on project x")
    assert maven_cause("") == "it printed nothing"


def test_the_cache_is_outside_the_checkout_unless_named() -> None:
    """$DURABLE_INGEST_CACHE names it; else the user's cache folder."""
    assert cache_root({ENV_CACHE: "/c"}) == Path("/c/kafka")
    assert cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/durable-ingest/kafka")


def test_a_complete_cache_is_used_without_maven(tmp_path: Path) -> None:
    """Fetching twice downloads nothing: a cache with the pom's marker runs no Maven at all
    (here there is no Maven, and no Java, on PATH)."""
    version = kafka_version()
    libs = tmp_path / f"kafka-{version}" / "libs"
    libs.mkdir(parents=True)
    (libs / f"kafka_2.13-{version}.jar").write_bytes(b"")
    assert cached_jars(tmp_path) is None  # no marker yet: not complete
    (libs.parent / MARKER).write_text(pom_digest() + "\n")
    code = (
        "import sys; from pathlib import Path; "
        "from durable_ingest.apache_kafka.jars import kafka_jars; "
        "print(kafka_jars(Path(sys.argv[1])).libs)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env={**os.environ, "PATH": str(tmp_path / "empty")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(libs)
    # A marker of another pom (a changed release) is not complete.
    (libs.parent / MARKER).write_text("0" * 64 + "\n")
    assert cached_jars(tmp_path) is None


def test_no_maven_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty cache and no Maven: one line that says what to install."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(StackError, match=r"Maven is not installed: .*apt-get install maven"):
        kafka_jars(tmp_path / "cache")


def test_kafka_opts_come_after_our_jvm_options_and_a_bad_list_is_one_line(tmp_path: Path) -> None:
    """``$KAFKA_OPTS``, as Kafka's own scripts take it: options after ours (the last of a
    repeated JVM option wins), quoted words kept whole."""
    from durable_ingest.apache_kafka.node import Node  # only here: the rest is layout

    layout = plan_layout("x", "4.1.1", [9092], [19092])
    node = Node(layout.nodes[0], tmp_path, "java", KafkaJars("4.1.1", tmp_path))
    plain = node.command(tmp_path / "n.properties")
    tuned = node.command(tmp_path / "n.properties", "-Xmx1g -Dname='a b'")
    assert tuned[: len(plain) - 4] == plain[:-4]
    assert tuned[len(plain) - 4 : len(plain) - 2] == ["-Xmx1g", "-Dname=a b"]
    assert tuned[-4:] == plain[-4:] and plain[-2] == "kafka.Kafka"
    with pytest.raises(StackError, match="KAFKA_OPTS is not a valid option list"):
        node.command(tmp_path / "n.properties", "-Dname='unclosed")
