"""The two ways to run: Flower's simulation, or real ``flower-superlink`` + ``flower-supernode`` processes.

``simulate``: ``flwr.simulation.run_simulation`` runs the ServerApp here and one ClientApp per site
in Ray actors (local processes). ``LocalFederation``: the deployment Flower documents for real
sites, on loopback: one ``flower-superlink`` (the server), one ``flower-supernode`` per site
started with that site's ``--node-config``, and the app submitted with ``flwr run APP CONNECTION
--stream``; the SuperLink runs the ServerApp (``neuro_ssl.federated.app:server_app``) in a
``flwr-serverapp`` process and each SuperNode runs the ClientApp in a ``flwr-clientapp`` process per
round. Insecure by default on loopback; with certificates the SuperLink serves TLS and the
SuperNodes and the CLI verify it against the CA. Logs: RUN/flower/*.log; process ids and
addresses: RUN/flower/processes.json. Every process started here is stopped on the way out.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from neuro_ssl import __version__
from neuro_ssl._utils.files import write_json, write_text
from neuro_ssl.errors import FederationError
from neuro_ssl.federated.checkpoint import read_state
from neuro_ssl.federated.client import SiteSpec
from neuro_ssl.federated.config import FederatedConfig

STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
APP_PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "neuro-ssl-federate"
version = "{version}"
description = "neuro-ssl federated contrastive pretraining (the ServerApp and ClientApp live in neuro_ssl.federated.app)"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "neuro-ssl"

[tool.flwr.app.components]
serverapp = "neuro_ssl.federated.app:server_app"
clientapp = "neuro_ssl.federated.app:client_app"

[tool.flwr.app.config]
run-dir = ""
"""


def simulate(run_dir: Path, sites: Sequence[SiteSpec]) -> None:
    """Flower's simulation: the ServerApp in this process, the sites as Ray actors (one CPU each)."""
    from flwr.simulation import run_simulation

    from neuro_ssl.federated.client import build_client_app
    from neuro_ssl.federated.server import build_server_app

    cpus = max(1, min(len(sites), os.cpu_count() or 1))
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": cpus, "object_store_memory": 200 * 1024**2, "include_dashboard": False}}
    run_simulation(build_server_app(run_dir), build_client_app(sites), num_supernodes=len(sites),
                   backend_config=backend)


