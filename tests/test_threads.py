"""``_core/threads.py``: asking "is this the main thread?" from another thread never imports
``threading`` there (before 3.13 the first importer of ``threading`` becomes its main thread, and
graceful's watcher then raised ``Signalled`` in itself and died: a Ctrl-C under
``guard(on_signal="raise")`` hung the program)."""

from __future__ import annotations

import subprocess
import sys

CODE = r"""
import _thread, sys
from graceful._core import threads
assert "threading" not in sys.modules, "graceful imported threading"
answers = []
done = _thread.allocate_lock()
done.acquire()

def ask():
    answers.append(threads.is_main_thread())
    done.release()

_thread.start_new_thread(ask, ())
done.acquire(True, 10)
print(answers, "threading" in sys.modules, threads.is_main_thread())
"""


def test_another_thread_asking_never_imports_threading() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    if sys.version_info >= (3, 13) or sys.platform != "linux":
        assert proc.stdout.split()[0] == "[False]"
    else:
        assert proc.stdout.split() == ["[False]", "False", "True"]
