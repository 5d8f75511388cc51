"""The project's own single-node Apache Kafka broker (KRaft) on 127.0.0.1, for the demo and the tests.

The broker jars come from Maven Central through the machine's Maven into ``Settings.kafka_home`` (a
git-ignored cache, reused), the storage directory is formatted once, and the broker runs as a detached
JVM whose pid is kept in ``Settings.kafka_run_dir/broker.pid`` so that whoever started it stops it.
Every operation is idempotent: starting a running broker or stopping a stopped one is a no-op.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import LocalKafkaError
from streams.settings import Settings

log = logging.getLogger(__name__)

# The logging backend for the broker: Kafka 3.9 logs through slf4j 1.7 and reload4j.
_LOGGING_ARTIFACT = ("org.slf4j", "slf4j-reload4j", "1.7.36")

_POM_TEMPLATE = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamcdp.local</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>{lg}</groupId><artifactId>{la}</artifactId><version>{lv}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J_PROPERTIES = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
"""


@dataclass(frozen=True)
class BrokerPaths:
    """Where one local broker keeps its files."""

    libs: Path
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "broker.log"

    @property
    def config_file(self) -> Path:
        return self.run_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.run_dir / "log4j.properties"

    @property
    def storage_dir(self) -> Path:
        return self.run_dir / "kraft-logs"


def broker_paths(settings: Settings) -> BrokerPaths:
    home = settings.kafka_home.resolve()
    return BrokerPaths(libs=home / settings.kafka_version / "libs", run_dir=settings.kafka_run_dir.resolve())


LOCAL_RETENTION_BYTES = 2 * 1024**3  # per partition: the local broker keeps every benchmark's events


def broker_properties(settings: Settings, storage_dir: Path) -> str:
    """server.properties of a single-node KRaft broker + controller listening on 127.0.0.1 only."""
    port, cport = settings.kafka_port, settings.controller_port
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{cport}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={storage_dir}",
            f"num.partitions={settings.topic_partitions}",
            # One broker: every internal topic has one replica.
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            # Consumers of a fresh group start at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms=0",
            # Topics are created explicitly, with their partition counts; a typo must not create one.
            "auto.create.topics.enable=false",
            # No time-based retention: record timestamps are event times (streamcdp produce, the demo, the
            # tests' histories weeks old), and a 7-day retention deleted such records as soon as their segment
            # rolled, before the worker had read them (events lost after a broker restart). Bounded by size.
            "log.retention.ms=-1",
            f"log.retention.bytes={LOCAL_RETENTION_BYTES}",
            "log.segment.bytes=67108864",
            "",
        ]
    )


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = (
            f"`{name}` is not on PATH; the local Kafka broker needs Java 17+ and Maven "
            "(apt-get install openjdk-17-jre-headless maven)"
        )
        raise LocalKafkaError(msg)
    return path


def ensure_jars(settings: Settings) -> Path:
    """Resolve the broker jars with Maven into the cache once; return the directory of jars."""
    paths = broker_paths(settings)
    marker = paths.libs / ".complete"
    if marker.exists():
        return paths.libs
    mvn = _require_tool("mvn")
    _require_tool("java")
    work = paths.libs.parent
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    lg, la, lv = _LOGGING_ARTIFACT
    pom.write_text(_POM_TEMPLATE.format(kafka=settings.kafka_version, lg=lg, la=la, lv=lv))
    log.info("resolving Apache Kafka %s jars from Maven Central into %s", settings.kafka_version, paths.libs)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={paths.libs}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        msg = f"Maven could not resolve the Kafka jars (exit {result.returncode}):\n{output}"
        raise LocalKafkaError(msg)
    marker.write_text(settings.kafka_version + "\n")
    return paths.libs


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); ask /proc whether it is really running.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        return stat.read_text().split(") ", 1)[-1][:1] != "Z"
    return True


