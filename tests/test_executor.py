"""One executor runs every job and its recorder alone writes the job's records: a training run's exact resume, its
divergence, its cancel through the store (the lease), data that cannot load, an experiment's steps; and the
recorder's retries while the store cannot be reached."""
import math
import os
import time
import types

import pytest

from resnet_core.errors import DatasetError, StoreUnavailableError
from resnet_core.nets.specs import get_spec
from resnet_core.runs import recorder as recording
from resnet_core.runs.executor import execute
from resnet_core.runs.lease import LeaseKeeper
from resnet_core.runs.recorder import Recorder
from resnet_core.runs.store import Store
from resnet_core.training.data import synthetic_data
from resnet_core.training.recipe import Recipe
from resnet_core.training.train import TrainMetrics

SPEC = get_spec("resnet8")
DATA = synthetic_data(256, 64)


def recipe(iterations=24, **changes):
    return Recipe(batch_size=32, eval_interval=8, **changes).shortened(iterations=iterations)


def taken_run(store, run_recipe=None, data="synthetic", experiment=None) -> int:
    """A run recorded as running for this process, as a launcher leaves it for the executor."""
    [run_id] = store.create_runs([dict(name="t", spec=SPEC.to_dict(), recipe=(run_recipe or recipe()).to_dict(),
                                       data=data, device="cpu", precision="fp32", seed=0, experiment=experiment)],
                                 taken_by=os.getpid())
    return run_id


def test_a_cancelled_run_resumes_into_the_same_curve(tmp_path):
    store = Store(tmp_path)
    uninterrupted = taken_run(store)
    assert str(execute(store, uninterrupted, data=DATA)) == "finished at iteration 24"

    resumed = taken_run(store)
    first = execute(store, resumed, data=DATA, should_stop=lambda: len(store.metrics(resumed)) >= 11)
    assert first.status == "cancelled" and store.run(resumed).status == "cancelled"
    stopped_at = store.latest_checkpoint(resumed)[0]
    assert 8 < stopped_at < 24 and first.done == stopped_at  # a final checkpoint mid-epoch, not a periodic one
    store.requeue_for_resume(resumed, taken_by=os.getpid())
    second = []
    assert execute(store, resumed, data=DATA, on_event=second.append).status == "finished"
    assert second[0].iteration == stopped_at + 1

    def curve(run_id):
        return [(row["kind"], row["iteration"], row["loss"]) for row in store.metrics(run_id)]

    assert curve(resumed) == curve(uninterrupted)
    assert store.run(resumed).status == "finished" and store.latest_checkpoint(resumed)[0] == 24


def test_a_nan_loss_ends_the_run_as_diverged_and_keeps_its_history(tmp_path):
    store = Store(tmp_path)
    run_id = taken_run(store, recipe(lr=1e30))
    end = execute(store, run_id, data=DATA)
    assert end.status == "diverged" and "lower --lr" in end.message
    run = store.run(run_id)
    assert run.status == "diverged" and run.error == end.message
    kept = store.metrics(run_id, "train")
    assert [row["iteration"] for row in kept] == list(range(1, end.done))
    assert all(math.isfinite(row["loss"]) for row in kept)
    assert store.latest_checkpoint(run_id) is None


def test_a_cancel_requested_in_the_store_stops_the_run_after_a_checkpoint(tmp_path):
    store = Store(tmp_path)
    run_id = taken_run(store, recipe(10_000))
    assert store.request_cancel(run_id)  # e.g. from a page: the lease's first renewal reads it
    end = execute(store, run_id, data=DATA)
    assert end.status == "cancelled" and 0 < end.done < 10_000
    assert store.run(run_id).status == "cancelled" and store.latest_checkpoint(run_id)[0] == end.done


def test_the_lease_keeper_turns_a_cancel_into_a_stop_request(tmp_path):
    store = Store(tmp_path)
    run_id = taken_run(store)
    with LeaseKeeper(tmp_path, run_id, 0.01) as lease:
        store.request_cancel(run_id)
        deadline = time.monotonic() + 30
        while not lease.stop_requested:
            assert time.monotonic() < deadline, "the lease was not renewed"
            time.sleep(0.01)