class LocalFederation:
    """A SuperLink and one SuperNode per site on 127.0.0.1 (free ports), then ``flwr run`` of the app."""

    def __init__(self, run_dir: Path, sites: Sequence[SiteSpec], cfg: FederatedConfig):
        self.run_dir, self.sites, self.cfg = Path(run_dir).resolve(), list(sites), cfg  # Flower runs in other cwds
        self.log_dir = self.run_dir / "flower"
        self.bin = Path(sys.executable).parent
        self.processes: list[dict] = []
        self.descendants: set[int] = set()  # processes Flower started from ours (SuperExec, ServerApp, ClientApps)

    def run(self) -> None:
        """Start everything, submit the run, wait for it to end, stop everything (also on errors)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.home = self.log_dir / "home"  # one FLWR_HOME per process, as on separate machines (removed at the end)
        shutil.rmtree(self.home, ignore_errors=True)
        previous = _stop_on_sigterm()
        try:
            port = self._start_superlink()
            for spec in self.sites:
                self._start_supernode(spec, port)
            write_json(self.log_dir / "processes.json", [{k: v for k, v in p.items() if k != "popen"}
                                                         for p in self.processes])
            cli = self._env("cli")
            self._write_connection(Path(cli["FLWR_HOME"]), port)
            app = self.home / "app"
            write_text(app / "pyproject.toml", APP_PYPROJECT.format(version=__version__))
            self._submit_and_wait(cli, app)
        finally:
            self._stop_all()
            shutil.rmtree(self.home, ignore_errors=True)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    # ---- processes ---------------------------------------------------------------------------
    def _env(self, name: str) -> dict[str, str]:
        home = self.home / name
        home.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "FLWR_HOME": str(home), "PYTHONUNBUFFERED": "1",
                "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def _spawn(self, role: str, name: str, command: list[str], address: str) -> subprocess.Popen:
        stem = f"{role}{'_' + name if name else ''}"
        log, env = self.log_dir / f"{stem}.log", self._env(stem)
        with open(log, "ab") as fh:
            fh.write(f"\n$ {' '.join(command)}\n".encode())
            popen = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=self.log_dir, preexec_fn=_die_with_parent())
        self.processes.append({"role": role, "site": name or None, "pid": popen.pid, "address": address,
                               "log": str(log), "popen": popen})
        return popen

    def _tls_server_args(self) -> list[str]:
        c = self.cfg
        if not c.tls:
            return ["--insecure"]
        return ["--ssl-ca-certfile", c.ssl_ca_certfile, "--ssl-certfile", c.ssl_certfile, "--ssl-keyfile", c.ssl_keyfile]

    def _tls_client_args(self) -> list[str]:
        return ["--root-certificates", self.cfg.ssl_ca_certfile] if self.cfg.tls else ["--insecure"]

    def _start_superlink(self) -> int:
        port = _free_port()
        command = [str(self.bin / "flower-superlink"), *self._tls_server_args(), "--host", "127.0.0.1",
                   "--port", str(port), "--disable-runtime-dependency-installation"]
        popen = self._spawn("superlink", "", command, f"127.0.0.1:{port}")
        _wait_for_port(port, popen, self.log_dir / "superlink.log")
        return port

    def _start_supernode(self, spec: SiteSpec, superlink_port: int) -> None:
        port = _free_port()
        node_config = " ".join(f"{k}={json.dumps(v)}" for k, v in (
            ("partition-id", spec.partition), ("num-partitions", len(self.sites)), ("manifest", spec.manifest),
            ("site-column", spec.site_column), ("site", spec.site), ("state-dir", spec.state_dir)) if v is not None)
        command = [str(self.bin / "flower-supernode"), *self._tls_client_args(), "--superlink",
                   f"127.0.0.1:{superlink_port}", "--host", "127.0.0.1", "--port", str(port),
                   "--node-config", node_config]
        self._spawn("supernode", _safe(spec.name), command, f"127.0.0.1:{port}")

    def _write_connection(self, home: Path, port: int) -> None:
        security = (f'root-certificates = {json.dumps(str(Path(self.cfg.ssl_ca_certfile).resolve()))}'
                    if self.cfg.tls else "insecure = true")
        write_text(home / "config.toml", f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
                                         f'address = "127.0.0.1:{port}"\n{security}\n')

    def _submit_and_wait(self, env: dict, app: Path) -> None:
        """``flwr run --stream``: our server lines go to stderr, all of it to RUN/flower/server.log."""
        command = [str(self.bin / "flwr"), "run", str(app), "loopback", "--stream",
                   "--run-config", f"run-dir={json.dumps(str(self.run_dir.resolve()))}"]
        log = open(self.log_dir / "server.log", "a", encoding="utf-8")
        stream = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, cwd=self.log_dir, text=True, errors="replace")
        tail: collections.deque = collections.deque(maxlen=12)
        reader = threading.Thread(target=_relay, args=(stream.stdout, log, tail), daemon=True)
        reader.start()
        superlink = self.processes[0]
        lost: set[int] = set()
        try:
            while stream.poll() is None:
                self.descendants |= _descendants([p["pid"] for p in self.processes])
                if superlink["popen"].poll() is not None:
                    raise _superlink_stopped(superlink)
                for p in self.processes[1:]:
                    if p["pid"] not in lost and p["popen"].poll() is not None:
                        lost.add(p["pid"])
                        print(f"neuro-ssl federate: site {p['site']}'s SuperNode stopped (exit code "
                              f"{p['popen'].returncode}; log: {p['log']}); the rounds go on while --min-clients "
                              f"sites answer", file=sys.stderr, flush=True)
                time.sleep(0.5)
        finally:
            if stream.poll() is None:
                stream.terminate()
            stream.wait()
            reader.join(timeout=5)
            log.close()
        if stream.returncode and read_state(self.run_dir).get("state") not in ("finished", "failed"):
            # `flwr run` may notice a dead SuperLink before this loop does: name the cause, not the symptom
            deadline = time.monotonic() + 3.0
            while superlink["popen"].poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if superlink["popen"].poll() is not None:
                raise _superlink_stopped(superlink)
            said = " ".join(" ".join(line.strip(" │╭╮╰╯─\n").split()) for line in tail).strip()
            raise FederationError(f"`flwr run` stopped with exit code {stream.returncode}: {said[-400:]} "
                                  f"(log: {self.log_dir / 'server.log'})")

    def _stop_all(self) -> None:
        """SIGTERM our processes, then wait for them and for what Flower started from them (SIGKILL late ones)."""
        self.descendants |= _descendants([p["pid"] for p in self.processes])
        for p in reversed(self.processes):
            if p["popen"].poll() is None:
                p["popen"].terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in self.processes:
            try:
                p["popen"].wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p["popen"].kill()
                p["popen"].wait()
        while self.descendants and time.monotonic() < deadline:  # they watch their parent and exit by themselves
            self.descendants = {pid for pid in self.descendants if _alive(pid)}
            time.sleep(0.2)
        for pid in self.descendants:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _relay(lines, log, tail) -> None:
    for line in lines:
        log.write(line)
        log.flush()
        if line.strip(" │╭╮╰╯─\n"):
            tail.append(line)
        if "neuro-ssl federate" in line:
            sys.stderr.write(line)
            sys.stderr.flush()


def _stop_on_sigterm():
    """SIGTERM (a scheduler, ``kill``) raises here, so the processes started are stopped on the way out."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise FederationError("neuro-ssl federate was stopped (SIGTERM); the same command with --resume continues "
                              "after the last finished round")

    return signal.signal(signal.SIGTERM, stop)


def _die_with_parent():
    """Linux: the child gets SIGTERM when this process dies, even by SIGKILL (no orphaned SuperLink)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # bound here: the child only calls it
    pr_set_pdeathsig = 1

    def child() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return child


def _descendants(roots: Sequence[int]) -> set[int]:
    """Every live descendant of ``roots`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = set(), list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, popen: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise FederationError(f"flower-superlink exited with code {popen.returncode} at start ({log}: {tail})")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise FederationError(f"flower-superlink did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S:.0f} s ({log})")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _superlink_stopped(superlink: dict) -> FederationError:
    return FederationError(
        f"the SuperLink (server) stopped with exit code {superlink['popen'].returncode} during the run "
        f"(log: {superlink['log']}); rerun the same command with --resume to continue after the last finished round")