def running_pid(settings: Settings) -> int | None:
    """The pid of this project's broker if it runs, else None (a stale pid file is removed)."""
    pid_file = broker_paths(settings).pid_file
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        pid_file.unlink(missing_ok=True)
        return None
    if _pid_alive(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port that is free on 127.0.0.1 right now (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def broker_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when the broker answers a metadata request (not merely accepts TCP)."""
    from kafka import KafkaAdminClient

    host, _, port = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    try:
        # A refused TCP connect answers at once; kafka-python would back off for seconds instead.
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError:
        return False
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _format_storage(java: str, paths: BrokerPaths) -> None:
    if (paths.storage_dir / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    # "--cluster-id=ID", not "-t ID": one id in 32 starts with "-", which argparse takes for an option.
    cmd = [
        java,
        "-cp",
        f"{paths.libs}/*",
        f"-Dlog4j.configuration=file:{paths.log4j_file}",
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={cluster_id}",
        "-c",
        str(paths.config_file),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"formatting KRaft storage failed: {result.stdout[-1500:]}{result.stderr[-1500:]}"
        raise LocalKafkaError(msg)


def start(settings: Settings, wait_s: float = 90.0) -> int:
    """Start the broker unless it runs already; wait until it answers; return its pid."""
    paths = broker_paths(settings)
    bootstrap = f"127.0.0.1:{settings.kafka_port}"
    pid = running_pid(settings)
    if pid is not None:
        log.info("Kafka already running (pid %s) on %s; log: %s", pid, bootstrap, paths.log_file)
        return pid
    java = _require_tool("java")
    for port in (settings.kafka_port, settings.controller_port):
        if not port_is_free(port):
            msg = f"port {port} on 127.0.0.1 is taken by another process; set STREAMCDP_KAFKA_PORT to a free port"
            raise LocalKafkaError(msg)
    ensure_jars(settings)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(broker_properties(settings, paths.storage_dir))
    paths.log4j_file.write_text(_LOG4J_PROPERTIES.format(log_file=paths.run_dir / "server.log"))
    _format_storage(java, paths)
    cmd = [
        java,
        f"-Xmx{settings.kafka_heap}",
        f"-Xms{settings.kafka_heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{paths.log4j_file}",
        "-cp",
        f"{paths.libs}/*",
        "kafka.Kafka",
        str(paths.config_file),
    ]
    with paths.log_file.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    paths.pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            paths.pid_file.unlink(missing_ok=True)
            server_log = paths.run_dir / "server.log"
            msg = f"the Kafka broker exited with code {proc.returncode}; see {paths.log_file} and {server_log}"
            raise LocalKafkaError(msg)
        if broker_answers(bootstrap):
            log.info(
                "Kafka %s up on %s (pid %s); log: %s",
                settings.kafka_version,
                bootstrap,
                proc.pid,
                paths.run_dir / "server.log",
            )
            return proc.pid
        time.sleep(0.5)
    stop(settings)
    msg = f"the Kafka broker did not answer within {wait_s:.0f}s; see {paths.run_dir / 'server.log'}"
    raise LocalKafkaError(msg)


def stop(settings: Settings, wait_s: float = 30.0) -> bool:
    """Stop the broker by its pid (TERM, then KILL after ``wait_s``); False if it was not running."""
    pid = running_pid(settings)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _pid_alive(pid):
        _reap(pid)
        time.sleep(0.2)
    if _pid_alive(pid):
        log.warning("Kafka (pid %s) ignored SIGTERM for %.0fs; killing it", pid, wait_s)
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    broker_paths(settings).pid_file.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when the broker is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def status(settings: Settings) -> str:
    pid = running_pid(settings)
    bootstrap = f"127.0.0.1:{settings.kafka_port}"
    if pid is None:
        return f"Kafka is not running (expected on {bootstrap})"
    answering = "answering" if broker_answers(bootstrap) else "NOT answering"
    return f"Kafka pid {pid} on {bootstrap}, {answering}; log: {broker_paths(settings).run_dir / 'server.log'}"
