"""Decoding under a deadline, and what decoding a video can fail with: shared by the catalog's
probe and the clip path's decode.

A decode that takes longer than its bound raises `DecodeTimeout`, a DecodeError the pipeline
counts and replaces, instead of stalling the job: decord can block forever inside FFmpeg (decord
issue 373; a file that never delivers its bytes does the same). The decode runs in a helper thread
(decord calls release the GIL), which is abandoned when it overruns; the Ray Data tasks that
decode are recycled every few hundred calls (`clips.pipeline.TASK_CALLS`), so an abandoned thread
or decord's slow memory growth (issues 157, 208) never outlives its process for long.
A forked child (a torch DataLoader worker) starts with a watchdog of its own: the parent's decode
thread is not copied by fork, and a decode queued for it would wait out its whole bound.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading


class DecodeError(Exception):
    """A video that cannot be read or decoded; the pipeline skips it and counts it."""


class DecodeTimeout(DecodeError):
    """A decode that ran past its bound (its thread is abandoned, the video skipped)."""


class _Watchdog:
    """Runs decodes in one helper thread per process and gives up on one that overruns."""

    def __init__(self):
        self.lock = threading.Lock()
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fame-ray-decode")
        self.abandoned = 0

    def run(self, fn, timeout_s: float, what: str):
        with self.lock:
            executor = self.executor
        future = executor.submit(fn)
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            with self.lock:
                # The thread is stuck inside the decoder: later decodes get a fresh one.
                if self.executor is executor:
                    self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fame-ray-decode")
                    executor.shutdown(wait=False, cancel_futures=True)
                self.abandoned += 1
            raise DecodeTimeout(
                f"{what}: decoding took longer than {timeout_s:g}s (skipped; raise data.decode_timeout_s if "
                "the storage is slow)"
            ) from None


_WATCHDOG = _Watchdog()


def _fresh_watchdog() -> None:
    """In a forked child: a watchdog of its own (the parent's thread did not come along)."""
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_fresh_watchdog)


def with_deadline(fn, timeout_s: float, what: str):
    """fn() in the decode thread; DecodeTimeout when it takes longer than `timeout_s`."""
    return _WATCHDOG.run(fn, timeout_s, what)


def abandoned_decodes() -> int:
    """Decodes of this process that overran their bound (their threads are still blocked)."""
    return _WATCHDOG.abandoned
