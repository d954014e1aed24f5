"""The learner in a child process learns exactly what it learns in the worker, and its
process ends with its owner (dropped, or killed with SIGKILL)."""

from __future__ import annotations

import gc
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.core.messages import Activity, LearnerItem, Observation
from flows.core.resources import config_dir
from flows.features.declarations import load_features
from scoring.learner import Learner
from scoring.learner_host import InProcess, InWorker, Result
from scoring.modeldefs import ModelSettings, load_models
from scoring.scorer import predict

MODELS = load_models(config_dir() / "models.toml", load_features(config_dir() / "features.toml"))
DAY = 86_400_000


def _batches(n: int = 40, per: int = 10) -> list[list[LearnerItem]]:
    """Observations a day apart; old customers come back (label 0), young ones do not."""
    rng = random.Random(7)
    out: list[list[LearnerItem]] = []
    for b in range(n):
        batch: list[LearnerItem] = []
        for j in range(per):
            i = b * per + j
            age = rng.random() * 60
            x = {"profile_age_days": age, "orders_30d": rng.random()}
            batch.append(Observation("churn", f"p{i}", f"p{i}", i * DAY, x))
            if age > 20:
                batch.append(Activity("churn", f"p{i}", (i * DAY + DAY // 2,)))
        out.append(batch)
    return out


def _learner() -> Learner:
    return Learner(
        MODELS.by_name("churn"), ModelSettings(metrics_window=100, publish_every_s=0.5, metrics_every_s=0.5)
    )


def _run(host: InWorker | InProcess) -> tuple[list[Result], Learner]:
    results: list[Result] = []
    for k, batch in enumerate(_batches()):
        host.feed(batch, (k * 10) * DAY, float(k))  # one "second" per batch: versions and rows are due
        results.extend(host.results())
    results.extend(host.finish(100.0))
    return results, pickle.loads(host.state())


def test_the_child_process_learns_and_publishes_what_the_worker_would() -> None:
    here, learner_here = _run(InWorker(_learner()))
    host = InProcess(_learner())
    there, learner_there = _run(host)
    assert sum(r.learned for r in there) == sum(r.learned for r in here) == learner_here.n_learned > 300
    versions = [[r.published.version for r in rs if r.published] for rs in (here, there)]
    assert versions[0] == versions[1] and len(versions[0]) > 3
    rows = [[(m.n_learned, repr(m.roc_auc)) for r in rs if (m := r.metrics)] for rs in (here, there)]
    assert rows[0] == rows[1] and len(rows[0]) > 3
    x = {"profile_age_days": 3.0, "orders_30d": 0.5}
    assert predict(learner_there.model, x) == predict(learner_here.model, x)
    last = [r.published for r in there if r.published][-1]
    assert last.n_learned == learner_there.n_learned
    assert predict(last.model, x) == predict(learner_here.model, x)


def _alive(pid: int) -> bool:
    """Running (a zombie has ended; whoever reaps it is not this test's business)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_the_child_ends_when_its_host_is_dropped() -> None:
    host = InProcess(_learner())
    host.feed(_batches(1)[0], None, 0.0)
    assert host.finish(1.0)[-1].metrics is not None
    pid = host._proc.pid
    assert pid is not None and _alive(pid)
    del host
    gc.collect()
    assert _gone(pid)


def test_an_error_in_the_child_is_raised_in_the_worker_with_its_traceback() -> None:
    host = InProcess(_learner())
    host.feed([Observation("churn", "p", "p", 0, {"x": "not a number"})], None, 0.0)  # type: ignore[dict-item]
    host.feed([Activity("churn", "p", (1,))], None, 0.0)  # learning "x" fails in River
    with pytest.raises(RuntimeError, match=r"learner process of churn failed:(?s:.*)Traceback"):
        for _ in range(100):
            host.feed([], 10**12, 1.0)
            host.results()
            time.sleep(0.05)


def test_the_child_ends_when_its_owner_is_killed() -> None:
    script = (
        "import sys, time\n"
        "from tests.unit.scoring.test_learner_host import _learner\n"
        "from scoring.learner_host import InProcess\n"
        "h = InProcess(_learner())\n"
        "h.feed([], None, 0.0)\n"
        "h.finish(0.0)\n"
        "print(h._proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        assert _alive(child)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        assert _gone(child)
    finally:
        owner.kill()


def test_an_unguarded_script_is_not_run_again_in_the_child(tmp_path) -> None:
    script = tmp_path / "embed.py"
    script.write_text(
        "print('script ran', flush=True)\n"
        "from tests.unit.scoring.test_learner_host import _learner\n"
        "from scoring.learner_host import InProcess\n"
        "h = InProcess(_learner())\n"
        "h.feed([], None, 0.0)\n"
        "print('learner answered', h.finish(0.0)[-1].metrics is not None, flush=True)\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["script ran", "learner answered True"]


def test_a_child_that_dies_fails_the_worker_loudly() -> None:
    host = InProcess(_learner())
    host.feed([], None, 0.0)
    host.finish(0.0)
    pid = host._proc.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert _gone(pid)
    with pytest.raises(RuntimeError, match="learner process of churn"):
        for _ in range(100):  # the pipe takes what fits in its buffer before it breaks
            host.feed(_batches(1)[0], None, 0.0)
            host.results()
            time.sleep(0.01)
