"""A private local RabbitMQ node for development and tests: loopback only, state in one folder.

Facts this relies on (Debian 12 / RabbitMQ 3.10): `/usr/lib/rabbitmq/bin/rabbitmq-server`
runs as the caller (the /usr/sbin wrapper switches user); the node needs its folders and a writable
feature-flags file; readiness is `rabbitmqctl wait <pidfile>`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from transport.waiting import poll_blocking

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
POLL_S = 0.05  # how often a starting node is looked at
INSTALL_HINT = "apt-get install -y rabbitmq-server  (Debian/Ubuntu; run as root)"


class BrokerError(RuntimeError):
    """The local node could not be installed, started or stopped."""


def ensure_installed() -> None:
    """Install the Debian package when missing and we are root; otherwise say what to install."""
    if SERVER.exists() and CTL.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BrokerError(f"rabbitmq-server is not installed; install it with: {INSTALL_HINT}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "rabbitmq-server"], check=True, env=env)
    if not SERVER.exists():
        raise BrokerError("rabbitmq-server was installed but its server script is missing")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int) -> int:
    """A first port with `count` free loopback ports from it, and their distribution ports
    (+20000): where a `LocalCluster` of `count` nodes can start."""
    for _ in range(50):
        base = free_port()
        if base + count + 20000 > 65535:
            continue
        ports = [base + i for i in range(count)] + [base + 20000 + i for i in range(count)]
        if all(_bindable(port) for port in ports):
            return base
    raise BrokerError(f"found no run of {count} free ports")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class LocalBroker:
    """One node: `start()` returns once it accepts AMQP; `stop()` ends it; state persists."""

    directory: Path
    port: int = 5672
    management_port: int | None = None  # None: no management plugin
    name: str = "rpcfleet"
    # Management stats refresh every 5 s by default; tests and the fleet page want fresher ones.
    statistics_interval_ms: int = 500
    dist_port: int = 0  # Erlang distribution port; 0: AMQP port + 20000, or a free one
    config: tuple[str, ...] = ()  # more rabbitmq.conf lines (a cluster member's)
    net_ticktime: int | None = None  # Erlang's (60 s): how soon peers count this node gone
    erl_args: tuple[str, ...] = ()  # more emulator flags (benchmarks: `+sbwt none`, ...)
    # A node on its own host: listening on `host` inside network namespace `netns` (tests of
    # partitions: tests/support/netns.py), named with a long name (`name@host`).
    host: str = "127.0.0.1"
    netns: str | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.dist_port:
            self.dist_port = self.port + 20000 if self.port + 20000 <= 65535 else free_port()

    @property
    def nodename(self) -> str:
        if self.netns:
            return f"{self.name}@{self.host}"
        return f"{self.name}-{self.port}@localhost"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    @property
    def inside(self) -> list[str]:
        """What runs a command on the node's host: nothing on this one, else its namespace."""
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    @property
    def management_url(self) -> str | None:
        if self.management_port is None:
            return None
        return f"http://{self.host}:{self.management_port}"

    @property
    def pid_file(self) -> Path:
        return self.directory / "pid"

    def env(self) -> dict[str, str]:
        d = self.directory.resolve()
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(d / "feature_flags"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "HOME": str(d),
            "ERL_EPMD_ADDRESS": self.host,
            **({"RABBITMQ_USE_LONGNAME": "true"} if self.netns else {}),
            # Erlang distribution (the node's peers and rabbitmqctl) on the node's address only,
            # not every interface: the cookie is all that guards it.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": " ".join(
                [f"-kernel inet_dist_use_interface {{{self.host.replace('.', ',')}}}",
                 *self._tick_args(), *self.erl_args]),
            **({"RABBITMQ_CTL_ERL_ARGS": " ".join(self._tick_args())} if self.net_ticktime else {}),
        }

    def _tick_args(self) -> list[str]:
        return [f"-kernel net_ticktime {self.net_ticktime}"] if self.net_ticktime else []

    def _write_config(self) -> None:
        d = self.directory
        (d / "mnesia").mkdir(parents=True, exist_ok=True)
        (d / "log").mkdir(parents=True, exist_ok=True)
        plugins = "[rabbitmq_management]." if self.management_port else "[]."
        (d / "enabled_plugins").write_text(plugins + "\n")
        lines = [
            f"collect_statistics_interval = {self.statistics_interval_ms}",
            # Long jobs hold their delivery while they run: 24 h instead of the 30 min default.
            "consumer_timeout = 86400000",
            # Classic queues' version 2 index and store (3.10+, the only one from 4.0): a job's
            # persistent request and reply cost the broker ~20 % less CPU, and the worker's
            # confirmed reply returns sooner (docs/performance.md, jobs).
            "classic_queue.default_version = 2",
            *self.config,
        ]
        if self.netns:  # its clients come from other hosts (namespaces of this machine)
            lines.append("loopback_users.guest = false")
        if self.management_port:
            lines += [
                f"management.tcp.ip = {self.host}",
                f"management.tcp.port = {self.management_port}",
            ]
        (d / "rabbitmq.conf").write_text("\n".join(lines) + "\n")

    def ctl(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [*self.inside, str(CTL), "-n", self.nodename, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise BrokerError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def is_running(self) -> bool:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return _accepts(self.host, self.port)

    def start(self, timeout: float = 90) -> None:
        ensure_installed()
        if self.is_running():
            return
        self._write_config()
        log = open(self.directory / "log" / "console.log", "ab")
        self._process = subprocess.Popen(
            [*self.inside, str(SERVER)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.directory,  # where a crashing VM writes its erl_crash.dump
            start_new_session=True,  # a Ctrl-C in the terminal is ours to forward, not the node's
        )
        log.close()
        started = time.monotonic()
        process = self._process

        def pid_written() -> bool:
            if process.poll() is not None:
                raise BrokerError(f"node exited at start; see {self.directory}/log/console.log")
            return self.pid_file.exists()

        if not poll_blocking(pid_written, timeout, POLL_S):
            raise BrokerError(f"node did not write {self.pid_file}; see {self.directory}/log")
        self.ctl("wait", str(self.pid_file), "--timeout", str(int(timeout)), timeout=timeout + 10)
        left = max(0.0, timeout - (time.monotonic() - started))
        if not poll_blocking(lambda: _accepts(self.host, self.port), left, POLL_S):
            raise BrokerError(f"node is up but port {self.port} does not accept connections")

    def stop(self) -> None:
        if not self.pid_file.exists():
            return
        try:
            self.ctl("stop", str(self.pid_file))
        except BrokerError:
            if self.is_running():
                raise
        self._ended(timeout=60)

    def kill(self) -> None:
        """SIGKILL the node's whole process group (beam and its helpers): a crash, as a
        power cut would leave it. `start()` brings it back with its state."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        self._ended(timeout=30)

    def _ended(self, timeout: float) -> None:
        """The node is gone: forget its pid file, reap the process started here."""
        self.pid_file.unlink(missing_ok=True)
        if self._process is not None:
            self._process.wait(timeout=timeout)
            self._process = None

    def freeze(self) -> None:
        """SIGSTOP the node: it goes silent (its sockets stay open, nothing answers), as a host
        that hangs or is cut off without a reset looks to its peers and clients."""
        os.kill(int(self.pid_file.read_text().strip()), signal.SIGSTOP)

    def stop_app(self) -> None:
        """Stop AMQP service but keep the node: what a broker outage looks like to clients."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        if not poll_blocking(lambda: _accepts(self.host, self.port), 60, POLL_S):
            raise BrokerError("start_app returned but the AMQP port stays closed")


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
