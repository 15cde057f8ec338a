"""Whether a run recorded as ``running`` is still alive: the host + pid check.

A run records the host and process id that run it (``host_pid`` among its parameters). A
``running`` run of this host whose process is gone died without closing its record (killed,
machine rebooted): it is shown as ``crashed``, and marked so in the catalog by the next run
on the host and by ``matscreen verify --repair``. A run of another host cannot be checked
from here and is shown as it is recorded.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

#: Parameter of an activity holding the id of the process that ran it.
PID_PARAMETER = "host_pid"


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def has_died(status: str, host: str, parameters: Mapping[str, Any]) -> bool:
    """Whether an activity recorded as ``running`` belongs to a dead process of this host."""
    if status != "running" or host != socket.gethostname():
        return False
    pid = parameters.get(PID_PARAMETER)
    return isinstance(pid, int) and pid != os.getpid() and not process_alive(pid)


def shown_status(status: str, host: str, parameters: Mapping[str, Any]) -> str:
    """The status to show for an activity: ``crashed`` for a dead ``running`` one."""
    return "crashed" if has_died(status, host, parameters) else status
