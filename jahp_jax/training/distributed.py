"""Multi-process start-up: `jax.distributed.initialize` from explicit settings, the JAX_*
environment variables or JAX's own cluster detection (Slurm, TPU VMs, Open MPI), with one-line
errors for a set-up that cannot work.

Settings are taken, per field, from the argument, else from the environment
(`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`), else left to JAX's cluster
detection. Before JAX is called, process 0 checks that it can bind the coordinator's port and every
other process waits (at most `timeout_s`) until the coordinator accepts connections, so a wrong
address or a missing process 0 is a clear error rather than an abort deep inside JAX.

Once running, JAX's coordination service watches every process: if one dies, the others are
terminated by JAX within `heartbeat_timeout_s` ("Terminating process because the JAX distributed
service detected fatal errors"); rerunning the same command on every host resumes from the last
complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Mapping

ENV_VARIABLES = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}


class DistributedError(RuntimeError):
    """A multi-process set-up that cannot start (message says what to give or fix)."""


TIMEOUT_S = 300  # Default wait for the coordinator and for every process to join.
HEARTBEAT_TIMEOUT_S = 100  # Default time after which a silent process ends the run.


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """What `jax.distributed.initialize` needs; None fields are left to JAX's cluster detection.
    (metadata["help"]: the help of `jahp-train`'s flag of the same name.)"""

    coordinator_address: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Multi-process: host:port of process 0 (implies --multihost)."},
    )
    num_processes: int | None = dataclasses.field(
        default=None, metadata={"help": "Multi-process: number of processes (implies --multihost)."}
    )
    process_id: int | None = dataclasses.field(
        default=None,
        metadata={"help": "Multi-process: this process's index (implies --multihost)."},
    )

    @property
    def explicit(self) -> bool:
        """True if every field is set (no cluster detection needed)."""
        return None not in (self.coordinator_address, self.num_processes, self.process_id)


def cluster_settings(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> ClusterSettings:
    """Arguments first, then the JAX_* environment variables; DistributedError if invalid."""
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
             "process_id": process_id}  # fmt: skip
    for name, variable in ENV_VARIABLES.items():
        if given[name] is None and environ.get(variable):
            value = environ[variable]
            if name != "coordinator_address":
                try:
                    value = int(value)
                except ValueError:
                    raise DistributedError(f"{variable}={value!r} is not an integer") from None
            given[name] = value
    settings = ClusterSettings(**given)
    if settings.coordinator_address is not None:
        _host_and_port(settings.coordinator_address)
    if settings.num_processes is not None and settings.num_processes < 1:
        raise DistributedError(f"--num_processes must be >= 1, got {settings.num_processes}")
    if settings.process_id is not None and settings.num_processes is not None:
        if not 0 <= settings.process_id < settings.num_processes:
            raise DistributedError(
                f"--process_id must be in [0, {settings.num_processes}), got {settings.process_id}"
            )
    return settings


def initialize(settings: ClusterSettings, *, timeout_s: int = TIMEOUT_S,
               heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S) -> None:  # fmt: skip
    """Start this process's part of a multi-process JAX run (DistributedError if it cannot).

    timeout_s: how long to wait for the coordinator and for all processes to join (seconds).
    heartbeat_timeout_s: how long a silent (dead) process goes unnoticed (seconds).
    """
    import jax

    if settings.explicit:
        _check_coordinator(settings, timeout_s)
    try:
        jax.distributed.initialize(
            coordinator_address=settings.coordinator_address,
            num_processes=settings.num_processes,
            process_id=settings.process_id,
            initialization_timeout=timeout_s,
            heartbeat_timeout_seconds=heartbeat_timeout_s,
        )
    except (ValueError, RuntimeError) as error:
        missing = [f"--{name}" for name, value in dataclasses.asdict(settings).items()
                   if value is None]  # fmt: skip
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        if missing:
            raise DistributedError(
                f"--multihost found no cluster to join ({first}): not under Slurm, on a TPU VM "
                f"or Open MPI, so give {', '.join(missing)} (or "
                f"{', '.join(ENV_VARIABLES[m[2:]] for m in missing)}) on every process"
            ) from None
        raise DistributedError(f"cannot start the multi-process run: {first}") from None


def _host_and_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(
            f"--coordinator_address={address!r} is not host:port (e.g. node001:12345)"
        )
    return host.strip("[]"), int(port)


def _check_coordinator(settings: ClusterSettings, timeout_s: float) -> None:
    """Process 0: the coordinator's port is free here. Others: it accepts connections within
    timeout_s."""
    host, port = _host_and_port(settings.coordinator_address)
    if settings.process_id == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("", port))
            except OSError as error:
                raise DistributedError(
                    f"process 0 cannot serve the coordinator on port {port} ({error.strerror}); "
                    "choose another port in --coordinator_address on every process"
                ) from None
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, timeout_s)):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"process {settings.process_id} could not reach the coordinator at "
                    f"{settings.coordinator_address} within {timeout_s:g} s ({error}); start "
                    "process 0 there, or fix --coordinator_address"
                ) from None
            time.sleep(0.5)
