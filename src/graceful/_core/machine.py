"""The shutdown state machine: the one owner of what a shutdown has done and must do next.

Two listeners report each guarded signal here: the Python handler (in the main thread, wherever
that was interrupted) and the watcher thread (which hears the wakeup fd at once, even while the
main thread is stuck in C). Neither decides anything: :meth:`Shutdown.heard` records the delivery
under the lock and returns a :class:`Verdict`; the handler then raises or not, the watcher then
acts (starts the breaks, ends the drain, forces the end). Guards move the machine through its
phases with the other methods; nothing outside this module writes its state.

Phases (``docs/internals.md`` has the diagram)::

    IDLE ──signal──> SIGNALLED ──watcher──> BREAKING ──outermost guard exits──> CLEANING ──> ENDING
      │                 ▲  (drain > 0: DRAINING first, then SIGNALLED)             ▲
      └──program ends normally──────────────────────────────────────────────────────┘
    on_signal="raise": CLEANING ──episode over──> IDLE

In SIGNALLED and BREAKING, ``Signalled`` is due in the main thread: the handler raises it once,
unless the main thread is in graceful's own exit path (it then decides at its end) or an
exception is passing through the interrupted frame (the watcher delivers the signal again in
10 ms). In DRAINING the program runs on; in CLEANING and ENDING a signal is never raised: it is
recorded (the first one starts the deadline) and a repeat may force the end.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import sys
import time

from . import ending as _ending
from . import protect as _protect
from . import signals as _signals
from . import threads as _threads
from . import timeline as _timeline
from .modules import loaded

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

if TYPE_CHECKING:
    import threading

    from .options import Options
    from .registry import Entry

    #: Set as soon as the shutdown proper begins (after the drain), so worker threads can stop.
    shutdown_event: threading.Event
    #: Set at the first signal when a guard drains (``drain=`` seconds): fail readiness probes.
    draining: threading.Event

#: ``shutdown_event`` and ``draining`` are ``threading.Event`` objects, made when first asked for
#: (:func:`__getattr__`): an idle guard does not import ``threading``. Until then the machine
#: keeps their state here, and hands it over as it makes them.
_PUBLIC = ("shutdown_event", "draining")
_flags = {name: False for name in _PUBLIC}
_made: dict[str, threading.Event] = {}
_made_lock = _threads.RLock()


def __getattr__(name: str) -> threading.Event:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import threading

    with _made_lock:
        event = _made.get(name)
        if event is None:
            event = _made[name] = threading.Event()
            if _flags[name]:
                event.set()
            globals()[name] = event  # the next access is a plain module attribute
    return event


def _set_public(name: str, value: bool) -> None:
    """Set or clear ``shutdown_event`` or ``draining``, made or not."""
    with _made_lock:
        _flags[name] = value
        event = _made.get(name)
    if event is not None:
        if value:
            event.set()
        else:
            event.clear()


def _registry() -> Any:
    """The registry, if loaded completely: nothing was registered otherwise (and it must not be
    imported from the watcher thread, or while a signal is handled)."""
    return loaded("graceful._core.registry")


REDELIVER_INTERVAL = 0.01  # seconds between deliveries of a deferred signal
REDELIVER_MAX_INTERVAL = 0.5  # backoff cap while the handler has not run (main stuck in C?)
#: A SIGINT/SIGQUIT read after the first signal's byte, while graceful's handler has not run in
#: the main thread since the first signal (blocked in C, or not scheduled), is judged by the
#: order of the reads alone once it has waited this long for that handler (see ``_settle``).
UNANCHORED_WAIT = 1.0
#: Cleanups wait for the break callbacks at most this share of the deadline (then start while
#: the break thread goes on); without a deadline, at most this share of the default timeout.
BREAK_SHARE = 0.25
BREAK_WAIT_WITHOUT_DEADLINE = 1.25

#: A person at a terminal insisting: these force the end even if not a repeat.
_INSISTENT = frozenset(getattr(_signal, n) for n in ("SIGINT", "SIGQUIT") if hasattr(_signal, n))


class Phase:
    """The phases, in order (plain ints: ``enum`` costs an idle guard its RSS)."""

    IDLE = 0  # no shutdown in progress
    SIGNALLED = 1  # a guarded signal arrived; the watcher has not begun the breaks yet
    DRAINING = 2  # the program runs on for ``drain`` seconds, ``draining`` set
    BREAKING = 3  # ``shutdown_event`` set, break callbacks running, the main thread unwinding
    CLEANING = 4  # cleanups running (after a signal, or at a normal end of the program)
    ENDING = 5  # atexit functions, flushing, then the re-raise or the exit


class Verdict:
    """What one delivery was judged to be (plain ints, as :class:`Phase`)."""

    IGNORED = 0  # not a signal this machine acts on (no guard, or someone replaced our handler)
    FIRST = 1  # started the shutdown
    AGAIN = 2  # a delivery already accounted for (the other listener, or our re-delivery)
    FORCE = 3  # a second signal that ends the process at once
    ABSORBED = 4  # a second signal that is logged and absorbed
    UNSETTLED = 5  # SIGINT/SIGQUIT heard by the handler: judged at the next read of the pipe


HANDLER = 0
WATCHER = 1


class Shutdown:
    """The state of this process's shutdown; every transition takes the lock."""

    def __init__(self) -> None:
        # Reentrant: the main thread's handler takes it, and a second signal can interrupt the
        # main thread while it holds it (even inside that same handler). So a transition may see
        # a nested handler run in the middle of it, in the same thread: transitions tolerate that
        # (``_first`` happens once; the handler raises when ``want_raise()``, whatever its own
        # delivery was judged to be).
        self._lock = _threads.RLock()
        #: Held while the first signal's record is taken and written (announce): a thread that
        #: finds it taken waits for the write, so no cleanup's record comes before it.
        self._announcing = _threads.RLock()
        self._wake: Callable[[], None] = _nothing
        self._handler: Optional[Callable[[int, Any], Any]] = None
        self.options: Optional[Options] = None
        #: The options of the last outermost guard, for the protection of the interpreter's exit.
        self.last_options: Optional[Options] = None
        self.handled: frozenset[int] = frozenset()
        self._not_insisting: dict[int, Callable[[], bool]] = {}
        self._owned: dict[int, Callable[[], bool]] = {}
        self._listeners: list[Callable[[str, dict[str, Any]], object]] = []
        #: Reads of the wakeup pipe begun so far (:meth:`read_begins`): every byte written
        #: before read ``n`` began is in read ``n`` or an earlier one.
        self._reads = 0
        self._new_episode()

    def _new_episode(self) -> None:
        self.phase = Phase.IDLE
        self.signal: Optional[int] = None
        self.started_at: Optional[float] = None
        self.deadline: Optional[float] = None
        #: The deadline fitted inside a budget from above (``_core.budget``), if any.
        self.budget_deadline: Optional[float] = None
        self.drain_until: Optional[float] = None
        # Per listener (HANDLER, WATCHER), how many deliveries of each signal it reported: the
        # listener ahead for a signal heard a new one, the other one hears copies of it.
        self._heard: tuple[dict[int, int], dict[int, int]] = ({}, {})
        #: How many of each signal were sent in this shutdown (new deliveries, not copies).
        self._sent: dict[int, int] = {}
        # Re-deliveries graceful itself sent (never new), not yet heard: by the handler (a
        # count: Python may run one handler call for several, and a copy left expected only
        # makes a later real one a copy for the handler, which the watcher judges), and by the
        # watcher (one byte each: so one at a time, the next only once the watcher heard this
        # one, or its byte is known never to come).
        self._copy_for_handler = 0
        self._copy_for_watcher = False
        #: The handler ran the re-delivered signal: its byte, if the wakeup fd is ours, was
        #: written before, so a read begun after this one has it, or it went elsewhere.
        self._copy_due: Optional[int] = None
        #: SIGINT/SIGQUIT heard during a shutdown, not judged yet (graceful's handler has not
        #: run since the first signal, or it heard them first): [signal, reads begun when
        #: heard, the read that had its byte (None: not yet), when heard].
        self._unsettled: list[list[Any]] = []
        #: Reads numbered above this one began after graceful's handler had run in the main
        #: thread during this shutdown (None: it has not run yet): a signal whose byte one of
        #: them read was sent after the program had begun to act on the first signal. Signals
        #: pending together reach their C handlers one after the other, with no Python code of
        #: the main thread in between, so the handler's run comes after all their bytes.
        self._anchor: Optional[int] = None
        #: Where the reads stood as the handler now running began (handler_starts).
        self._handler_since: Optional[int] = None
        #: Signals the watcher heard while someone else's handler had them (a server that owns
        #: the signals): when that server raises them again (uvicorn replays each one it
        #: captured), graceful's handler hears a signal already sent, never a second one.
        self._foreign: dict[int, int] = {}
        #: The read of the wakeup pipe that had the first signal's byte (None: not yet known).
        self._first_read: Optional[int] = None
        #: The handler judged the first signal when this many reads had begun (None: the
        #: watcher did): if its byte never reaches the pipe, those reads stand for its read.
        self._first_judged_at: Optional[int] = None
        self.raised = False
        self._handler_ran = False
        self._deferred = False
        self._next_redelivery = 0.0
        self._redelivery_interval = REDELIVER_INTERVAL
        self.force: Optional[int] = None
        self.breaks_done = _threads.Event()
        self._queued: list[tuple[str, dict[str, Any]]] = []
        self._breaks_started = False
        self._breaks_started_at: Optional[float] = None
        self._breaks_inline = False
        # (signal, drain, time, fitted budget) to record once the lock is released
        self._announcement: Optional[tuple[int, float, float, Optional[tuple[float, float]]]] = None

    # --- set-up by guards ---------------------------------------------------------------------

    def attach_waker(self, wake: Callable[[], None]) -> None:
        """The watcher's poke: how a transition asks the watcher to look again."""
        self._wake = wake

    def arm(self, options: Options, handler: Callable[[int, Any], Any]) -> None:
        """The outermost guard is active: its options govern the shutdown."""
        with self._lock:
            self._handler = handler
            if self.options is None:
                self.options = options
                self.last_options = options
        _timeline.prepare()
        _prepare_budget_and_receipt(options)

    def set_handled(self, handled: frozenset[int]) -> None:
        with self._lock:
            self.handled = handled

    def disarm(self) -> None:
        """No guard is active any more; a shutdown in progress stays (it ends the process)."""
        with self._lock:
            self.handled = frozenset()
            if self.phase == Phase.IDLE:
                self.options = None

    def add_listener(self, listener: Callable[[str, dict[str, Any]], object]) -> None:
        """Call ``listener(event, facts)`` from the watcher thread as the shutdown goes:
        ``"stopping"`` (the first signal: ``signal``, ``drain``, ``timeout``) and
        ``"drain_end"`` (``timeout``). For integrations (systemd); it must not block."""
        self._listeners.append(listener)

    def _emit(self, event: str, **facts: Any) -> None:
        self._queued.append((event, facts))
        self._wake()

    def _deliver_events(self) -> None:
        while self._queued:
            event, facts = self._queued.pop(0)
            for listener in list(self._listeners):
                try:
                    listener(event, facts)
                except Exception:
                    _timeline.log_exception("graceful: a shutdown listener raised; ignored")

    def not_insisting(self, sig: int, when: Callable[[], bool]) -> None:
        """A repeat of ``sig`` is nobody insisting while ``when()`` is true: it is absorbed.

        For the parent-death signal: the kernel sends PR_SET_PDEATHSIG again each time the
        child is re-parented, once per exiting thread of a multi-threaded parent.
        """
        with self._lock:
            self._not_insisting[sig] = when

    def ours(self, sig: int) -> bool:
        """Graceful's handler is installed for ``sig`` (nobody replaced it inside the block)."""
        owned = self._owned.get(sig)
        if owned is not None:
            return owned()
        return self._handler is not None and bool(_signal.getsignal(sig) is self._handler)

    def own(
        self, sig: int, still_ours: Optional[Callable[[], bool]]
    ) -> Optional[Callable[[], bool]]:
        """A block adapter installed graceful for ``sig`` by other means (an event loop's
        handler, a server's stopper): ``still_ours()`` tells whether it is still installed
        (None: forget it). Returns the one it replaces (to put back)."""
        with self._lock:
            before = self._owned.get(sig)
            if still_ours is None:
                self._owned.pop(sig, None)
            else:
                self._owned[sig] = still_ours
            return before

    # --- deliveries ---------------------------------------------------------------------------

    def handler_starts(self) -> None:
        """graceful's handler begins in the main thread, before it reads the pipe: every signal
        byte written so far is in a read numbered at most one more than those begun now."""
        with self._lock:
            since = self._reads + 1
            self._handler_since = since
            waiting = self._anchor is None and bool(self._unsettled)
            if self.signal is not None and self._anchor is None:
                self._anchor = since
        if waiting:
            self._wake()  # the watcher judges what waited for this run

    def heard(self, sig: int, source: int, batch: Optional[int] = None) -> int:
        """Record one delivery of ``sig`` to ``source`` (HANDLER or WATCHER) and judge it.

        Each signal sent reaches both listeners (the watcher through the wakeup fd, the handler
        when Python runs it), in either order, and Python runs pending handlers by signal
        number, not in the order they came: so deliveries are matched per signal. A delivery is
        new only if its listener is ahead of the other for that signal; a re-delivery graceful
        made, or a replay of a signal heard while a server owned it, is never a new signal.
        ``batch`` numbers the watcher's reads (:meth:`heard_read`): signals pending together
        come out of the kernel lowest number first, whatever order they were sent in, so a
        signal read with the one that started the shutdown is never judged as insisting after
        it. The handler cannot tell what came with what: a SIGINT or SIGQUIT it hears first
        during a shutdown is judged once the watcher has read the pipe (:meth:`_settle`).
        """
        now = time.monotonic()
        self.announce()  # a first signal another thread judged and has not recorded yet
        with self._lock:
            since = self._handler_runs() if source == HANDLER else 0
            if self._redelivered_copy(sig, source):
                return Verdict.AGAIN if self.signal is not None else Verdict.IGNORED
            if self.options is None or sig not in self.handled:
                return Verdict.IGNORED
            if source == WATCHER and not self.ours(sig):
                self._foreign[sig] = self._foreign.get(sig, 0) + 1
                return Verdict.IGNORED  # their handler, their signal (for now)
            mine, other = self._heard[source], self._heard[1 - source]
            mine[sig] = mine.get(sig, 0) + 1
            if mine[sig] <= other.get(sig, 0):
                if source == WATCHER:
                    self._matched(sig, batch)
                return Verdict.AGAIN  # the other listener reported this one already
            replay = self._foreign.get(sig, 0) > 0
            if replay:
                self._foreign[sig] -= 1
            sent = self._sent.get(sig, 0)
            self._sent[sig] = sent + 1
            if self.signal is None and self.phase in (Phase.IDLE, Phase.CLEANING, Phase.ENDING):
                self._first(sig, now)
                self._first_read = batch
                self._first_judged_at = self._reads if batch is None else None
                if source == HANDLER:
                    self._anchor = since
                verdict = Verdict.FIRST
            elif replay:
                return Verdict.AGAIN
            else:
                verdict = self._new_second(sig, source, batch, now, repeat=sent > 0)
        self.announce()
        if source == WATCHER:
            self._report(sig, verdict)
        else:
            self._wake()  # the watcher starts the shutdown, or ends the process, for us
        return verdict

    def _handler_runs(self) -> int:
        """The handler reports a delivery (lock held): it has run since the first signal, if
        there is one. Returns where the reads stood as it began."""
        self._handler_ran = True
        since, self._handler_since = self._handler_since, None
        if since is None:  # a handler that reads no pipe first (a server's, a loop's)
            since = self._reads + 1
        if self._anchor is None and self.signal is not None:
            self._anchor = since
            if self._unsettled:
                self._wake()  # the watcher judges what waited for this run (a poke: no I/O)
        return since

    def _new_second(
        self, sig: int, source: int, batch: Optional[int], now: float, *, repeat: bool
    ) -> int:
        """A new delivery during the shutdown (lock held): SIGINT and SIGQUIT insist, unless
        they came with the first signal: their byte was read before graceful's handler ran."""
        if repeat or sig not in _INSISTENT:
            return self._second(sig, now, repeat=repeat)
        if batch is not None and self._anchor is not None:
            return self._second(sig, now, repeat=batch > self._anchor)
        # Sent with the first signal, or after it? The pipe tells, once the handler has run:
        # its byte is in a read begun before that run, or in a later one (see _settle).
        self._unsettled.append([sig, self._reads, batch, now])
        return Verdict.UNSETTLED

    def _redelivered_copy(self, sig: int, source: int) -> bool:
        """This delivery is one graceful made itself (:meth:`_redeliver`): consume it."""
        if sig != self.signal:
            return False
        if source == HANDLER:
            if not self._copy_for_handler:
                return False
            self._copy_for_handler -= 1
            if self._copy_for_watcher:
                self._copy_due = self._reads  # the next read has its byte, or it never comes
            return True
        if not self._copy_for_watcher:
            return False
        self._copy_for_watcher = False
        self._copy_due = None
        return True

    # --- reads of the wakeup pipe (watcher.py) --------------------------------------------------

    def read_begins(self) -> int:
        """A reader of the wakeup pipe is about to read it (under the watcher's read lock, so
        reads are numbered in the order they happen): the read's number, for :meth:`heard_read`."""
        self._reads += 1
        return self._reads

    def heard_read(self, signals: bytes, read: int) -> None:
        """Report the signal bytes of one read of the wakeup pipe, in order, then judge what
        waited for this read. The read that has the first signal's byte (whoever judged that
        signal first) is the first signal's read: what was read with it or before came with
        it."""
        with self._lock:
            first = self.signal
            if (
                first is not None
                and self._first_read is None
                and first in signals
                and not self._heard[WATCHER].get(first)
            ):
                self._first_read = read
        for sig in signals:
            self.heard(sig, WATCHER, read)
        self._settle(read)

    def _matched(self, sig: int, read: Optional[int]) -> None:
        """The watcher read the byte of a signal the handler reported first (lock held)."""
        for entry in self._unsettled:
            if entry[0] == sig and entry[2] is None:
                entry[2] = read
                return

    def _settle(self, read: Optional[int]) -> None:
        """After a read (None: the watcher's tick), judge the SIGINT/SIGQUIT that waited for
        graceful's handler, or for their own byte: they insist if their byte was read after the
        handler had run (``_anchor``). A byte that a read begun after its signal was heard did
        not have never comes (the wakeup fd was not ours): the handler's word is then all there
        is (the signal insists). If the handler has not run after ``UNANCHORED_WAIT`` (the main
        thread blocked in C, or not scheduled), the reads alone judge: a byte read after the
        first signal's insists (a signal pending with the first one whose C handler ran just
        after the watcher read the first byte is then misjudged: the main thread taken off the
        CPU between two C handlers for that long). Forget a re-delivery's byte that such a read
        did not have either."""
        now = time.monotonic()
        settled = []
        with self._lock:
            if read is not None and self._copy_due is not None and read > self._copy_due:
                self._copy_for_watcher = False  # its byte went elsewhere (wakeup fd replaced)
                self._copy_due = None
            judged_at = self._first_judged_at
            if (
                self._first_read is None
                and judged_at is not None
                and read is not None
                and read > judged_at
            ):
                self._first_read = judged_at
            anchor, first_read = self._anchor, self._first_read
            waiting = []
            for entry in self._unsettled:
                sig, since, batch, heard_at = entry
                if batch is None and (read is None or since >= read):
                    waiting.append(entry)  # its byte may still come
                    continue
                if anchor is not None:
                    after = anchor
                elif first_read is not None and now - heard_at >= UNANCHORED_WAIT:
                    after = first_read
                else:
                    waiting.append(entry)
                    continue
                if self.options is None or self.signal is None:
                    continue
                insisting = batch is None or batch > after
                settled.append((sig, self._second(sig, now, repeat=insisting)))
            self._unsettled = waiting
        for sig, verdict in settled:
            self._report(sig, verdict)
        if settled:
            self._wake()  # the watcher ends the drain, or the process, for us

    def _second(self, sig: int, now: float, *, repeat: bool) -> int:
        """A new signal during the shutdown: it ends the drain, forces the end, or is absorbed."""
        assert self.options is not None
        duplicate = self._not_insisting.get(sig)
        if repeat and duplicate is not None and duplicate():
            repeat = False
        if self.phase == Phase.DRAINING:
            self.drain_until = now  # a second signal ends the drain early
            return Verdict.ABSORBED
        if repeat and self.options.on_second_signal == "force":
            if self.force is None:
                self.force = sig
            return Verdict.FORCE
        return Verdict.ABSORBED

    def _first(self, sig: int, now: float) -> None:
        assert self.options is not None
        if self.signal is not None:
            return  # a handler run nested in this very call (main thread) got here first
        self.signal = sig
        self.started_at = now
        self._next_redelivery = now + REDELIVER_INTERVAL
        _timeline.start(now)
        budget = loaded(_BUDGET)  # loaded at the guard's entry if there is one
        fitted = None if budget is None else budget.fit(now, self.options)
        drain = self.options.drain if fitted is None else fitted[0]
        drain = drain if self.phase < Phase.CLEANING else 0.0
        timeout = self.options.timeout
        if fitted is not None:
            self.budget_deadline = fitted[1]
        ends_by = self.budget_deadline
        if ends_by is None and timeout is not None:
            ends_by = now + drain + timeout
        self._emit("stopping", signal=sig, drain=drain, timeout=timeout, ends_by=ends_by)
        # recorded once the lock is released: see announce
        self._announcement = (sig, drain, now, fitted if budget is not None else None)
        if self.phase in (Phase.CLEANING, Phase.ENDING):
            self._arm_deadline(now)  # the program was ending anyway: no drain, no Signalled
        elif drain > 0:
            self.phase = Phase.DRAINING
            self.drain_until = now + drain
            _set_public("draining", True)
        else:
            self.phase = Phase.SIGNALLED
            self._arm_deadline(now)

    def announce(self) -> None:
        """The first signal, on the timeline now, whoever heard it (the file line is written at
        once; the log line waits for a thread that may log): the process may be gone before the
        watcher looks. Never with the lock held: no I/O of graceful's happens under it. Taken
        under the lock, so one thread records it; each later delivery and the cleanups' start
        record it first if the thread that judged the signal has not yet (the timeline's order
        is the events' order: the signal before any cleanup). Taking and writing it happen
        under ``_announcing`` (never the machine's lock): a thread that comes while another
        writes it waits for that write (a non-blocking one) before its own records."""
        with self._announcing:
            with self._lock:
                announcement, self._announcement = self._announcement, None
            if announcement is None:
                return
            sig, drain, now, fitted = announcement
            name = _signals.name(sig)
            _timeline.record("signal", f"{name} received", defer=True, signal=name, signum=sig)
            budget = loaded(_BUDGET)
            if budget is not None and fitted is not None:
                budget.record(now, fitted)
            if drain:
                _timeline.record(
                    "drain_start", f"draining for {drain:g} s", defer=True, drain=drain
                )

    def _arm_deadline(self, now: float) -> None:
        assert self.options is not None
        timeout = self.options.timeout
        self.deadline = None if timeout is None else now + timeout
        if self.budget_deadline is not None:
            self.deadline = self.budget_deadline

    def _report(self, sig: int, verdict: int) -> None:
        """What the watcher heard, on the timeline (queued: the watcher never blocks on logs)."""
        name = _signals.name(sig)
        if verdict in (Verdict.FORCE, Verdict.ABSORBED):
            action = "forced" if verdict == Verdict.FORCE else "absorbed"
            what = {
                "forced": "ending now, skipping what is left",
                "absorbed": "absorbed (a repeat, SIGINT or SIGQUIT would force the end)",
            }[action]
            if self.phase == Phase.DRAINING or (verdict == Verdict.ABSORBED and self.drain_until):
                what = "ends the drain early"
            _timeline.record(
                "second_signal",
                f"second signal {name} during the shutdown: {what}",
                defer=True,
                signal=name,
                signum=sig,
                action=action,
            )

    # --- the main thread's Signalled -------------------------------------------------------

    def want_raise(self) -> bool:
        """``Signalled`` is due in the main thread and has not been raised yet."""
        return self.phase in (Phase.SIGNALLED, Phase.BREAKING) and not self.raised

    def mark_raised(self) -> None:
        with self._lock:
            self.raised = True
            self._deferred = False

    def defer(self) -> None:
        """``Signalled`` cannot be raised right now: have the watcher deliver the signal to the
        main thread again in a moment, and again, until it can be."""
        with self._lock:
            self._deferred = True
            self._next_redelivery = time.monotonic() + REDELIVER_INTERVAL
        self._wake()

    # --- the watcher's work --------------------------------------------------------------------

    def tick(self, now: float) -> Optional[float]:
        """Do what is due (force, end the drain, begin the breaks, the deadline, a re-delivery);
        return the seconds until something will be due again (None: nothing pending)."""
        _timeline.hand_off()  # records the main thread could not log: logged now, elsewhere
        self._deliver_events()
        force = self.force
        if force is not None:
            self._die(force, "second {name} during the shutdown: ending now, skipping the rest")
        if self.phase == Phase.DRAINING and self.drain_until is not None:
            if now < self.drain_until:
                return self._sooner(self.drain_until - now, self._redelivery_wait(now))
            self.end_drain(now)
        if self.signal is not None and not self._breaks_started and self.phase != Phase.DRAINING:
            self.begin_breaks()
        if self.deadline is not None and now >= self.deadline:
            self._deadline_passed()
        redelivery = self._redelivery_wait(now)
        if redelivery is not None and redelivery <= 0:
            self._redeliver(now)
            redelivery = self._redelivery_wait(now)
        return self._sooner(
            None if self.deadline is None else self.deadline - now,
            self._sooner(redelivery, self._unsettled_wait(now)),
        )

    def _unsettled_wait(self, now: float) -> Optional[float]:
        """Judge what waited long enough for the handler; the seconds until the next one has
        (None: nothing waits for the handler; what waits for its byte is judged at a read)."""
        with self._lock:
            due = [entry[3] + UNANCHORED_WAIT for entry in self._unsettled]
        if any(at <= now for at in due):
            self._settle(None)
        later = [at - now for at in due if at > now]
        return min(later) if later else None

    @staticmethod
    def _sooner(a: Optional[float], b: Optional[float]) -> Optional[float]:
        if a is None:
            return b
        return a if b is None else min(a, b)

    def end_drain(self, now: Optional[float] = None) -> None:
        """The drain is over (its time passed, a second signal, or ``graceful.end_drain()``):
        the shutdown proper begins, and with it the deadline and ``Signalled``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.phase != Phase.DRAINING:
                return
            self.phase = Phase.SIGNALLED
            self.drain_until = None
            self._arm_deadline(now)
            self._deferred = True  # the handler ran long ago: deliver the signal again
            self._next_redelivery = now
        _timeline.record("drain_end", "drain over: the shutdown begins", defer=True)
        timeout = self.options.timeout if self.options else None
        self._emit("drain_end", timeout=timeout, ends_by=self.deadline)

    def request_end_drain(self) -> bool:
        """``graceful.end_drain()``: True if this call ends a drain in progress (once per drain:
        False once it is ending already, by a call, a second signal or its time)."""
        now = time.monotonic()
        with self._lock:
            if self.phase != Phase.DRAINING or self.drain_until is None or self.drain_until <= now:
                return False
            self.drain_until = now
        self._wake()
        return True

    def begin_breaks(self, *, external: bool = False) -> None:
        """Once per shutdown: set ``shutdown_event`` and run the break callbacks in a thread."""
        with self._lock:
            if self._breaks_started or (self.signal is None and not external):
                return
            if self.phase == Phase.DRAINING and not external:
                return  # the watcher looked before the first signal set DRAINING: not yet
            self._breaks_started = True
            self._breaks_started_at = time.monotonic()
            if self.phase in (Phase.SIGNALLED, Phase.DRAINING):
                self.phase = Phase.BREAKING
            name = "shutdown" if self.signal is None else _signals.name(self.signal)
            done = self.breaks_done
        _set_public("shutdown_event", True)
        registry = _registry()
        entries = [] if registry is None else registry.breaks.pending()
        if not entries:
            done.set()
            return
        try:
            _threads.start(_run_breaks, f"graceful-break-{name}", entries, done)
        except RuntimeError:  # no thread can start (limits, interpreter shutdown)
            with self._lock:
                self._breaks_inline = True
            _timeline.record(
                "breaks_done",
                "no thread could start for the break callbacks: the main thread runs them",
                defer=True,
                inline=True,
            )

    def breaks_pending_inline(self) -> bool:
        """No thread could start for the break callbacks: the caller must run them."""
        return self._breaks_inline

    def breaks_until(self) -> tuple[float, float]:
        """When the wait for the break callbacks ends (``time.monotonic()``), and their share of
        the deadline: it counts from when they began (after the drain, not the first signal)."""
        options = self.options
        timeout = options.timeout if options is not None else None
        share = BREAK_WAIT_WITHOUT_DEADLINE if timeout is None else BREAK_SHARE * timeout
        started = self._breaks_started_at
        if started is None:
            started = time.monotonic()
        return started + share, share

    def wait_for_breaks(self) -> None:
        """Break first, then clean up: wait for the break callbacks, but only for their share of
        the deadline; then the cleanups start while the break thread goes on."""
        if not self._breaks_started:
            self.begin_breaks()  # the watcher never heard it (the wakeup fd was replaced)
        if self._breaks_inline:
            self._breaks_inline = False
            registry = _registry()
            _run_breaks([] if registry is None else registry.breaks.pending(), self.breaks_done)
            return
        until, share = self.breaks_until()
        if not self.breaks_done.wait(max(0.0, until - time.monotonic())):
            _timeline.log_warning(
                "graceful: break callbacks still running after %.3g s (their share of the "
                "deadline); the cleanups start now while they go on",
                share,
            )

    def _redelivery_wait(self, now: float) -> Optional[float]:
        if self.signal is None or not self.want_raise():
            return None
        if not self._deferred and self._handler_ran:
            return None
        return self._next_redelivery - now

    def _redeliver(self, now: float) -> None:
        """Deliver the signal to the main thread again (thread-directed, so a blocking call
        there is interrupted); both listeners expect it, so it never counts as a second one."""
        main = _threads.main_ident()
        with self._lock:
            sig = self.signal
            if sig is None or main is None or not self.ours(sig):
                self._deferred = False
                return
            frame = sys._current_frames().get(main)
            if (frame is not None and _protect.protection(frame)) or self._copy_for_watcher:
                # Still in graceful's exit path or a critical section, or the watcher has not
                # heard the last re-delivery yet (another one now could merge with it into one
                # byte): look again shortly.
                self._next_redelivery = now + REDELIVER_INTERVAL
                return
            if self._deferred:
                self._next_redelivery = now + REDELIVER_INTERVAL
            else:
                self._redelivery_interval = min(
                    self._redelivery_interval * 2, REDELIVER_MAX_INTERVAL
                )
                self._next_redelivery = now + self._redelivery_interval
            self._copy_for_handler += 1
            self._copy_for_watcher = True
            self._copy_due = None
        if hasattr(_signal, "pthread_kill"):
            _signal.pthread_kill(main, sig)

    # --- the end ------------------------------------------------------------------------------

    def begin_external(self, options: Options) -> None:
        """A framework's shutdown hook starts the shutdown (``graceful.shutdown()``): no signal
        of ours, but the break callbacks, the deadline and the cleanups all the same."""
        _prepare_budget_and_receipt(options)  # a server's hook: no guard may have been entered
        now = time.monotonic()
        budget = loaded(_BUDGET)
        with self._lock:
            if self.options is None:
                self.options = options
            if self.started_at is None:
                self.started_at = now
                _timeline.start(now)
                timeout = options.timeout
                self.deadline = None if timeout is None else now + timeout
                fitted = None if budget is None else budget.fit(now, options)
                if fitted is not None:  # a budget from above, and timeout left at its default
                    self.deadline = self.budget_deadline = fitted[1]
        _timeline.record("external", "shutdown requested by the program (graceful.shutdown())")
        self.begin_breaks(external=True)
        self._wake()

    def end_external(self) -> None:
        """``graceful.shutdown()`` has done its work: its deadline is disarmed (the framework
        that called it ends the process its own way, in its own time). A signal's deadline
        stays."""
        with self._lock:
            if self.signal is None:
                self.deadline = None
        self._wake()

    def enter_cleaning(self) -> None:
        """Cleanups begin: after a signal, or at a normal end (a signal now starts the deadline
        and ends the process after the remaining cleanups, but is never raised into them)."""
        self.announce()  # the signal's record before the first cleanup's
        with self._lock:
            if self.phase < Phase.CLEANING:
                if self.signal is None:
                    _timeline.start(time.monotonic())
                self.phase = Phase.CLEANING
        # The program is ending, however (a return, an exception, a signal): threads that loop
        # until shutdown_event is set stop now, before cleanups that wait for them.
        _set_public("shutdown_event", True)

    def enter_ending(self) -> None:
        with self._lock:
            self.phase = Phase.ENDING

    def end_episode(self, *, program_ending: bool = False) -> None:
        """The shutdown is over and the process goes on (``on_signal="raise"``), or the program's
        cleanups are done and it ends normally (``program_ending``: ``shutdown_event`` stays
        set for the threads Python joins next)."""
        with self._lock:
            self._new_episode()
        if not program_ending:
            _set_public("shutdown_event", False)
        _set_public("draining", False)

    def _deadline_passed(self) -> None:
        registry = _registry()
        running = None if registry is None else registry.current()
        timeout = self.options.timeout if self.options is not None else None
        if self.budget_deadline is not None and self.started_at is not None:
            timeout = self.budget_deadline - self.started_at  # fitted to the budget from above
        sig = self.signal or _signal.SIGTERM
        if running is not None:
            where = f"cleanup {running.describe()} was still running"
        else:
            where = f"the main thread was at {_ending.main_thread_location()}"
        after = "{name}" if self.signal is not None else "graceful.shutdown()"
        self._die(
            sig,
            f"shutdown deadline of {timeout:g} s passed after {after}; {where}",
            deadline=True,
        )

    def _die(self, sig: int, reason: str, *, deadline: bool = False) -> None:
        options = self.options
        status = options.exit_status(sig) if options and options.on_signal == "exit" else None
        _ending.die_now(
            sig,
            reason.format(name=_signals.name(sig)),
            exit_status=status if deadline else None,
            stacks=deadline,
            how="deadline" if deadline else "forced",
        )

    def after_fork_in_child(self) -> None:
        """A forked child starts with no shutdown in progress and no guard of its own."""
        self._lock = _threads.RLock()
        self._announcing = _threads.RLock()
        self._wake = _nothing
        self._handler = None
        self.options = None
        self.handled = frozenset()
        self._not_insisting = {}
        self._owned = {}
        self._listeners = [listener for listener in self._listeners if _survives_fork(listener)]
        self._reads = 0
        self._new_episode()
        global _made_lock
        _made_lock = _threads.RLock()
        for name in _PUBLIC:
            _flags[name] = False
            event = _made.get(name)
            if event is None:
                continue
            reinit = getattr(event, "_at_fork_reinit", None)
            if reinit is not None:
                reinit()  # its lock may have been held by a thread that does not exist here
            event.clear()


def _nothing() -> None:
    pass


#: Loaded at a guard's entry only where ``GRACEFUL_DEADLINE`` is set: an idle guard pays nothing.
_BUDGET = "graceful._core.budget"


def _prepare_budget_and_receipt(options: Options) -> None:
    """At a guard's entry (main thread, never in a handler): load and prepare the stop budget
    (``GRACEFUL_DEADLINE``) and the receipt (``GRACEFUL_REPORT``) if the environment asks."""
    import os

    if os.environ.get("GRACEFUL_DEADLINE"):
        from . import budget

        budget.prepare(options)
    if os.environ.get("GRACEFUL_REPORT"):
        from . import receipt

        receipt.prepare()


def _survives_fork(listener: object) -> bool:
    """Listeners are module-level functions of graceful's integrations: they stay in a child."""
    return getattr(listener, "__module__", "").startswith("graceful.")


def _run_breaks(entries: list[Entry], done: _threads.Event) -> None:
    try:
        for entry in entries:
            _registry().run_logged(entry, "break callback", timed=False)
    finally:
        done.set()
        _timeline.record("breaks_done", f"break callbacks done ({len(entries)})")


#: This process's shutdown.
machine = Shutdown()


def after_fork_in_child() -> None:
    """The fork step (``forking.py``): a forked child starts with no shutdown of its own."""
    machine.after_fork_in_child()


def end_drain() -> bool:
    """End the drain now (nothing is in flight any more): the shutdown proper begins.

    Returns False, doing nothing, when no drain is in progress. Safe from any thread.
    """
    return machine.request_end_drain()
