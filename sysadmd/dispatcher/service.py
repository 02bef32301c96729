"""The dispatcher's Service, built from the ``[dispatcher]`` section."""

import os
import sqlite3

from twisted.application.service import Service

from sysadmd.config import ConfigError
from sysadmd.dispatcher.core import Dispatcher, Settings
from sysadmd.dispatcher.database import FILENAME, ThreadWorker, connect
from sysadmd.dispatcher.outputs import OUTPUT_DIR, OutputDirectory
from sysadmd.dispatcher.runner import build_environment
from sysadmd.dispatcher.store import Store


class DispatcherService(Service):
    """Starts the dispatcher (recovering the last run's jobs) and, at shutdown, stops its
    running jobs and closes its database; ``stopService`` fires when all of that is done."""

    name = "dispatcher"

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher

    def startService(self):
        """Move the daemon into ``[dispatcher] cwd``, open the database and recover jobs
        (in the background; requests wait)."""
        super().startService()
        # Twisted starts a child with posix_spawn only when its working directory is the
        # daemon's own; otherwise it forks the whole daemon, which is several times
        # slower and leaves a window where the child still runs daemon code (signal
        # handlers included). Every configured path is absolute by now.
        os.chdir(self.dispatcher.settings.cwd)
        self.dispatcher.start()

    def stopService(self):
        """Stop running jobs, wait for every child, close the database."""
        super().stopService()
        return self.dispatcher.stop()


def settings_from_config(config, environ=None):
    """:class:`Settings` from the parsed ``[dispatcher]`` section."""
    section = config["dispatcher"]
    return Settings(
        queues=section["queues"],
        max_processes=section["max_processes"],
        default_timeout=section["default_timeout"],
        kill_grace=section["kill_grace"],
        update_interval=section["update_interval"],
        event_log_bytes=section["event_log_bytes"],
        store_log_bytes=section["store_log_bytes"],
        history_days=section["history_days"],
        max_output_bytes=section["max_output_bytes"],
        output_batch_bytes=section["output_batch_bytes"],
        output_batch_ms=section["output_batch_ms"],
        env=build_environment(section["env_passthrough"], environ),
        cwd=config.path("dispatcher", "cwd") or "/",
    )


def build_dispatcher(reactor, config, errors):
    """Return a :class:`DispatcherService`; configuration problems (a missing working
    directory, a database that cannot be opened) go to ``errors``."""
    settings = settings_from_config(config)
    if not os.path.isdir(settings.cwd):
        errors.append(ConfigError(config.source, "dispatcher", "cwd", f"{settings.cwd} is not a directory"))
    path = os.path.join(config.state_dir, FILENAME)
    try:
        # Checked now, before the reactor runs, so a broken database stops the start
        # with a clear message; the service opens it again on its own thread.
        connect(path).close()
    except sqlite3.Error as e:
        errors.append(
            ConfigError(
                config.source, "server", "state_dir", f"cannot use the dispatcher database {path}: {e}"
            )
        )
    outputs = OutputDirectory(os.path.join(config.state_dir, OUTPUT_DIR), settings.max_output_bytes)
    try:
        outputs.open()
    except OSError as e:
        errors.append(ConfigError(config.source, "server", "state_dir",
                                  f"cannot make the job output directory {outputs.directory}: {e}"))
    store = Store(lambda: ThreadWorker(reactor, path), settings.store_log_bytes, outputs)
    return DispatcherService(Dispatcher(reactor, store, settings, outputs))
