"""Entry point of a featurizer child process (see :mod:`matscreen.tasks.featurize.isolated`).

Reads the featurization description, then structures, from standard input; answers each
with ``("ok", values)`` or ``("error", message)``. Standard output is reserved for these
answers: anything a library prints goes to standard error.
"""

from __future__ import annotations

import os
import sys
import warnings

from matscreen.tasks.errors import RecordError
from matscreen.tasks.featurize.isolated import receive, send


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
        config = receive(stdin, 1e9)
    except EOFError:
        return

    try:
        labels = feature_labels(config)
    except Exception as exc:  # anything that stops set-up is reported, then the child ends
        send(protocol, ("fatal", f"{type(exc).__name__}: {exc}"))
        return
    send(protocol, ("ready", labels))
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
        send(protocol, ("ok", values))


if __name__ == "__main__":
    main()
