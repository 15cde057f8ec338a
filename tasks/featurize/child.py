"""Entry point of a featurizer child process (see :mod:`matscreen.tasks.featurize.isolated`).

Reads the featurization description, then structures, from standard input; answers each
with ``("ok", values)`` or ``("error", message)``. Standard output is reserved for these
answers: anything a library prints goes to standard error.

The child's heap is limited to the MiB its parent sends with the featurization (the run's
``MATSCREEN_FEATURIZER_MEMORY_MB``, passed down as an argument): a structure whose
featurization needs more memory fails with an error answer, and the child serves the next
one.
"""

from __future__ import annotations

import os
import resource
import sys
import warnings

from matscreen.tasks.errors import RecordError
from matscreen.tasks.featurize.isolated import receive, send


def limit_heap(megabytes: int) -> None:
    """Cap this process's data segment (heap and anonymous memory) at ``megabytes`` MiB.

    Allocations beyond it fail with MemoryError instead of exhausting the machine. 0 sets
    no limit; a limit above the hard one is lowered to it.
    """
    if megabytes <= 0:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    wanted = megabytes * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (wanted, hard))


def main() -> None:
    """Serve featurization requests until standard input closes."""
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints must not corrupt the protocol
    warnings.simplefilter("ignore")
    # Import before waiting: a child started ahead of need is ready when work arrives.
    from pymatgen.core import Structure

    from matscreen.tasks.featurize.batch import featurize_one
    from matscreen.tasks.featurize.presets import feature_labels

    stdin = sys.stdin.buffer.fileno()
    try:
        config, memory_mb = receive(stdin, 1e9)
    except EOFError:
        return

    try:
        labels = feature_labels(config)
    except Exception as exc:  # anything that stops set-up is reported, then the child ends
        send(protocol, ("fatal", f"{type(exc).__name__}: {exc}"))
        return
    send(protocol, ("ready", labels))
    # After the imports and set-up, so that only the featurization itself is bounded.
    limit_heap(memory_mb)
    while True:
        try:
            structure = receive(stdin, 1e9)
        except EOFError:
            return
        try:
            values = featurize_one(Structure.from_dict(structure), config)
        except RecordError as exc:
            send(protocol, ("error", str(exc)))
            continue
        except (KeyError, ValueError, TypeError) as exc:
            send(protocol, ("error", f"not a structure: {exc}"))
            continue
        except MemoryError:
            send(protocol, ("error", f"memory limit of {memory_mb} MiB exceeded"))
            continue
        send(protocol, ("ok", values))


if __name__ == "__main__":
    main()
