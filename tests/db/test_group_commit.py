"""GroupCommitter: concurrent requests share transactions, and each caller gets its own answer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.group_commit import GroupCommitter


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE rows (k TEXT PRIMARY KEY, v INTEGER)"))
    return sessionmaker(engine)


def _rows(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {k: v for k, v in session.execute(text("SELECT k, v FROM rows"))}


class Recorder:
    """Inserts (key, value) rows; a value < 0 makes the statement fail."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.groups: list[list[tuple[str, int]]] = []
        self.hold = hold

    def __call__(self, session: Session, requests: Sequence[tuple[str, int]]) -> list[str]:
        if self.hold is not None:
            self.hold.wait(10)  # the first group waits: the others pile up meanwhile
        self.groups.append(list(requests))
        for key, value in requests:
            if value < 0:
                raise ValueError(f"bad value for {key}")
            session.execute(text("INSERT INTO rows VALUES (:k, :v)"), {"k": key, "v": value})
        return [f"stored {key}" for key, _ in requests]


def test_concurrent_requests_share_transactions_and_get_their_own_answers(
    sessions: sessionmaker[Session],
) -> None:
    hold = threading.Event()
    recorder = Recorder(hold)
    committer = GroupCommitter(sessions, recorder, key=lambda r: r[0], name="t", max_batch=50)
    requests = [(f"k{i}", i) for i in range(120)]
    with ThreadPoolExecutor(120) as pool:
        answers = pool.map(committer.submit, requests)
        threading.Timer(0.5, hold.set).start()
        assert list(answers) == [f"stored k{i}" for i in range(120)]
    committer.close()
    assert _rows(sessions) == {f"k{i}": i for i in range(120)}
    sizes = [len(group) for group in recorder.groups]
    # The first group is held; the rest pile up meanwhile: groups of at most 50.
    assert sum(sizes) == 120 and max(sizes) == 50 and len(sizes) <= 5


def test_a_lone_request_is_written_at_once(sessions: sessionmaker[Session]) -> None:
    recorder = Recorder()
    committer = GroupCommitter(sessions, recorder, key=lambda r: r[0], name="t")
    assert committer.submit(("a", 1)) == "stored a"
    assert committer.submit(("b", 2)) == "stored b"
    committer.close()
    assert recorder.groups == [[("a", 1)], [("b", 2)]]


def test_a_failing_request_fails_only_its_own_caller(sessions: sessionmaker[Session]) -> None:
    hold = threading.Event()
    recorder = Recorder(hold)
    committer = GroupCommitter(sessions, recorder, key=lambda r: r[0], name="t")
    requests = [(f"k{i}", -1 if i == 7 else i) for i in range(20)]

    def submit(request: tuple[str, int]) -> str:
        try:
            return committer.submit(request)
        except ValueError as exc:
            return f"error: {exc}"

    with ThreadPoolExecutor(20) as pool:
        answers = pool.map(submit, requests)
        threading.Timer(0.3, hold.set).start()
        answers = list(answers)
    committer.close()
    assert answers[7] == "error: bad value for k7"
    assert answers[:7] + answers[8:] == [f"stored k{i}" for i in range(20) if i != 7]
    # The failed group was rolled back whole, then its requests written one by one.
    assert _rows(sessions) == {f"k{i}": i for i in range(20) if i != 7}


def test_requests_with_the_same_key_never_share_a_group(sessions: sessionmaker[Session]) -> None:
    hold = threading.Event()
    recorder = Recorder(hold)

    def run_group(session: Session, requests: Sequence[tuple[str, int]]) -> list[str]:
        recorder(session, [])  # waits on the first group only
        keys = [key for key, _ in requests]
        assert len(keys) == len(set(keys))
        recorder.groups[-1] = list(requests)
        return [f"{key}={value}" for key, value in requests]

    committer = GroupCommitter(sessions, run_group, key=lambda r: r[0], name="t")
    requests = [("same", i) for i in range(5)] + [("other", 9)]
    with ThreadPoolExecutor(6) as pool:
        answers = pool.map(committer.submit, requests)
        threading.Timer(0.3, hold.set).start()
        assert sorted(answers) == sorted(f"{k}={v}" for k, v in requests)
    committer.close()
    assert all(len({k for k, _ in group}) == len(group) for group in recorder.groups)
    assert sum(len(group) for group in recorder.groups) == 6


def test_closed_committer_refuses_requests(sessions: sessionmaker[Session]) -> None:
    committer = GroupCommitter(sessions, Recorder(), key=lambda r: r[0], name="t")
    committer.close()
    with pytest.raises(RuntimeError, match="closed"):
        committer.submit(("a", 1))
