"""A workshop's cells in the run store (resnet_core.runs.classroom): round-robin by arrival, even when people
arrive at once, kept across a restart, reset; a store of the previous version gains them; the teacher key's gate."""
from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from helpers import ManualClock

from resnet_core.errors import UserError
from resnet_core.runs.classroom import CELL_DEPTHS, Assignment, KeyGate
from resnet_core.runs.store import Store

FIXTURES = Path(__file__).parent / "fixtures"


def test_cells_go_in_turn_only_while_handed_out_and_survive_a_restart(tmp_path):
    store = Store(tmp_path)
    assert store.assign("early") is None and store.lesson_iterations() == (False, None)
    store.hand_out(None)
    given = [store.assign(f"person {index}") for index in range(6)]
    assert [cell.depth for cell in given] == [20, 32, 44, 56, 20, 32]
    assert given[2] == Assignment(44, None) and given[2].nets == ("plain44", "resnet44")
    assert store.assign("person 2") == given[2]  # asking again changes nothing
    store.hand_out(600)  # a new length reaches every cell already given
    restarted = Store(tmp_path)
    assert restarted.assignment("person 3") == Assignment(56, 600)
    assert restarted.assigned_depths() == {20: 2, 32: 2, 44: 1, 56: 1}
    restarted.stop_handing_out()
    assert restarted.assign("late") is None and restarted.assignment("person 3") is None
    restarted.hand_out(600)
    assert restarted.assignment("person 3") == Assignment(56, 600)  # kept while not handed out
    assert restarted.reset_assignments() == 6 and restarted.assign("person 5").depth == CELL_DEPTHS[0]


def test_thirty_people_arriving_at_once_are_spread_evenly(tmp_path):
    Store(tmp_path).hand_out(None)
    barrier, errors = threading.Barrier(30), []

    def arrive(index: int) -> None:
        store = Store(tmp_path)  # a store of its own, as each server thread has
        try:
            barrier.wait()
            store.assign(f"person {index}")
        except Exception as error:  # reported below: a thread's exception would vanish
            errors.append(error)

    threads = [threading.Thread(target=arrive, args=(index,)) for index in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and Store(tmp_path).assigned_depths() == {20: 8, 32: 8, 44: 7, 56: 7}


def test_a_store_of_the_previous_version_gains_the_cells_and_keeps_its_runs(tmp_path):
    """Version 5 is version 6 (the committed store written by main before Alembic) without the lesson and
    assignments tables."""
    shutil.copytree(FIXTURES / "store_v6", tmp_path, dirs_exist_ok=True)
    old = sqlite3.connect(tmp_path / "runs.sqlite")
    old.executescript("DROP TABLE lesson; DROP TABLE assignments; PRAGMA user_version=5;")
    old.close()

    migrated = Store(tmp_path)
    assert [(run.id, run.status, run.owner) for run in migrated.runs()] == [
        (1, "finished", None), (2, "cancelled", "alice"), (3, "queued", "bob")]
    assert len(migrated.metrics(1)) == 6 and migrated.lesson_iterations() == (False, None)
    migrated.hand_out(300)
    assert migrated.assign("someone") == Assignment(20, 300)


def test_a_wrong_key_locks_out_every_try_for_a_second(tmp_path):
    clock = ManualClock()
    gate = KeyGate(clock=clock)
    gate.check("right", "right")
    with pytest.raises(UserError, match="^That is not this server's teacher key"):
        gate.check("wrong", "right")
    clock.now += 0.99
    with pytest.raises(UserError, match="^Too many tries"):
        gate.check("right", "right")
    clock.now += 0.01
    gate.check("right", "right")
    for key in (None, ""):
        with pytest.raises(UserError, match=r"^This server has no teacher: \$RESNET_EXPLORER_TEACHER_KEY is not set"):
            gate.check("", key)
