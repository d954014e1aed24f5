"""A second process hammering the guards (run by tests/integration/test_guards.py).

    python tests/integration/guards_worker.py URL SEED PREFIX PROFILES CAP ACTIONS GO_KEY MODE

Starts THREADS_PER_WORKER threads; each counts itself in GO_KEY:ready and waits until the
test sets GO_KEY (so that the processes and the test's own threads overlap), then decides
ACTIONS small batches of distinct actions for the profiles PREFIX0..PREFIX<PROFILES-1>
under a profile-wide SMS cap of CAP per day, with the Lua guards (MODE=lua) or the test's
non-atomic reference implementation (MODE=naive). Prints JSON: the ids of the actions it
sent, and each thread's wall-clock span of decisions.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.test_guards import THREADS_PER_WORKER, hammer


def main(argv: list[str]) -> int:
    url, seed, prefix, profiles, cap, actions, go_key, mode = argv
    sent: list[str] = []
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=hammer,
            args=(url, mode, f"w{seed}t{t}", prefix, int(profiles), int(cap), int(actions), sent, lock),
            kwargs={"go_key": go_key, "spans": spans},
        )
        for t in range(THREADS_PER_WORKER)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(json.dumps({"sent": sent, "spans": spans}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
