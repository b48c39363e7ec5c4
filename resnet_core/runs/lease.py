"""An executing job's lease: renewed from a thread while it runs, so the store knows its executor is alive and the
executor learns of a cancel asked for anywhere (a page, another machine).

    with LeaseKeeper(store.home, run_id, lease_renew_seconds()) as lease:
        for record in train(..., should_stop=lambda: lease.stop_requested):
            ...
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from .store import Store

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews run `run_id`'s lease at once and then every `interval_s` until the `with` block ends; `stop_requested`
    turns True for good when the store answers that the job must stop (cancelled, or no longer this process's)."""

    def __init__(self, home: Path, run_id: int, interval_s: float) -> None:
        self.home, self.run_id, self.interval_s = home, run_id, interval_s
        self._stop_asked = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease of run {run_id}", daemon=True)

    @property
    def stop_requested(self) -> bool:
        return self._stop_asked.is_set()

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exception) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        store = None
        failing = False
        while True:
            try:
                store = store or Store(self.home)  # its own: a Store is not shared between threads
                if store.renew_lease(self.run_id):
                    self._stop_asked.set()
                if failing:
                    logger.warning("Run %s: its lease is renewed again.", self.run_id)
                failing = False
            except Exception as error:  # e.g. the database restarting: the next renewal may get through
                if not failing:  # once per outage, not every interval
                    logger.warning("Run %s: its lease could not be renewed (%s: %s); trying again every %g s.",
                                   self.run_id, type(error).__name__, error, self.interval_s)
                failing = True
            if self._done.wait(self.interval_s):
                return
