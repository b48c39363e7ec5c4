"""Workshop load test (issue 7): N people on one server at once, on loopback only.

One fresh `streamlit run` on 127.0.0.1 with an empty data folder, no spare processes (unless --spares) and
`--server.disconnectedSessionTTL 5`. Each simulated person has their own browser context in one headless
Debian Chromium (so their own `_streamlit_xsrf` cookie, i.e. their own owner id in the store): home page →
Architecture → Train, the "8 layers" preset (plain-8 vs ResNet-8) on the synthetic set, a short run, Start, then
the page stays open until both of their runs have finished. People start --stagger seconds apart.

Meanwhile a separate sampler process (so the browsers' driver cannot delay it) records every ~0.2 s:
`/_stcore/health` latency, runs with status running in the store, the server's RSS, the training processes'
total RSS, and the CPU time of the server, the training processes, this benchmark's browsers and the whole machine
(on a shared machine the rest is someone else's). Before anyone comes, the same sampler measures the idle server
for --baseline-s: the baseline. After everyone is done the contexts close and, past the session TTL, the server's
RSS is read again.

Targets: the cap on concurrent runs holds (sampled, and from the store's started/ended times), nothing is lost
(every accepted run finished with its metrics; a Start refused with "The server is full" or the per-person limit
is a refusal, not a loss), `/_stcore/health` p95 < 1 s under load. Also checked and reported: a page showing an
exception (the person reloads it), a click whose rerun shows nothing within --click-wait s (the person clicks
again), runs created by a Start that their page never showed. Screenshots of people who got stuck and the server
log land in --artifacts (git-ignored test-artifacts/bench_workshop/).

With --class (issue 15) the server has a teacher key and no bound on waiting runs, and a teacher's browser opens
the Class page with the key before anyone comes, hands out Fig. 6's cells (length --iterations) and keeps the page
open throughout. Each person then trains the pair their Train page preselected (checked against the line it
shows) instead of the "8 layers" preset. Also reported: the Class page's refresh time, i.e. each live rerun of its
room (script start to end, as the teacher's browser sees it), p50/p95 over the whole load and once every run
exists; and the health latency while the page is open (the whole load). With --leave-after-start each person
closes their browser once Start is accepted (the runs train on; the Class page shows them).

    .venv/bin/python -m benchmarks.bench_workshop [--users 8] [--iterations 60] [--batch 16] [--test-every 20]
    .venv/bin/python -m benchmarks.bench_workshop --class --users 30 --iterations 20 --batch 8 --test-every 10 \
        --stagger 3 --leave-after-start
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from playwright.async_api import async_playwright

from resnet_core.runs.store import Store

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
HEALTH_P95_TARGET_S = 1.0
ENDED = ("finished", "failed", "cancelled", "diverged", "interrupted")
# A run's card title on the Train page, e.g. "#3 plain-8 on synthetic · schedule queued #2" (the icon's name is
# in innerText where its font draws a ligature).
CARD = re.compile(r"#(\d+) (?:plain|ResNet)-\d+ on synthetic · (?:[a-z_]+ )?"
                  r"(queued #\d+|running|stopping|finished|failed|cancelled|diverged|interrupted)")
REFUSALS = {"server full": "The server is full", "per-person limit": "Each person may have"}
TEACHER_KEY = "bench-teacher"
CELL = re.compile(r"Your part of Fig\. 6: plain-(\d+) and ResNet-\d+, ([\d,]+) iterations")
# Every rerun of the page (the room's live fragment included), script start to end as the frontend sees them.
REFRESH_OBSERVER = """() => {
    window.__refreshes = [];
    const app = document.querySelector("[data-testid='stApp']");
    let began = null;
    new MutationObserver(() => {
        const state = app.getAttribute('data-test-script-state');
        if (state === 'running' && began === null) began = performance.now();
        if (state === 'notRunning' && began !== null) {
            window.__refreshes.push([Date.now() / 1000, (performance.now() - began) / 1000]);
            began = null;
        }
    }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def health_latency(url: str, timeout: float = 10) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as response:
        response.read()
    return time.perf_counter() - start


def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A `VmRSS:`-style field of /proc/PID/status in kB; None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def processes_of(home: Path, exclude: int | None = None) -> dict[int, int | None]:
    """Pid -> run id (None for a spare) of every process whose command line names the data folder: the training
    runs and spares the server started there."""
    needle, found = str(home).encode(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (exclude, os.getpid()):
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(needle in word for word in words):
            run_id = words[words.index(b"--run-id") + 1] if b"--run-id" in words[:-1] else None
            found[int(entry.name)] = int(run_id) if run_id and run_id.isdigit() else None
    return found


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    p95 = statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]
    return {"n": len(values), "p50": statistics.median(values), "p95": p95, "max": max(values)}


# ------------------------------------------------------------------------------------------- sampler (own process)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_times() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()  # the name in parentheses may hold spaces
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return table


def machine_busy_s() -> float:
    """CPU seconds all cores spent on anything but idle and I/O wait since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


class CpuAccount:
    """CPU seconds used since sampling began by the server, its training processes, this benchmark (its sampler,
    the Playwright driver and Chromium: the simulated people's browsers) and the whole machine. A process seen in
    the first sample counts from there; one born later from zero; one that dies keeps its last reading."""

    def __init__(self, bench_pid: int, server_pid: int) -> None:
        self.bench_pid, self.server_pid, self.first = bench_pid, server_pid, True
        self.seen: dict[int, list] = {}  # pid -> [category, baseline, last]
        self.machine_start = machine_busy_s()

    def read(self, trainers: set[int]) -> dict[str, float]:
        table = process_times()
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in table.items():
            children.setdefault(parent, []).append(pid)
        bench, todo = set(), [self.bench_pid]
        while todo:
            pid = todo.pop()
            if pid in bench or pid == self.server_pid or pid in trainers:  # the server's tree is not the browsers'
                continue
            bench.add(pid)
            todo.extend(children.get(pid, []))
        for pid, (_, used) in table.items():
            category = ("server" if pid == self.server_pid else "trainers" if pid in trainers
                        else "bench" if pid in bench else None)
            if category is None:
                continue
            if pid not in self.seen:
                self.seen[pid] = [category, used if self.first else 0.0, used]
            self.seen[pid][2] = used
        self.first = False
        totals = {"server": 0.0, "trainers": 0.0, "bench": 0.0}
        for category, baseline, last in self.seen.values():
            totals[category] += last - baseline
        totals["machine"] = machine_busy_s() - self.machine_start
        return totals


def sample(url: str, home: str, server_pid: int, bench_pid: int, every: float, stop, results) -> None:
    """Every `every` s until `stop` is set, a row: unix time `t`, `health` latency (s, None when it failed),
    `running` runs in the store, `server_rss` and `trainer_rss` (kB), `trainers` (processes alive), `exiting` (of
    them, those whose run the store already calls ended) and `cpu` (CpuAccount's cumulative seconds). Also, per run
    process, the seconds it stayed alive after the store called its run ended (at least: it may still be alive when
    sampling stops). Sent back through `results` when stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it; Ctrl-C goes to the parent
    store, rows, lingering = Store(home), [], {}  # (pid, run id) -> [ended at, last seen alive]
    account = CpuAccount(bench_pid, server_pid)
    while not stop.is_set():
        started = time.perf_counter()
        try:
            latency = health_latency(url)
        except OSError:
            latency = None
        trainers = processes_of(Path(home), exclude=server_pid)
        try:
            running = store.count_running()
            ended = {run.id: run.ended for run in store.runs() if run.ended} if trainers else {}
        except Exception:  # a locked or busy store must not stop the sampling; the sample says so
            running, ended = None, {}
        exiting = 0
        for pid, run_id in trainers.items():
            if run_id in ended:
                exiting += 1
                lingering.setdefault((pid, run_id), [ended[run_id], 0.0])[1] = time.time()
        rows.append({"t": time.time(), "health": latency, "running": running,
                     "server_rss": proc_status_kb(server_pid, "VmRSS"),
                     "trainer_rss": sum(proc_status_kb(pid, "VmRSS") or 0 for pid in trainers),
                     "trainers": len(trainers), "exiting": exiting, "cpu": account.read(set(trainers))})
        stop.wait(max(0.0, every - (time.perf_counter() - started)))
    results.put({"rows": rows, "lingering": [(pid, run_id, last - ended_at)
                                             for (pid, run_id), (ended_at, last) in lingering.items()]})


# ------------------------------------------------------------------------------------------- one person
@dataclass
class Person:
    index: int
    opened: float | None = None  # unix times
    train_ready: float | None = None
    start_clicked: float | None = None
    accepted: float | None = None
    done: float | None = None
    run_ids: list[int] = field(default_factory=list)
    refusal: str | None = None  # the st.error text shown on Start
    queue_positions: list[int] = field(default_factory=list)  # k of every "queued #k" seen on the page
    statuses_seen: list[str] = field(default_factory=list)
    final_statuses: dict[int, str] = field(default_factory=dict)
    exceptions: list[str] = field(default_factory=list)  # st.exception boxes seen on any page
    error: str | None = None  # the simulation itself failed (a timeout, a missing widget)
    lost_clicks: list[str] = field(default_factory=list)  # widget changes whose rerun showed nothing in time
    late_effects: list[str] = field(default_factory=list)  # ... and whether a retry then worked
    reloads: list[str] = field(default_factory=list)  # pages reloaded because they showed an exception
    step: str = "arriving"  # what it was doing, for the error
    cell: tuple[int, int] | None = None  # --class: (depth, iterations) their Train page said was theirs


async def settle(page, timeout_ms: int) -> None:
    await page.wait_for_selector(IDLE, timeout=timeout_ms)


async def note_exceptions(page, person: Person) -> None:
    for text in await page.locator("[data-testid='stException']").all_inner_texts():
        if text not in person.exceptions:
            person.exceptions.append(text)


async def page_shown(page, person: Person, what: str, ready, args) -> None:
    """Wait until `ready` (a locator of what the page draws last) is visible and the script has finished. A page
    that shows an exception instead is noted and reloaded, as a person would, up to --click-retries times."""
    timeout_ms = int(args.step_timeout * 1000)
    exception = page.locator("[data-testid='stException']")
    for attempt in range(args.click_retries + 1):
        deadline = time.monotonic() + args.step_timeout
        while time.monotonic() < deadline:
            if await exception.count():
                await note_exceptions(page, person)
                person.reloads.append(f"{what}: an exception on attempt {attempt + 1}; reloaded")
                await page.reload(timeout=timeout_ms)
                break
            if await ready.is_visible():
                await settle(page, timeout_ms)
                if not await exception.count():
                    return
                continue
            await page.wait_for_timeout(200)
        else:
            raise TimeoutError(f"{what} was not drawn in {args.step_timeout:.0f} s")
    raise TimeoutError(f"{what} showed an exception {args.click_retries + 1} times")


async def change_and_wait(page, person: Person, what: str, actions: list, effect, state: str, args,
                          retry: list | None = None) -> None:
    """Do `actions` (clicks), then wait up to --click-wait s for the rerun's visible effect (`effect` reaching
    `state`); a person whose click changed nothing does it again (`retry`, else `actions`), up to --click-retries
    times. Each click with no effect in time is noted, with the app's script and connection state then."""
    for attempt in range(args.click_retries + 1):
        clicked = time.time()
        for action in (actions if attempt == 0 else retry or actions):
            await action()
        try:
            await effect.wait_for(state=state, timeout=int(args.click_wait * 1000))
            if attempt:
                person.late_effects.append(f"{what}: applied on attempt {attempt + 1}, "
                                           f"{time.time() - clicked:.1f} s after it")
            return
        except PlaywrightTimeoutError:
            app = page.locator("[data-testid='stApp']")
            person.lost_clicks.append(
                f"{what} (attempt {attempt + 1}): no effect after {args.click_wait:.0f} s; script "
                f"{await app.get_attribute('data-test-script-state')}, connection "
                f"{await app.get_attribute('data-test-connection-state')}")
    raise TimeoutError(f"{what} had no effect after {args.click_retries + 1} attempts")


async def person_session(index: int, browser, url: str, args, deadline: float, person: Person, contexts: list):
    await asyncio.sleep(index * args.stagger)
    timeout_ms = int(args.step_timeout * 1000)
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(timeout_ms)  # clicks too: under load a widget may take long to become clickable
    contexts.append(context)
    page = await context.new_page()
    try:
        person.opened = time.time()
        person.step = "home page"
        await page.goto(url, timeout=timeout_ms)
        await page_shown(page, person, "home page", page.get_by_test_id("stMain").get_by_test_id("stPageLink").last,
                         args)
        person.step = "Architecture page"
        await page.get_by_test_id("stSidebarNav").get_by_role("link", name="Architecture").click()
        await page_shown(page, person, "Architecture page", page.get_by_role("tab", name="Layer table"), args)
        person.step = "Train page"
        await page.get_by_test_id("stSidebarNav").get_by_role("link", name="Train").click()
        await page_shown(page, person, "Train page", page.get_by_role("button", name="Start"), args)
        person.train_ready = time.time()

        # Each change reruns the script; the next widget must not be touched before the rerun has applied it.
        if args.class_mode:  # their cell is preselected, with the line that says which
            person.step = "assigned cell"
            line = await page.get_by_text("Your part of Fig. 6").inner_text()
            depth, iterations = CELL.search(line).groups()
            person.cell = (int(depth), int(iterations.replace(",", "")))
        else:
            person.step = "preset 8 layers"
            preset = page.get_by_role("button", name="8 layers")
            await change_and_wait(page, person, "preset 8 layers", [preset.click],
                                  page.get_by_test_id("stMultiSelect").get_by_text("plain-8", exact=True), "visible",
                                  args)
        await settle(page, timeout_ms)
        person.step = "synthetic data"
        cifar_note = page.get_by_text("CIFAR-10 is not here yet")  # there while CIFAR-10 is picked, in a fresh folder
        synthetic = page.get_by_text("Synthetic (no download)")
        if await cifar_note.count():
            # A retry picks CIFAR-10 and then Synthetic again: clicking a checked radio changes nothing.
            await change_and_wait(page, person, "synthetic data", [synthetic.click], cifar_note, "detached", args,
                                  retry=[page.get_by_text("CIFAR-10", exact=True).click, synthetic.click])
        else:
            await synthetic.click()
            await page.wait_for_timeout(500)
        await settle(page, timeout_ms)
        for label, value in (("Number of iterations", args.iterations), ("Batch (images)", args.batch),
                             ("Test every (iterations)", args.test_every)):
            if args.class_mode and label == "Number of iterations":
                continue  # the teacher's length, preselected with the cell
            person.step = label
            box = page.get_by_role("spinbutton", name=label)
            await box.fill(str(value))
            await box.press("Enter")
            await settle(page, timeout_ms)
        person.step = "Start"
        await page.get_by_role("button", name="Start").click()
        person.start_clicked = time.time()

        # Accepted (the URL names the runs) or refused (an st.error under Start).
        while True:
            query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
            if query.get("runs"):
                person.run_ids = [int(part) for part in query["runs"][0].split(",") if part.isdigit()]
                person.accepted = time.time()
                break
            errors = await page.locator("[data-testid='stAlertContentError']").all_inner_texts()
            if errors:
                person.refusal = errors[0]
                await note_exceptions(page, person)
                return
            if time.time() > deadline:
                raise TimeoutError("neither runs nor a refusal appeared after Start")
            await page.wait_for_timeout(300)

        if args.leave_after_start:  # the Class page watches their runs; their browser no longer loads the box
            contexts.remove(context)
            await context.close()
            return
        # Watch the cards until both runs have ended, as a participant would.
        person.step = "watching the runs"
        while time.time() < deadline:
            text = await page.get_by_test_id("stMain").inner_text()
            cards = {int(run_id): status for run_id, status in CARD.findall(text)}
            for status in cards.values():
                if status.startswith("queued #"):
                    person.queue_positions.append(int(status.split("#")[1]))
                if status not in person.statuses_seen:
                    person.statuses_seen.append(status)
            await note_exceptions(page, person)
            if set(person.run_ids) <= set(cards) and all(cards[run_id] in ENDED for run_id in person.run_ids):
                person.final_statuses = {run_id: cards[run_id] for run_id in person.run_ids}
                person.done = time.time()
                return
            await page.wait_for_timeout(int(args.poll_s * 1000))
        raise TimeoutError(f"runs {person.run_ids} had not ended on the page by the deadline")
    except Exception as error:  # one person's failure is a result, not the end of the benchmark
        person.error = f"{person.step}: {type(error).__name__}: " \
                       f"{str(error).splitlines()[0] if str(error) else ''}"[:300]
        if args.artifacts:
            try:
                Path(args.artifacts).mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=Path(args.artifacts) / f"person-{index}.png", full_page=True, timeout=30_000)
            except Exception:
                pass


async def progress(store_home: Path, people: list[Person], stop: asyncio.Event, leave: bool,
                   every: float = 10) -> None:
    store, began = Store(store_home), time.time()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass
        counts: dict[str, int] = {}
        for run in store.runs():
            counts[run.status] = counts.get(run.status, 0) + 1
        ended = sum(person.done is not None or person.refusal is not None or person.error is not None
                    or (leave and person.accepted is not None) for person in people)
        print(f"  [{time.time() - began:5.0f} s] people done {ended}/{len(people)}; runs {counts}", file=sys.stderr,
              flush=True)


async def open_class_page(browser, url: str, args):
    """--class: the teacher opens the Class page with the key, hands out cells of --iterations and keeps it open;
    its page, with every rerun from then on recorded (REFRESH_OBSERVER)."""
    timeout_ms = int(args.step_timeout * 1000)
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(timeout_ms)
    page = await context.new_page()
    await page.goto(f"{url}/Class?key={TEACHER_KEY}", timeout=timeout_ms)
    await page.get_by_role("button", name="Hand out cells").wait_for()
    await settle(page, timeout_ms)
    length = page.get_by_role("spinbutton", name="Each cell's length (iterations)")
    await length.fill(str(args.iterations))
    await length.press("Enter")
    await settle(page, timeout_ms)
    await page.get_by_role("button", name="Hand out cells").click()
    await page.get_by_role("button", name="Change the length").wait_for()
    await settle(page, timeout_ms)
    await page.evaluate(REFRESH_OBSERVER)
    return page


async def workshop(url: str, home: Path, args, marks: dict) -> list[Person]:
    people = [Person(index) for index in range(args.users)]
    contexts: list = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            class_page = await open_class_page(browser, url, args) if args.class_mode else None
            marks["load_start"] = time.time()
            deadline = marks["load_start"] + args.timeout
            stop = asyncio.Event()
            reporter = asyncio.create_task(progress(home, people, stop, args.leave_after_start))
            await asyncio.gather(*(person_session(person.index, browser, url, args, deadline, person, contexts)
                                   for person in people))
            if args.leave_after_start:  # the load lasts until the last run has ended, the Class page open
                store = Store(home)
                while time.time() < deadline and any(run.status not in ENDED for run in store.runs()):
                    await asyncio.sleep(1)
            stop.set()
            await reporter
            marks["load_end"] = time.time()
            marks["loadavg_load_end"] = [round(value, 2) for value in os.getloadavg()]
            if class_page is not None:
                marks["class_refreshes"] = await class_page.evaluate("window.__refreshes")
                marks["class_page_table"] = await class_page.get_by_test_id("stDataFrame").count()
                await class_page.context.close()
            for context in contexts:
                await context.close()
            marks["closed"] = time.time()
        finally:
            await browser.close()
    return people


# ------------------------------------------------------------------------------------------- the server
def start_server(home: Path, args, log_path: Path) -> tuple[subprocess.Popen, str, dict]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "RESNET_EXPLORER_HOME": str(home),
           "RESNET_EXPLORER_SPARES": str(args.spares), "RESNET_EXPLORER_MAX_RUNS": str(args.max_runs)}
    if args.class_mode:  # every person's pair waits its turn: the room's runs are the point
        env.update(RESNET_EXPLORER_TEACHER_KEY=TEACHER_KEY, RESNET_EXPLORER_MAX_WAITING=str(2 * args.users))
    # The limits exactly as the server computes them: same code, same environment.
    probe = subprocess.run(
        [sys.executable, "-c", "import json; from resnet_core.runs import settings; print(json.dumps(["
         "settings.max_concurrent_runs(), settings.threads_per_run(), settings.runs_per_user(), "
         "settings.max_waiting_runs()]))"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True)
    cap, threads, per_user, waiting = json.loads(probe.stdout.strip().splitlines()[-1])
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
             "--server.disconnectedSessionTTL", str(args.ttl),
             *[part for option in args.streamlit_option for part in (f"--{option.split('=', 1)[0]}",
                                                                     option.split("=", 1)[1])]],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            health_latency(url, timeout=1)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise SystemExit(f"streamlit did not become healthy; its log:\n{log_path.read_text()}")
            time.sleep(0.2)
    return server, url, {"cap": cap, "threads_per_run": threads, "runs_per_user": per_user, "max_waiting": waiting}


def stop_everything(server: subprocess.Popen | None, home: Path) -> list[int]:
    """Stop the server, then any process still working in the data folder (runs and spares have sessions of their
    own, so they outlive the server). Returns the pids that had to be stopped."""
    if server is not None and server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    leftovers = list(processes_of(home))
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(proc_status_kb(pid, "VmRSS") for pid in leftovers):
        time.sleep(0.2)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return leftovers


# ------------------------------------------------------------------------------------------- the report
def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at once; an end at the same instant as a start counts first."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda event: (event[0], event[1]))
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def build_report(args, limits: dict, people: list[Person], runs: list, metrics: dict, samples: list, lingering: list,
                 marks: dict, server_end: dict, log_text: str) -> dict:
    def window(start: float, end: float) -> list:
        return [row for row in samples if start <= row["t"] <= end]

    idle, load = window(marks["idle_start"], marks["idle_end"]), window(marks["load_start"], marks["load_end"])
    after = window(marks["closed"], marks["after_end"])
    run_by_id = {run.id: run for run in runs}
    accepted = [person for person in people if person.run_ids]
    refused = [person for person in people if person.refusal]
    refusal_kinds = {kind: sum(marker in (person.refusal or "") for person in refused)
                     for kind, marker in REFUSALS.items()}
    statuses: dict[str, int] = {}
    for run in runs:
        statuses[run.status] = statuses.get(run.status, 0) + 1
    finished = [run for run in runs if run.status == "finished"]
    complete = [run for run in finished if metrics[run.id]["train_last"] == run.recipe["iterations"]
                and metrics[run.id]["test_points"] > 0]
    recipe_ok = all((run.recipe["iterations"], run.recipe["batch_size"], run.recipe["eval_interval"]) ==
                    (args.iterations, args.batch, args.test_every) for run in runs)
    owners = {person.index: {run_by_id[run_id].owner for run_id in person.run_ids if run_id in run_by_id}
              for person in accepted}
    distinct_owners = all(len(owner) == 1 for owner in owners.values()) and \
        len({next(iter(owner)) for owner in owners.values() if owner}) == len(accepted)
    orphans = [run.id for run in runs if run.id not in {run_id for person in people for run_id in person.run_ids}]
    sampled_running = [row["running"] for row in load + after if row["running"] is not None]
    intervals = [(run.started, run.ended or time.time()) for run in runs if run.started]
    waits = [run.started - run.created for run in runs if run.started]
    spans = [run.ended - run.started for run in runs if run.started and run.ended]
    positions = sorted({k for person in people for k in person.queue_positions})
    health_idle = percentiles([row["health"] for row in idle if row["health"] is not None])
    health_load = percentiles([row["health"] for row in load if row["health"] is not None])
    # Arriving (pages loading, torch imported, Start pressed) against only waiting for the runs to end.
    last_start = max((person.start_clicked for person in people if person.start_clicked), default=marks["load_end"])
    health_arriving = percentiles([row["health"] for row in load if row["health"] is not None
                                   and row["t"] <= last_start])
    health_waiting = percentiles([row["health"] for row in load if row["health"] is not None and row["t"] > last_start])
    paths = [person.train_ready - person.opened for person in people if person.train_ready and person.opened]
    turnarounds = [person.done - person.start_clicked for person in people if person.done and person.start_clicked]
    server_rss = [row["server_rss"] for row in samples if row["server_rss"]]
    trainer_rss = [row["trainer_rss"] for row in load]

    def cpu_share(rows: list) -> dict:
        """Core-seconds each used over the rows' span, and the share of the machine's capacity (all cores)."""
        if len(rows) < 2:
            return {}
        span, cores = rows[-1]["t"] - rows[0]["t"], os.cpu_count() or 1
        used = {key: rows[-1]["cpu"][key] - rows[0]["cpu"][key] for key in rows[0]["cpu"]}
        used["others"] = max(0.0, used["machine"] - used["server"] - used["trainers"] - used["bench"])
        return {"span_s": round(span, 1), "cores": cores,
                **{key: {"core_s": round(value, 1), "share": round(value / (span * cores), 3)}
                   for key, value in used.items()}}
    exceptions = sorted({text for person in people for text in person.exceptions})
    tracebacks = log_text.count("Traceback (most recent call last)")
    # Distinct last lines of the server's uncaught exceptions, with counts.
    errors: dict[str, int] = {}
    lines = log_text.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            last = next((later for later in lines[number + 1:] if later and not later.startswith(" ")), "?")
            errors[last[:200]] = errors.get(last[:200], 0) + 1
    # Other timestamped messages (warnings), less the server's start, stop and access lines.
    warnings: dict[str, int] = {}
    routine = ("Uncaught app execution", "Exception in ASGI application", "server started", "HTTP/1.1\"",
               "Shutting down", "application shutdown", "Application shutdown")
    for line in lines:
        if re.match(r"^\d{4}-\d\d-\d\d [\d:.]+ ", line) and not any(text in line for text in routine):
            text = line.split(" ", 2)[2][:200]
            warnings[text] = warnings.get(text, 0) + 1
    uncaught = log_text.count("Uncaught app execution")
    def in_ms(block: dict) -> dict:
        return {key: (round(value * 1000, 1) if key != "n" and value is not None else value)
                for key, value in block.items()}

    report = {
        "users": args.users, "class_mode": args.class_mode, "left_after_start": args.leave_after_start,
        "click_wait_s": args.click_wait,
        "iterations": args.iterations, "batch": args.batch,
        "test_every": args.test_every,
        "cap": limits["cap"], "threads_per_run": limits["threads_per_run"], "runs_per_user": limits["runs_per_user"],
        "max_waiting": limits["max_waiting"], "spares": args.spares, "session_ttl_s": args.ttl,
        "streamlit_options": args.streamlit_option,
        "start_presses": sum(person.start_clicked is not None for person in people),
        "accepted_presses": len(accepted), "refused_presses": len(refused),
        "refusals": refusal_kinds, "runs_submitted": len(runs), "runs_finished": len(finished),
        "runs_with_all_metrics": len(complete), "run_statuses": statuses,
        "runs_failed": [{"id": run.id, "status": run.status, "error": run.error} for run in runs
                        if run.status != "finished"],
        "recipes_as_set": recipe_ok, "one_owner_per_person": distinct_owners, "runs_never_shown": orphans,
        "people_errors": {person.index: person.error for person in people if person.error},
        "page_exceptions": exceptions, "server_log_tracebacks": tracebacks, "server_log_errors": errors,
        "server_log_other_messages": warnings,
        "pages_reloaded": {person.index: person.reloads for person in people if person.reloads},
        "lost_clicks": {person.index: person.lost_clicks for person in people if person.lost_clicks},
        "late_effects": {person.index: person.late_effects for person in people if person.late_effects},
        "max_running_sampled": max(sampled_running, default=0), "max_running_from_store": max_overlap(intervals),
        "queue_positions_seen": positions, "max_queue_position": max(positions, default=0),
        "queue_wait_s": percentiles(waits), "run_duration_s": percentiles(spans),
        "path_to_train_s": percentiles(paths), "start_to_both_finished_s": percentiles(turnarounds),
        "health_idle_ms": in_ms(health_idle), "health_load_ms": in_ms(health_load),
        "health_arriving_ms": in_ms(health_arriving), "health_waiting_ms": in_ms(health_waiting),
        "last_start_after_s": round(last_start - marks["load_start"], 1),
        "health_failures_during_load": sum(row["health"] is None for row in load),
        "cpu_idle": cpu_share(idle), "cpu_load": cpu_share(load),
        "cpu_arriving": cpu_share([row for row in load if row["t"] <= last_start]),
        "cpu_waiting": cpu_share([row for row in load if row["t"] >= last_start]),
        "server_rss_idle_mb": round(statistics.median([row["server_rss"] for row in idle if row["server_rss"]]) / 1024,
                                    1),
        "server_rss_max_sampled_mb": round(max(server_rss) / 1024, 1),
        "server_rss_end_of_load_mb": round(((load[-1]["server_rss"] or 0) if load else 0) / 1024, 1),
        "server_rss_after_close_mb": round(server_end["rss_kb"] / 1024, 1),
        "server_vmhwm_mb": round(server_end["hwm_kb"] / 1024, 1),
        "trainers_rss_max_mb": round(max(trainer_rss, default=0) / 1024, 1),
        "trainers_max_processes": max((row["trainers"] for row in load), default=0),
        "trainers_max_exiting": max((row["exiting"] for row in load), default=0),
        "alive_after_ended_s": percentiles([seconds for _, _, seconds in lingering]),
        "runs_with_process_alive_after_ended": len({run_id for _, run_id, _ in lingering}),
        "processes_alive_after_ended": sorted([run_id, pid, round(seconds, 1)] for pid, run_id, seconds in lingering),
        # Seconds (in samples) with more training processes alive than the cap: ended runs still exiting.
        "over_cap_processes_s": round(sum(after_row["t"] - row["t"] for row, after_row in zip(load, load[1:])
                                          if row["trainers"] > limits["cap"] + args.spares), 1),
        "load_wall_s": round(marks["load_end"] - marks["load_start"], 1),
        "total_wall_s": round(marks["after_end"] - marks["began"], 1),
        "load_average_before": marks["loadavg_before"], "load_average_after": marks["loadavg_after"],
        "sessions_closed_wait_s": round(marks["after_end"] - marks["closed"], 1),
        "samples_after_close": len(after),
        "leftover_processes_killed": marks.get("leftovers", []),
    }
    if health_idle["p50"] and health_load["p50"]:
        report["health_ratio_p50"] = round(health_load["p50"] / health_idle["p50"], 1)
        report["health_ratio_p95"] = round(health_load["p95"] / health_idle["p95"], 1)
    if args.class_mode:
        refreshes = [(t, seconds) for t, seconds in marks.get("class_refreshes", [])
                     if marks["load_start"] <= t <= marks["load_end"]]
        cells = [person.cell for person in people if person.cell]
        report.update({
            "class_refresh_ms": in_ms(percentiles([seconds for _, seconds in refreshes])),
            "class_refresh_all_runs_ms": in_ms(percentiles([seconds for t, seconds in refreshes if t > last_start])),
            "cells": {depth: sum(cell[0] == depth for cell in cells) for depth in sorted({c[0] for c in cells})},
            "cells_as_set": all(cell[1] == args.iterations for cell in cells) and len(cells) == len(people),
            "runs_of_their_cell": all({run_by_id[run_id].model for run_id in person.run_ids if run_id in run_by_id}
                                      == {f"plain{person.cell[0]}", f"resnet{person.cell[0]}"}
                                      for person in accepted if person.cell),
            "load_average_end_of_load": marks.get("loadavg_load_end")})
    report["pass"] = {
        "cap held": max(report["max_running_sampled"], report["max_running_from_store"]) <= limits["cap"],
        # Every run the store accepted finished with all its metrics, none failed: a refusal is not a loss.
        "nothing lost": len(finished) == len(runs) == len(complete),
        f"health p95 < {HEALTH_P95_TARGET_S * 1000:.0f} ms": (health_load["p95"] is not None and
                                                                health_load["p95"] < HEALTH_P95_TARGET_S
                                                                and report["health_failures_during_load"] == 0),
        # Not one of the targets: whether people had to click again because a rerun never showed.
        f"every click applied within {args.click_wait:.0f} s (extra)": not report["lost_clicks"],
        "no exception on any page (extra)": not exceptions and not uncaught,
        # Every simulated person got from the home page to both runs finished on their page (or to a refusal), and
        # every run in the store is one a person's page showed.
        "every person got through (extra)": not report["people_errors"] and not orphans,
    }
    if args.class_mode:
        spread = list(report["cells"].values())
        report["pass"]["cells handed out in turn, each person's pair trained (extra)"] = (
            report["cells_as_set"] and report["runs_of_their_cell"] and max(spread) - min(spread) <= 1)
    return report


def print_report(report: dict) -> None:
    def ms(block: dict) -> str:
        return f"{block['p50']} / {block['p95']} / {block['max']} ms (n={block['n']})"

    def s(block: dict) -> str:
        if not block["n"]:
            return "–"
        return f"{block['p50']:.1f} / {block['p95']:.1f} / {block['max']:.1f} s (n={block['n']})"

    def cpu(block: dict) -> str:
        if not block:
            return "–"
        parts = " / ".join(f"{block[key]['core_s']:.0f}" for key in ("server", "trainers", "bench", "others"))
        return (f"{parts} core-s of {block['span_s'] * block['cores']:.0f} "
                f"(server {100 * block['server']['share']:.0f}%, machine busy {100 * block['machine']['share']:.0f}%)")

    refusals = ", ".join(f"{kind} {count}" for kind, count in report["refusals"].items())
    classroom = [
        ("Class page refresh p50 / p95 / max: whole load", ms(report["class_refresh_ms"])),
        ("  once every run existed", ms(report["class_refresh_all_runs_ms"])),
        ("cells handed out (depth: people)", report["cells"]),
        ("machine load average (1/5/15 min) at the end of the load", report["load_average_end_of_load"]),
    ] if "class_refresh_ms" in report else []
    rows = [
        ("users (browser contexts)", report["users"]),
        ("extra streamlit options", " ".join(report["streamlit_options"]) or "none"),
        ("run per person", f"{'their cell' if report['class_mode'] else 'plain-8 + ResNet-8'}, synthetic, "
                           f"{report['iterations']} it × {report['batch']}, "
                           f"test every {report['test_every']}"),
        ("cap / threads per run / per person / max waiting",
         f"{report['cap']} / {report['threads_per_run']} / {report['runs_per_user']} / {report['max_waiting']}"),
        ("Start presses / accepted / refused", f"{report['start_presses']} / {report['accepted_presses']} / "
                                               f"{report['refused_presses']} ({refusals})"),
        ("runs submitted / finished / with all metrics",
         f"{report['runs_submitted']} / {report['runs_finished']} / {report['runs_with_all_metrics']}"),
        ("runs not finished", report["runs_failed"] or "none"),
        ("max running: sampled / from store times", f"{report['max_running_sampled']} / "
                                                    f"{report['max_running_from_store']} (cap {report['cap']})"),
        ("queue positions seen on pages", f"{report['queue_positions_seen']} (max {report['max_queue_position']})"),
        ("queue wait p50 / p95 / max", s(report["queue_wait_s"])),
        ("run duration p50 / p95 / max", s(report["run_duration_s"])),
        ("home → Architecture → Train ready", s(report["path_to_train_s"])),
        ("Start → both runs finished on the page", s(report["start_to_both_finished_s"])),
        ("health idle (baseline) p50 / p95 / max", ms(report["health_idle_ms"])),
        ("health under load p50 / p95 / max", ms(report["health_load_ms"])),
        (f"  arriving (first {report['last_start_after_s']} s)", ms(report["health_arriving_ms"])),
        ("  then waiting for the runs", ms(report["health_waiting_ms"])),
        ("health ratio load / idle", f"p50 {report.get('health_ratio_p50')}×, p95 {report.get('health_ratio_p95')}×"),
        ("health failures under load", report["health_failures_during_load"]),
        *[(f"CPU {label}: server / trainers / browsers+bench / others", cpu(report[key]))
          for label, key in (("idle", "cpu_idle"), ("arriving", "cpu_arriving"), ("waiting", "cpu_waiting"))],
        ("server RSS idle / max sampled / VmHWM",
         f"{report['server_rss_idle_mb']} / {report['server_rss_max_sampled_mb']} / {report['server_vmhwm_mb']} MB"),
        ("server RSS end of load / after close + TTL",
         f"{report['server_rss_end_of_load_mb']} / {report['server_rss_after_close_mb']} MB "
         f"({report['sessions_closed_wait_s']} s after closing)"),
        ("training processes: max alive / max total RSS", f"{report['trainers_max_processes']} / "
                                                            f"{report['trainers_rss_max_mb']} MB"),
        ("  of which ended runs still exiting: max / time over cap",
         f"{report['trainers_max_exiting']} / ~{report['over_cap_processes_s']} s"),
        ("  a run's process alive after its run ended p50 / p95 / max",
         f"{s(report['alive_after_ended_s'])}, {report['runs_with_process_alive_after_ended']} runs"),
        ("runs created but never shown on their person's page", report["runs_never_shown"] or "none"),
        ("owner ids one per person / recipes as set", f"{report['one_owner_per_person']} / {report['recipes_as_set']}"),
        ("page exceptions / server log tracebacks", f"{len(report['page_exceptions'])} / "
                                                    f"{report['server_log_tracebacks']}"),
        ("simulation errors", report["people_errors"] or "none"),
        (f"clicks with no visible effect after {report['click_wait_s']:.0f} s",
         f"{sum(map(len, report['lost_clicks'].values()))} by {len(report['lost_clicks'])} people; "
         f"a retry worked {sum(map(len, report['late_effects'].values()))} times"),
        ("load wall / total wall", f"{report['load_wall_s']} s / {report['total_wall_s']} s"),
        ("machine load average (1/5/15 min) before / after",
         f"{report['load_average_before']} / {report['load_average_after']}"),
        *classroom,
    ]
    width = max(len(label) for label, _ in rows)
    print()
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    for text in report["page_exceptions"]:
        print(f"page exception: {text[:500]}")
    for text, count in report["server_log_errors"].items():
        print(f"server log, uncaught exception ×{count}: {text}")
    for text, count in report["server_log_other_messages"].items():
        print(f"server log, message ×{count}: {text}")
    for index, reloads in report["pages_reloaded"].items():
        for line in reloads:
            print(f"person {index}: {line}")
    for index, lost in report["lost_clicks"].items():
        for line in lost:
            print(f"person {index}: {line}")
    print()
    for target, ok in report["pass"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {target}")
    print(json.dumps(report, default=str))


# ------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--class", dest="class_mode", action="store_true",
                        help="a teacher hands out Fig. 6's cells and keeps the Class page open (issue 15)")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--test-every", type=int, default=20)
    parser.add_argument("--leave-after-start", action="store_true",
                        help="each person closes their browser once Start is accepted: on a 2-core box 30 open "
                             "pages measure the load generator more than the server")
    parser.add_argument("--max-runs", type=int, default=2, help="RESNET_EXPLORER_MAX_RUNS given to the server")
    parser.add_argument("--spares", type=int, default=0, help="RESNET_EXPLORER_SPARES given to the server")
    parser.add_argument("--stagger", type=float, default=0.3, help="seconds between two people arriving")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the whole load")
    parser.add_argument("--step-timeout", type=float, default=120, help="seconds for one page step")
    parser.add_argument("--poll-s", type=float, default=1.0, help="how often a person reads their page")
    parser.add_argument("--baseline-s", type=float, default=5.0, help="idle server measured before anyone comes")
    parser.add_argument("--ttl", type=int, default=5, help="--server.disconnectedSessionTTL in seconds")
    parser.add_argument("--after-close-s", type=float, default=15.0, help="wait after closing the browsers")
    parser.add_argument("--sample-s", type=float, default=0.2)
    parser.add_argument("--click-wait", type=float, default=30.0,
                        help="seconds a person waits for a click's rerun to show before clicking again")
    parser.add_argument("--click-retries", type=int, default=2)
    parser.add_argument("--streamlit-option", action="append", default=[], metavar="KEY=VALUE",
                        help="another `streamlit run` option for the server, e.g. runner.postScriptGC=false; "
                             "to compare a setting without editing the app (repeatable)")
    parser.add_argument("--artifacts", default=str(REPO / "test-artifacts" / "bench_workshop"),
                        help="a screenshot of each simulated person whose steps failed lands here ('' for none)")
    args = parser.parse_args()
    if any("=" not in option for option in args.streamlit_option):
        parser.error("--streamlit-option takes KEY=VALUE, e.g. runner.postScriptGC=false")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install chromium); this benchmark never downloads one")

    marks: dict = {"began": time.time()}
    if args.artifacts and Path(args.artifacts).is_dir():  # this run's screenshots only
        for old in [*Path(args.artifacts).glob("person-*.png"), Path(args.artifacts) / "server.log"]:
            old.unlink(missing_ok=True)
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="workshop-") as folder:
        home, log_path = Path(folder) / "home", Path(folder) / "server.log"
        home.mkdir()
        server = sampler = None
        stop, results = spawn.Event(), spawn.Queue()
        try:
            server, url, limits = start_server(home, args, log_path)
            print(f"server {url} (pid {server.pid}), data folder {home}, limits {limits}", file=sys.stderr, flush=True)
            sampler = spawn.Process(target=sample, args=(url, str(home), server.pid, os.getpid(), args.sample_s,
                                                         stop, results))
            sampler.start()
            time.sleep(1.0)
            marks["loadavg_before"] = [round(value, 2) for value in os.getloadavg()]
            marks["idle_start"] = time.time()
            time.sleep(args.baseline_s)
            marks["idle_end"] = time.time()
            people = asyncio.run(workshop(url, home, args, marks))
            time.sleep(args.after_close_s)
            marks["after_end"] = time.time()
            marks["loadavg_after"] = [round(value, 2) for value in os.getloadavg()]
            server_end = {"rss_kb": proc_status_kb(server.pid, "VmRSS") or 0,
                          "hwm_kb": proc_status_kb(server.pid, "VmHWM") or 0}
            stop.set()
            sampled = results.get(timeout=30)
            samples, lingering = sampled["rows"], sampled["lingering"]
            sampler.join(timeout=10)
            store = Store(home)
            runs = store.runs()
            metrics = {run.id: {"train_last": max((row["iteration"] for row in store.metrics(run.id, "train")),
                                                  default=0),
                                "test_points": len(store.metrics(run.id, "test"))} for run in runs}
        finally:
            stop.set()
            if sampler is not None:
                sampler.join(timeout=10)
                if sampler.is_alive():
                    sampler.kill()
            marks["leftovers"] = stop_everything(server, home)
        log_text = log_path.read_text(errors="replace")
        if args.artifacts:
            Path(args.artifacts).mkdir(parents=True, exist_ok=True)
            (Path(args.artifacts) / "server.log").write_text(log_text)
        report = build_report(args, limits, people, runs, metrics, samples, lingering, marks, server_end, log_text)
        if args.artifacts:
            print(f"server log and screenshots of people who got stuck: {args.artifacts}", file=sys.stderr)
    print_report(report)


if __name__ == "__main__":
    main()
