"""Where agents run, decided from flags and config: this machine, or a Dask cluster.

Pure (no connection is made here): `--executor` over `[stream] executor`; `--hub` over
`[executor] hub`; TLS files and `--insecure` likewise. A plain tcp:// scheduler that is
not on this machine is refused without TLS or `--insecure` (engine/dask_runner.py says why).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from sage_stream.config import SageConfig
from sage_stream.errors import SageError

LOCAL = "local"


@dataclass(frozen=True)
class ExecutorChoice:
    """A Dask cluster's address and how to reach it; None in the settings means local."""

    address: str  # tcp://HOST:PORT or tls://HOST:PORT
    hub: str | None  # None: the remote's URL, else the repository's own path (decided where git is at hand)
    tls: tuple[str, str, str] | None = None  # (ca, cert, key)
    insecure: bool = False


def resolve_executor(*, executor: str | None, hub: str | None, insecure: bool, tls_ca: str | None,
                     tls_cert: str | None, tls_key: str | None, config: SageConfig,
                     config_path: str) -> ExecutorChoice | None:
    """Flags (None when not given) over config; a SageError naming the flag or key."""
    value = executor or config.stream.executor
    source = "--executor" if executor else f"{config_path}: [stream] executor"
    if value == LOCAL:
        if hub:
            raise SageError("--hub needs --executor dask://HOST:PORT (a local run has no workers to fetch from it)")
        return None
    if not value.startswith(("dask://", "dask+tls://")):
        raise SageError(f"{source}: {value!r} is not `local` or `dask://HOST:PORT`")
    address = scheduler_address(value)
    section = config.executor
    files = (tls_ca or section.tls_ca, tls_cert or section.tls_cert, tls_key or section.tls_key)
    if any(files) and not all(files):
        raise SageError("TLS to the Dask scheduler needs all three of --tls-ca, --tls-cert and --tls-key "
                        f"(or tls_ca, tls_cert, tls_key in {config_path} [executor])")
    tls = files if all(files) else None
    if tls is not None and address.startswith("tcp://"):
        address = "tls://" + address.removeprefix("tcp://")
    insecure = insecure or section.insecure
    check_transport(address, tls=tls is not None, insecure=insecure)
    return ExecutorChoice(address=address, hub=hub or section.hub, tls=tls, insecure=insecure)  # type: ignore[arg-type]


def scheduler_address(executor: str) -> str:
    """`dask://HOST:PORT` (or dask+tls://) -> the address Dask's client takes."""
    if executor.startswith("dask+tls://"):
        return "tls://" + executor.removeprefix("dask+tls://")
    if executor.startswith("dask://"):
        return "tcp://" + executor.removeprefix("dask://")
    raise SageError(f"--executor {executor!r}: expected `local` or `dask://HOST:PORT`")


def check_transport(address: str, *, tls: bool, insecure: bool) -> None:
    """The scheduler runs whatever pickled code a client sends it: beyond this machine
    the connection needs TLS, or the user's explicit --insecure."""
    host = urlsplit(address).hostname or ""
    if tls or address.startswith("tls://") or insecure or _is_loopback(host):
        return
    raise SageError(f"--executor {address}: the scheduler is not on this machine and the connection is plain tcp. "
                    "A Dask scheduler runs any pickled code its clients send: use TLS (--tls-ca, --tls-cert, "
                    "--tls-key) or, on a private network you trust, pass --insecure")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
