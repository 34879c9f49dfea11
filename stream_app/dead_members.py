"""Leaving the consumer group on behalf of this host's killed workers, so that a restart
does not wait for their sessions to expire.

A worker that is SIGKILLed (or OOM-killed) never sends LeaveGroup: its member
stays in the group until its session times out (``worker.session_timeout_s``),
and the coordinator holds the restarted worker's join until then. On the
embedded broker at the shipped 6 s session that join took 11.1 s, and 3.0 s
when the dead member had been removed first (docs/performance.md, "Recovery
time"). Kafka accepts a LeaveGroup for any member id of the group, from any
client allowed to use the group.

So every worker records its member id, after each assignment, in a file named
after its process under its data directory (``<datadir>/members/<pid>.json``:
host, pid, the process's start time, group, bootstrap servers). A starting
worker, before it joins, sends LeaveGroup for each recorded member of the same
group and bootstrap servers whose process is gone, and deletes the record. A
process is gone when its pid is not running, or runs a process started at
another time (a reused pid; a container restart gives the new worker the same
pid 1). A record of a live process is never touched, so two workers sharing
a data directory leave each other alone; a record from another host (a shared
data directory) is skipped. On Kubernetes the data directory (``/tmp``) is an
``emptyDir``, which a container restart keeps; a pod moved to another node
starts without records and waits for the session as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)

LEAVE_TIMEOUT_S = 2.0  # the most the start waits for the coordinator lookup and the leaves
UNKNOWN_MEMBER_ID = 25  # Kafka's error code: the member already left or expired


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _alive(pid: int, start_time: str | None) -> bool:
    if pid == os.getpid():
        return False  # this process reuses the recorded pid: the recorded one is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _start_time(pid)
    return now is None or start_time is None or now == start_time


class MemberRecords:
    """This host's records of workers' group members, under ``directory``."""

    def __init__(self, directory: str | os.PathLike, *, group: str, bootstrap: list[str]):
        self.directory = Path(directory)
        self.group = group
        self.bootstrap = sorted(bootstrap)
        self.host = socket.gethostname()
        self.path = self.directory / f"{os.getpid()}.json"
        self._written: str | None = None

    def record(self, member_id: str) -> None:
        """Record this process's member id (once per id; atomic)."""
        if not member_id or member_id == self._written:
            return
        value = dict(host=self.host, pid=os.getpid(), start_time=_start_time(os.getpid()),
                     group=self.group, bootstrap=self.bootstrap, member_id=member_id)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(value))
            os.replace(tmp, self.path)
        except OSError as exc:  # a restart then waits for the session, as without the record
            log.warning("could not record the group member id in %s: %s", self.path, exc)
            return
        self._written = member_id

    def forget(self) -> None:
        """Delete this process's record (it left the group itself)."""
        self.path.unlink(missing_ok=True)
        self._written = None

    def dead(self) -> list[tuple[Path, str]]:
        """(record path, member id) of each recorded member of this group whose process is gone."""
        found = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                r = json.loads(path.read_text())
                pid, member_id = int(r["pid"]), str(r["member_id"])
                same = (r["host"] == self.host and r["group"] == self.group
                        and sorted(r["bootstrap"]) == self.bootstrap)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring the unreadable member record %s: %s", path, exc)
                continue
            if same and not _alive(pid, r.get("start_time")):
                found.append((path, member_id))
        return found


async def leave_for_dead(client, records: MemberRecords) -> list[str]:
    """Send LeaveGroup for each dead member in ``records`` through the aiokafka ``client``
    (bootstrapped here), delete their records, and return the member ids that left.

    Best effort, within ``LEAVE_TIMEOUT_S``: on any failure the join waits for the
    dead members' sessions, as it would without this.
    """
    dead = records.dead()
    if not dead:
        return []
    from aiokafka.protocol.group import LeaveGroupRequest

    left = []

    async def leave_all() -> None:
        await client.bootstrap()
        coordinator = await client.coordinator_lookup(0, records.group)  # 0: a group
        for path, member_id in dead:
            resp = await client.send(coordinator, LeaveGroupRequest(records.group, member_id))
            if resp.error_code == 0:
                left.append(member_id)
            elif resp.error_code != UNKNOWN_MEMBER_ID:
                log.warning("LeaveGroup for the dead member %s of group %s: error code %d",
                            member_id, records.group, resp.error_code)
            path.unlink(missing_ok=True)

    try:
        await asyncio.wait_for(leave_all(), LEAVE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - best effort; the join still works without it
        log.warning("could not remove dead members from group %s (%s): the join waits "
                    "for their sessions to expire", records.group, exc)
    for member_id in left:
        log.info("removed the member %s of a killed worker from group %s", member_id,
                 records.group)
    return left
