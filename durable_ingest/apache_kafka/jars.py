"""Apache Kafka's jars, fetched once from Maven Central into a cache folder.

``pom.xml`` beside this module pins the release; :func:`kafka_jars` runs
Maven's ``dependency:copy-dependencies`` on it into
``<cache>/kafka-<version>/libs`` and writes a marker holding the pom's digest
once every jar is there. A second call finds the marker and runs nothing: it
downloads nothing, and needs neither Maven nor the network.
A changed pom is fetched again; each version has a folder of its own.

The cache is ``$DURABLE_INGEST_CACHE/kafka`` when that is set, else
``$XDG_CACHE_HOME/durable-ingest/kafka`` (``~/.cache/durable-ingest/kafka``): outside
every checkout, so git never sees it. Concurrent fetches (test workers) take
a file lock; the folder appears whole or not at all.

Missing Java, a Java older than 17, missing Maven and a failed download each
raise :class:`StackError` with one line that says what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import StackError

POM = Path(__file__).with_name("pom.xml")
ENV_CACHE = "DURABLE_INGEST_CACHE"
MIN_JAVA = 17
MARKER = "complete"
FETCH_TIMEOUT_S = 900.0


@dataclass(frozen=True, slots=True)
class KafkaJars:
    """A complete classpath of one Apache Kafka release."""

    version: str
    libs: Path

    @property
    def classpath(self) -> str:
        return f"{self.libs}/*"


def kafka_version(pom: Path = POM) -> str:
    """The release the pom pins (its ``kafka.version`` property)."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if found is None:  # pragma: no cover - the shipped pom has it
        raise StackError(f"{pom} names no kafka.version")
    return found.group(1).strip()


def cache_root(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get(ENV_CACHE):
        return Path(env[ENV_CACHE]).expanduser() / "kafka"
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "durable-ingest" / "kafka"


def java_binary() -> str:
    """``java`` of at least version 17; StackError with one line otherwise."""
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "Java is not installed: Apache Kafka 4 needs Java 17 or newer "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"cannot run {java} -version: {exc}") from None
    major = java_major(done.stderr + done.stdout)
    if major is None:
        raise StackError(f"cannot tell the version of {java}: it printed no version line")
    if major < MIN_JAVA:
        raise StackError(f"{java} is Java {major}: Apache Kafka 4 needs Java {MIN_JAVA} or newer")
    return java


def java_major(version_output: str) -> int | None:
    """The major version from ``java -version`` output (``"17.0.15"`` → 17, ``"1.8.0"`` → 8)."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if found is None:
        return None
    major = int(found.group(1))
    if major == 1 and found.group(2) is not None:
        return int(found.group(2))
    return major


def pom_digest(pom: Path = POM) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def cached_jars(cache: Path | None = None, pom: Path = POM) -> KafkaJars | None:
    """The cached classpath of the pinned release, or None if it is not complete."""
    version = kafka_version(pom)
    folder = (cache or cache_root()) / f"kafka-{version}"
    marker = folder / MARKER
    try:
        if marker.read_text().strip() == pom_digest(pom):
            return KafkaJars(version, folder / "libs")
    except OSError:
        pass
    return None


def kafka_jars(cache: Path | None = None, pom: Path = POM) -> KafkaJars:
    """The pinned release's classpath, fetched with Maven the first time only."""
    cache = cache or cache_root()
    found = cached_jars(cache, pom)
    if found is not None:
        return found
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StackError(f"cannot create the Kafka jar cache {cache}: {exc.strerror}") from None
    with _locked(cache / ".lock"):
        found = cached_jars(cache, pom)  # another process may have fetched meanwhile
        if found is not None:
            return found
        return _fetch(cache, pom)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch(cache: Path, pom: Path) -> KafkaJars:
    version = kafka_version(pom)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            f"Maven is not installed: it fetches Apache Kafka {version} from Maven Central "
            "once (Debian: apt-get install maven)"
        )
    folder = cache / f"kafka-{version}"
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".kafka-{version}-", dir=cache))
        staging.chmod(0o755)  # a shared cache stays readable by its other users
        shutil.copyfile(pom, staging / "pom.xml")  # Maven writes nothing next to the shipped pom
    except OSError as exc:
        raise StackError(f"cannot prepare the Kafka jar cache in {cache}: {exc.strerror}") from None
    try:
        command = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(staging / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging / 'libs'}",
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise StackError(
                f"Maven did not fetch Apache Kafka {version} within {FETCH_TIMEOUT_S:.0f} s"
            ) from None
        except OSError as exc:
            raise StackError(f"cannot run {mvn}: {exc.strerror}") from None
        jars = sorted((staging / "libs").glob("*.jar"))
        if done.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
            raise StackError(
                f"Maven could not fetch Apache Kafka {version} (offline, or Maven Central "
                f"unreachable?): {maven_cause(done.stdout + done.stderr)}"
            )
        try:
            (staging / MARKER).write_text(pom_digest(pom) + "\n")
            if folder.exists():
                shutil.rmtree(folder)  # an incomplete fetch, or another pom of the same version
            staging.rename(folder)
        except OSError as exc:
            raise StackError(f"cannot fill the Kafka jar cache {folder}: {exc.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return KafkaJars(version, folder / "libs")


def maven_cause(output: str) -> str:
    """The first meaningful ``[ERROR]`` line of Maven's output, shortened."""
    for line in output.splitlines():
        text = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        if text.startswith("[ERROR]"):
            text = text.removeprefix("[ERROR]").strip()
            if text and not text.startswith(("->", "To see", "Re-run", "For more")):
                return text[:300]
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "it printed nothing"
