"""``cnnx serve --workers N``: N server processes answering on one listening socket.

A server process runs one event loop, and Python runs one of its threads at a time, so
one process leaves the second core of a small box mostly idle under load. With more
workers this process (the supervisor) binds the socket, starts the workers and then only
watches them:

- each worker is spawned (a fresh interpreter: nothing of this process is forked into it),
  loads its own models and serves the shared socket; the kernel hands each new connection
  to one of them. The address is printed once every worker is ready; a model that does not
  load is reported as the one-line error a single server gives;
- SIGTERM or SIGINT is passed on as SIGTERM: every worker finishes its requests in flight
  (``--shutdown-timeout``) and the command exits 0 once all have; before every worker is ready,
  it stops the start, the workers with it;
- SIGHUP is passed on: every worker reloads its models;
- a reload through the route (``POST /v2/repository/models/NAME/load``) reaches one
  worker; it tells the supervisor, which has every other worker reload NAME too;
- a worker that dies is started again (at most once per ``RESTART_EVERY`` seconds);
- ``/metrics`` adds up every worker's counts (prometheus_client's multiprocess mode, its
  files in a private temporary folder removed on exit).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from cnnx.core import errors
from cnnx.core.errors import CnnxError
from cnnx.serve.config import ServeConfig
from cnnx.serve.metrics import SHARED_ENV

log = logging.getLogger("cnnx.serve")
READY_TIMEOUT = 300.0  # seconds every worker gets to load its models and listen
RESTART_EVERY = 2.0  # seconds: a worker that keeps dying is started again no faster than this


def _worker(config: ServeConfig, sock: Any, index: int, inbox: Any, outbox: Any, ready: Any) -> None:
    """One worker process: build the app, report ready (or the error), serve until SIGTERM."""
    from cnnx.serve.app import build_app
    from cnnx.serve.server import run_app

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the app's own handler is in place
    try:
        app = build_app(config, announce=lambda name: outbox.put((index, name)))
    except CnnxError as exc:
        ready.put((index, type(exc).__name__, exc.message, exc.hint))
        return
    service = app.state.service

    def started(url: str) -> None:  # called on the event loop, once it listens
        loop = asyncio.get_running_loop()
        threading.Thread(target=_listen, args=(inbox, loop, service), name="cnnx-reloads", daemon=True).start()
        ready.put((index, None, url, None))

    run_app(app, config, sock, started)


def _listen(inbox: Any, loop: asyncio.AbstractEventLoop, service: Any) -> None:
    """In a worker: reload each model name another worker reloaded through the route."""
    while (name := inbox.get()) is not None:
        asyncio.run_coroutine_threadsafe(service.reload_logged(name), loop)


class Supervisor:
    """The workers of one ``cnnx serve --workers N`` and what this process does for them."""

    def __init__(self, config: ServeConfig, sock: Any) -> None:
        import multiprocessing

        self.config, self.sock = config, sock
        self.ctx = multiprocessing.get_context("spawn")
        self.ready, self.outbox = self.ctx.Queue(), self.ctx.Queue()
        self.inboxes = [self.ctx.Queue() for _ in range(config.workers)]
        self.procs: list[Any] = [None] * config.workers
        self.started_at = [0.0] * config.workers
        self.stopping = threading.Event()

    def start(self, i: int) -> None:
        args = (self.config, self.sock, i, self.inboxes[i], self.outbox, self.ready)
        proc = self.ctx.Process(target=_worker, args=args, name=f"cnnx-serve-{i}", daemon=False)
        proc.start()
        self.procs[i], self.started_at[i] = proc, time.monotonic()

    def wait_ready(self) -> None:
        """Until every worker listens; raises the first worker's load error (the others are stopped)."""
        waiting = set(range(len(self.procs)))
        deadline = time.monotonic() + READY_TIMEOUT
        while waiting:
            try:
                i, kind, message, hint = self.ready.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                dead = [i for i in waiting if not self.procs[i].is_alive()]
                if dead or time.monotonic() > deadline:
                    which = min(dead) if dead else min(waiting)
                    raise CnnxError(f"server worker {which} did not start", "its error is in the log above") from None
                continue
            if kind is not None:  # the error the worker met, as its own class
                cls = getattr(errors, kind, CnnxError)
                raise (cls if isinstance(cls, type) and issubclass(cls, CnnxError) else CnnxError)(message, hint)
            waiting.discard(i)

    def forward(self) -> None:
        """(thread) A reload one worker did through the route, to every other worker."""
        while (item := self.outbox.get()) is not None:
            sender, name = item
            for j, inbox in enumerate(self.inboxes):
                if j != sender:
                    inbox.put(name)

    def signal_all(self, sig: int) -> None:
        for proc in self.procs:
            if proc is not None and proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, sig)

    def watch(self) -> None:
        """Until SIGTERM/SIGINT: start again any worker that dies; log a restart's load error."""
        from prometheus_client import multiprocess

        while not self.stopping.is_set():
            wait([p.sentinel for p in self.procs if p is not None], timeout=0.5)
            self._log_restarts()
            for i, proc in enumerate(self.procs):
                if self.stopping.is_set() or proc.is_alive():
                    continue
                if time.monotonic() - self.started_at[i] < RESTART_EVERY:
                    continue
                multiprocess.mark_process_dead(proc.pid)
                why = f"exited with {proc.exitcode}"
                log.warning("cnnx serve: worker %d (pid %d) %s; starting it again", i, proc.pid, why)
                self.start(i)

    def _log_restarts(self) -> None:
        while not self.ready.empty():
            i, kind, message, hint = self.ready.get()
            if kind is not None:
                log.warning("cnnx serve: worker %d did not start again: %s", i, message)

    def stop(self) -> None:
        """SIGTERM every worker and wait for them (their requests in flight finish); kill what stays."""
        self.stopping.set()
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_timeout + 10
        for proc in self.procs:
            if proc is not None:
                proc.join(max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join()
        self.outbox.put(None)
        for inbox in self.inboxes:
            inbox.put(None)


class _Stopped(Exception):
    """SIGTERM or SIGINT before every worker was ready."""


def _stop_starting(signum: int, frame: Any) -> None:
    raise _Stopped  # out of the wait for the workers (a blocking wait returns to run a handler)


def supervise(config: ServeConfig, started: Callable[[str], None] | None = None) -> None:
    """Serve with ``config.workers`` processes until SIGTERM or SIGINT (see the module's notes)."""
    from cnnx.serve.server import bind, url_of

    shared = tempfile.mkdtemp(prefix="cnnx-serve-metrics-")
    old_env = os.environ.get(SHARED_ENV)
    os.environ[SHARED_ENV] = shared  # the workers inherit it and keep their metrics there
    sock = bind(config.host, config.port)
    sup = Supervisor(config, sock)
    handlers = {}
    try:
        # While the workers start, SIGTERM or SIGINT stops them and returns; SIGHUP waits (they are reading
        # the files now). With the default actions a SIGTERM then killed this process alone, and its
        # workers served on without a supervisor.
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, _stop_starting)
        handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            for i in range(config.workers):
                sup.start(i)
            sup.wait_ready()
        except _Stopped:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)  # a second one while they stop changes nothing
            sup.stop()
            return
        except BaseException:
            sup.stop()
            raise
        threading.Thread(target=sup.forward, name="cnnx-forward", daemon=True).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sup.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: sup.signal_all(signal.SIGHUP))
        if started is not None:
            started(url_of(sock))
        sup.watch()
        sup.stop()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        sock.close()
        shutil.rmtree(shared, ignore_errors=True)
        if old_env is None:
            os.environ.pop(SHARED_ENV, None)
        else:
            os.environ[SHARED_ENV] = old_env