def test_data_that_cannot_load_fails_the_run_with_its_reason(tmp_path):
    store = Store(tmp_path)
    run_id = taken_run(store, data=str(tmp_path / "gone"))
    with pytest.raises(DatasetError) as caught:
        execute(store, run_id)
    run = store.run(run_id)
    assert run.status == "failed" and run.error == str(caught.value) and "Unknown dataset" in run.error


def test_an_experiment_is_executed_and_its_steps_recorded(tmp_path):
    store = Store(tmp_path)
    landscape = {"kind": "landscape", "model": "reference:resnet20", "seed": 0, "dims": 2, "points": 3, "span": 0.5,
                 "images": 8}
    run_id = taken_run(store, experiment=landscape)
    assert str(execute(store, run_id)) == "finished at step 4"
    steps = store.results(run_id)
    assert steps[0] == {"type": "axes", "alphas": [-0.5, 0.0, 0.5], "betas": [-0.5, 0.0, 0.5]}
    assert [step["row"] for step in steps[1:]] == [0, 1, 2]
    assert store.run(run_id).status == "finished"

    cancelled = taken_run(store, experiment=landscape)
    end = execute(store, cancelled, should_stop=lambda: True)
    assert (end.status, end.done) == ("cancelled", 1) and store.results(cancelled) == steps[:1]
    assert store.run(cancelled).error == "Cancelled after 1 steps; resume it to measure again from the start."
    store.requeue_for_resume(cancelled, taken_by=os.getpid())  # measured again from its first step
    assert execute(store, cancelled).status == "finished" and store.results(cancelled) == steps


class FlakyStore:
    """A store whose writes find the database down `outage` times before they get through."""

    def __init__(self, outage: int) -> None:
        self.outage, self.rows = outage, []

    def add_metrics(self, run_id, rows):
        if self.outage:
            self.outage -= 1
            raise StoreUnavailableError("The database is restarting.")
        self.rows.extend(rows)

    def finish(self, run_id, status, message):
        raise StoreUnavailableError("The database is gone.")


@pytest.fixture
def fake_clock(monkeypatch):
    """The recorder's waits pass at once, on a clock of their own."""
    clock = types.SimpleNamespace(now=0.0, waits=[])

    def sleep(seconds):
        clock.waits.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(recording, "time", types.SimpleNamespace(monotonic=lambda: clock.now, sleep=sleep))
    return clock


def metrics(iteration):
    return TrainMetrics(iteration=iteration, epoch=0, loss=1.0, error=0.5, smoothed_loss=1.0, smoothed_error=0.5,
                        lr=0.1, images_per_s=1.0, elapsed_s=1.0, eta_s=1.0)


def test_the_recorder_waits_out_a_database_restart_and_loses_nothing(fake_clock, caplog):
    store = FlakyStore(outage=6)
    recorder = Recorder(store, 1)
    recorder.record(metrics(1))  # the first row goes out at once, after the restart
    assert [row["iteration"] for row in store.rows] == [1]
    assert fake_clock.waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2 and "cannot be reached" in warnings[0] and "nothing was lost" in warnings[1]


def test_the_recorder_gives_up_after_its_deadline_and_fail_never_raises(fake_clock, caplog):
    store = FlakyStore(outage=10 ** 6)
    recorder = Recorder(store, 1)
    with pytest.raises(StoreUnavailableError):
        recorder.record(metrics(1))
    assert recording.RETRY_S - 5 < sum(fake_clock.waits) <= recording.RETRY_S
    recorder.fail("RuntimeError: boom")  # the rows and the status are each tried, and each failure logged
    assert "could not record its failure" in caplog.records[-1].getMessage()
    assert sum("could not record its failure" in record.getMessage() for record in caplog.records) == 2
