"""Bad input: each mistake raises a precise exception, at the call, saying what to do instead."""

from __future__ import annotations

import signal
import threading
import types
from collections.abc import Iterator

import pytest

import graceful
from helpers import run


@pytest.mark.parametrize("sig", ["KILL", "SIGSTOP", signal.SIGKILL, 19])
def test_uncatchable_signals(sig: object) -> None:
    with pytest.raises(ValueError, match=r"cannot be caught.*graceful signals"):
        graceful.guard(sig)  # type: ignore[arg-type]


@pytest.mark.parametrize("sig", ["SEGV", "bus", signal.SIGFPE, "SIGILL"])
def test_fault_signals_point_to_faulthandler(sig: object) -> None:
    with pytest.raises(ValueError, match="faulthandler"):
        graceful.guard(sig)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sig", "exc", "match"),
    [
        ("TREM", ValueError, "unknown signal name 'TREM'.*'TERM'"),
        ("SIG_DFL", ValueError, "unknown signal name"),
        (0, ValueError, "signal 0 only probes"),
        (999, ValueError, "999 is not a signal on this platform"),
        (1.0, TypeError, "signal.Signals, an int or a name"),
        (True, TypeError, "signal.Signals, an int or a name"),
        (None, TypeError, "signal.Signals, an int or a name"),
    ],
)
def test_unknown_signals(sig: object, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        graceful.guard(sig)  # type: ignore[arg-type]


def test_names_any_case_with_or_without_sig() -> None:
    assert graceful.guard("term", "SIGTERM", " Hup ", 15, signal.SIGUSR1).signals == (
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGUSR1,
    )
    assert graceful.guard().signals == (
        signal.SIGHUP,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGTERM,
    )


@pytest.mark.parametrize("func", [None, 3, "conn.close"])
def test_non_callables_are_refused_at_registration(func: object) -> None:
    for register in (graceful.register, graceful.register_break, graceful.guard().register):
        with pytest.raises(TypeError, match="expects a callable"):
            register(func)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("timeout", "exc"),
    [
        (-1, ValueError),
        (-0.001, ValueError),
        (float("nan"), ValueError),
        ("5", TypeError),
        (True, TypeError),
    ],
)
def test_bad_timeouts(timeout: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="timeout"):
        graceful.guard(timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(exc, match="timeout"):
        graceful.main(timeout=timeout)  # type: ignore[call-overload]


def test_zero_and_none_timeouts_are_fine() -> None:
    assert graceful.guard(timeout=0).timeout == 0
    assert graceful.guard(timeout=None).timeout is None


def test_bad_modes_and_exit_codes() -> None:
    with pytest.raises(ValueError, match="on_signal must be one of"):
        graceful.guard(on_signal="die")
    with pytest.raises(ValueError, match="on_second_signal must be one of"):
        graceful.guard(on_second_signal="twice")
    with pytest.raises(ValueError, match="only with on_signal='exit'"):
        graceful.guard(exit_code=3)
    with pytest.raises(ValueError, match="between 0 and 255"):
        graceful.guard(on_signal="exit", exit_code=256)
    with pytest.raises(TypeError, match="exit_code must be an int"):
        graceful.guard(on_signal="exit", exit_code="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword"):
        graceful.main(signal="TERM")  # type: ignore[call-overload]


def test_guard_outside_the_main_thread() -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with graceful.guard():
                pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "main thread" in str(errors[0])
    assert "shutdown_event" in str(errors[0])


def test_a_guard_cannot_be_entered_twice() -> None:
    g = graceful.guard()
    with g, pytest.raises(RuntimeError, match="already active"), g:
        pass
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_all_matches_exports() -> None:
    # Subpackages are not exports: graceful.testing is an attribute once imported (pytest's
    # plugin loader imports it whenever graceful is installed).
    public = {
        n
        for n in dir(graceful)
        if not n.startswith("_") and not isinstance(getattr(graceful, n), types.ModuleType)
    } | {"__version__"}
    assert set(graceful.__all__) == public
    for name in graceful.__all__:
        assert getattr(graceful, name) is not None


def test_signalled_pickles_and_is_a_base_exception() -> None:
    import pickle

    exc = pickle.loads(pickle.dumps(graceful.Signalled(signal.SIGTERM)))
    assert isinstance(exc, graceful.Signalled)
    assert exc.signal is signal.SIGTERM
    assert not issubclass(graceful.Signalled, Exception)
    assert str(exc) == "received SIGTERM"


# --- issue 10, item 3: bad input that used to get through ---------------------------------------


@pytest.mark.parametrize("timeout", [float("inf"), 1e30, -float("inf")])
def test_timeouts_no_clock_can_wait_are_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match=r"graceful\.guard\(\): timeout.*(None for no deadline)"):
        graceful.guard(timeout=timeout)
    with pytest.raises(ValueError, match=r"@graceful\.main: timeout"):
        graceful.main(timeout=timeout)
    with pytest.raises(ValueError, match=r"graceful\.guard\(\): drain"):
        graceful.guard(drain=timeout)


@pytest.mark.parametrize("name", ["CHLD", "WINCH", "CONT", "TSTP", "TTIN", "TTOU", "URG"])
def test_signals_that_do_not_end_a_process_are_refused_saying_why(name: str) -> None:
    with pytest.raises(ValueError, match=rf"graceful\.guard\(\): SIG{name} does not end a process"):
        graceful.guard("TERM", name)
    with pytest.raises(ValueError, match=rf"@graceful\.main: SIG{name} does not end a process"):
        graceful.main(signals=("TERM", name))


def test_realtime_signals_by_number_and_by_name() -> None:
    rtmin = signal.SIGRTMIN
    g = graceful.guard(rtmin + 1, "RTMIN+2", "sigrtmax-1", signal.SIGRTMAX)
    assert g.signals == (rtmin + 1, rtmin + 2, signal.SIGRTMAX - 1, signal.SIGRTMAX)
    with pytest.raises(ValueError, match="unknown signal name 'RTMIN\\+x'"):
        graceful.guard("RTMIN+x")


def test_a_realtime_signal_runs_the_cleanups_and_is_reraised() -> None:
    code = """
    import time, graceful
    graceful.register(print, "cleanup")
    with graceful.guard("RTMIN+3") as g:
        print("ready", flush=True)
        time.sleep(60)
    """
    child = run(code, signal.SIGRTMIN + 3)
    assert child.proc.returncode == -(signal.SIGRTMIN + 3), child.stderr
    assert child.lines == ["ready", "cleanup"]


def test_one_signal_name_is_one_signal_not_its_letters() -> None:
    @graceful.main(signals="TERM")
    def program() -> int:
        return 0

    assert graceful.guard("TERM").signals == (signal.SIGTERM,)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_flags_must_be_true_or_false(value: object) -> None:
    with pytest.raises(TypeError, match=r"graceful\.guard\(\): override_ignored must be True"):
        graceful.guard(override_ignored=value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"@graceful\.main: override_ignored must be True"):
        graceful.main(override_ignored=value)  # type: ignore[call-overload]


def test_main_refuses_a_generator_function_at_decoration() -> None:
    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match=r"generator function .*gen.*decorate a plain function"):
        graceful.main(gen)  # type: ignore[arg-type]


def test_register_refuses_a_coroutine_object_saying_what_to_pass() -> None:
    async def close() -> None:
        pass

    coro = close()
    try:
        with pytest.raises(TypeError, match=r"coroutine object .*pass the coroutine function"):
            graceful.register(coro)  # type: ignore[arg-type]
    finally:
        coro.close()
