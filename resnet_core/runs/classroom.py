"""A workshop's lesson plan in the run store: the teacher's key, and the Fig. 6 cells handed out to people.

Fig. 6 needs every depth of {20, 32, 44, 56}, plain and residual, which no one person can train on a shared CPU
but a room can. A cell is one depth's pair (plain-44 and ResNet-44), so each person trains the twins they compare
on their own screen and the room fills both of Fig. 6's panels. While the teacher hands cells out (a `lesson` row
holds the length they set), each person who arrives gets the next depth in turn: the k-th arrival since the last
reset gets CELL_DEPTHS[k mod 4], counted and recorded in one write transaction so thirty people arriving at once
still spread evenly. Assignments live in the store, so every session and a restarted server see the same ones.
A mixin of `runs.store.Store`, like `runs.recorded`; no UI code here.
"""
from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import delete, func, select

from ..errors import UserError
from .database import insert
from .schema import assignments_table, lesson_table
from .settings import TEACHER_KEY_VARIABLE

assignments, lesson = assignments_table.c, lesson_table.c

CELL_DEPTHS = (20, 32, 44, 56)  # Fig. 6's plain nets, each with its residual twin
KEY_TRY_INTERVAL_S = 1.0  # a wrong key locks out the next try for this long: guessing stays slow


@dataclass(frozen=True)
class Assignment:
    """A person's cell: both nets of one depth, for `iterations` (None: the Train page's default length)."""

    depth: int
    iterations: int | None

    @property
    def nets(self) -> tuple[str, str]:
        return f"plain{self.depth}", f"resnet{self.depth}"


class ClassroomData:
    """A mixin of Store, whose transactions it uses."""

    def lesson_iterations(self) -> tuple[bool, int | None]:
        """(whether cells are being handed out, the length the teacher set or None for the default)."""
        with self._reading() as db:
            row = db.execute(select(lesson.iterations)).first()
        return (row is not None, row[0] if row else None)

    def hand_out(self, iterations: int | None) -> None:
        """Start handing out cells, each trained for `iterations` (None: the default); or change the length of
        every cell already handed out."""
        with self._transaction() as db:
            insert(db, lesson_table, [dict(id=1, iterations=iterations, started=time.time())], replace=True)

    def stop_handing_out(self) -> None:
        """People who arrive from now on get no cell; those handed out are kept (a reset forgets them)."""
        with self._transaction() as db:
            db.execute(delete(lesson_table))

    def assignment(self, owner: str) -> Assignment | None:
        """`owner`'s cell while cells are handed out, else None: a read."""
        with self._reading() as db:
            row = db.execute(select(assignments.depth, lesson.iterations).select_from(assignments_table)
                             .join(lesson_table, lesson.id == 1).where(assignments.owner == owner)).first()
        return Assignment(row[0], row[1]) if row else None

    def assign(self, owner: str) -> Assignment | None:
        """`owner`'s cell, given them now if they have none yet and cells are being handed out (the next depth in
        turn); None when they are not. Reads first, so a page can ask on every run without the write lock."""
        if not self.lesson_iterations()[0]:
            return None
        if assignment := self.assignment(owner):
            return assignment
        with self._transaction() as db:  # counted and recorded under the queue's lock: arrivals take turns
            if not db.execute(select(assignments.owner).where(assignments.owner == owner)).first():
                arrived = db.execute(select(func.count()).select_from(assignments_table)).scalar_one()
                db.execute(assignments_table.insert().values(owner=owner, assigned=time.time(),
                                                             depth=CELL_DEPTHS[arrived % len(CELL_DEPTHS)]))
        return self.assignment(owner)

    def reset_assignments(self) -> int:
        """Forget every cell handed out (the next person starts again at the first depth); how many there were."""
        with self._transaction() as db:
            return db.execute(delete(assignments_table)).rowcount

    def assigned_depths(self) -> dict[int, int]:
        """Depth -> people given that cell, every depth of CELL_DEPTHS included."""
        with self._reading() as db:
            counts = dict(db.execute(select(assignments.depth, func.count()).group_by(assignments.depth)).all())
        return {depth: counts.get(depth, 0) for depth in CELL_DEPTHS}


class KeyGate:
    """Checks a teacher key against the server's: in constant time, and after a wrong one no other try for
    KEY_TRY_INTERVAL_S, whoever makes it. One per server process, so opening new tabs does not get around it."""

    def __init__(self, interval_s: float = KEY_TRY_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.clock = interval_s, clock
        self._lock = threading.Lock()
        self._last_wrong: float | None = None

    def check(self, given: str, key: str | None) -> None:
        """Nothing when `given` is the server's `key`; a UserError with the one-line refusal otherwise."""
        if not key:
            raise UserError(f"This server has no teacher: ${TEACHER_KEY_VARIABLE} is not set, so nobody can hand out "
                            "cells or cancel other people's runs.")
        with self._lock:
            now = self.clock()
            if self._last_wrong is not None and now - self._last_wrong < self.interval_s:
                raise UserError(f"Too many tries: a teacher key can be tried once every {self.interval_s:g} s; "
                                "reload the link in a moment.")
            if not hmac.compare_digest(given.encode(), key.encode()):
                self._last_wrong = now
                raise UserError("That is not this server's teacher key; check the link you were given.")
