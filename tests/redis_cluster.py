"""A real Redis Cluster for tests and benchmarks: 3 masters and 3 replicas from Debian's
``redis-server``, on free loopback ports, created with ``redis-cli --cluster create``.

Every node listens on 127.0.0.1 only, in a private temporary directory removed by
:meth:`RedisCluster.remove`.  Ports are picked free (with their cluster-bus port, port +
10000, free too), so parallel test runs do not collide.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

__all__ = ["RedisCluster", "cluster_binaries"]


def cluster_binaries() -> tuple[str, str] | None:
    """``(redis-server, redis-cli)``, or ``None`` if either is missing."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    return (server, cli) if server and cli else None


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_pair(taken: set[int]) -> int:
    """A port whose cluster-bus port (+10000) is free too."""
    for _ in range(1000):
        port = random.randrange(20000, 45000)
        if port in taken or port + 10000 in taken:
            continue
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free pair of loopback ports for a cluster node")


class RedisCluster:
    """3 masters + 3 replicas; :attr:`ports` lists the nodes, masters first as created."""

    def __init__(self, nodes: int = 6, replicas: int = 1, password: str | None = None) -> None:
        found = cluster_binaries()
        if found is None:
            raise RuntimeError(
                "redis-server and redis-cli are needed (apt-get install redis-server)"
            )
        self.server, self.cli = found
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="tieredmem-cluster-")
        taken: set[int] = set()
        self.ports: list[int] = []
        for _ in range(nodes):
            port = _free_pair(taken)
            taken |= {port, port + 10000}
            self.ports.append(port)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        try:
            for port in self.ports:
                self.start(port)
            args = [self.cli, "--cluster", "create"]
            args += [f"127.0.0.1:{p}" for p in self.ports]
            args += ["--cluster-replicas", str(replicas), "--cluster-yes"]
            if password:
                args += ["-a", password, "--no-auth-warning"]
            subprocess.run(args, check=True, capture_output=True, timeout=60)
            self.wait_ok()
        except BaseException:
            self.remove()
            raise

    def start(self, port: int) -> None:
        """Start (or restart) the node on *port*, from its own directory."""
        node_dir = f"{self.dir}/{port}"
        os.makedirs(node_dir, exist_ok=True)
        args = [
            self.server,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", node_dir,
            "--save", "",
            "--appendonly", "yes",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "1000",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        self.procs[port] = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self._ping(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster node on port {port} did not start")
            time.sleep(0.02)

    def client(self, port: int) -> Any:
        import redis

        return redis.Redis(port=port, password=self.password, socket_timeout=5)

    def _ping(self, port: int) -> bool:
        import redis

        client = self.client(port)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def info(self, port: int, section: str) -> dict[str, Any]:
        client = self.client(port)
        try:
            return dict(client.info(section))
        finally:
            client.close()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and sees the same
        set of masters."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = [self._cluster_info(p) for p in self.procs]
                if all(s.get("cluster_state") == "ok" for s in states) and self._converged():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def _cluster_info(self, port: int) -> dict[str, Any]:
        client = self.client(port)
        try:
            return dict(client.cluster("info"))
        finally:
            client.close()

    def _converged(self) -> bool:
        views = set()
        for port in self.procs:
            client = self.client(port)
            try:
                lines = client.execute_command("CLUSTER", "NODES")
            finally:
                client.close()
            text = lines.decode() if isinstance(lines, bytes) else str(lines)
            masters = sorted(
                line.split()[1].split("@")[0]
                for line in text.splitlines()
                if " master " in f" {line.split()[2].replace(',', ' ')} "
                and "fail" not in line.split()[2]
            )
            views.add(tuple(masters))
        return len(views) == 1

    def masters(self) -> list[int]:
        """Ports of the running masters."""
        out = []
        for port in self.procs:
            if self.info(port, "replication").get("role") == "master":
                out.append(port)
        return out

    def replica_of(self, master: int) -> int:
        """The port of a running replica of *master*."""
        for port in self.procs:
            rep = self.info(port, "replication")
            if rep.get("role") == "slave" and int(rep.get("master_port", 0)) == master:
                return port
        raise RuntimeError(f"no replica of {master}")

    def kill(self, port: int) -> None:
        """Kill the node on *port* (SIGKILL: no chance to hand over)."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(10)

    def url(self, prefix: str, **params: str) -> str:
        auth = f":{self.password}@" if self.password else ""
        query = "&".join([f"prefix={prefix}", *(f"{k}={v}" for k, v in params.items())])
        return f"redis+cluster://{auth}127.0.0.1:{self.ports[0]}/?{query}"

    def remove(self) -> None:
        """Stop every node and remove the directory."""
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
