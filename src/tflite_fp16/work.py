"""How the work runs: a thread pool for large buffers, and the garbage collector paused.

Shared by the pipeline and the tools beside it; knows nothing of models.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager

__all__ = ["die_with_parent", "gc_paused", "thread_pool"]


@contextmanager
def thread_pool() -> Iterator[Executor]:
    """Threads for large buffers (NumPy releases the GIL); started only when work is submitted."""
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as executor:
        yield executor


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: a model is a tree of up to millions of
    small acyclic objects, and repeated collections over them cost a third of the
    time on models with many tensors. Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> bool:
    """Ask Linux to send this process ``signum`` when its parent dies (``PR_SET_PDEATHSIG``), so
    that a child never outlives a command killed by SIGKILL. False when the parent is gone
    already (it died before the request took effect): the caller should stop."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signum), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own clean-up has to do
        pass
    return os.getppid() == parent
