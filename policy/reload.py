"""Reloading the policy of a running sensor when its file changes (DESIGN.md §4).

A background thread looks at the file's modification time and size every ``interval`` seconds. When
they changed and then stayed the same for one interval (a file caught while it is being written,
truncated and not yet filled, is not judged), the file is loaded and validated *off* the packet path;
a valid policy is swapped into the observer in one assignment, an invalid one is refused with its
``file:line`` problems in the log and the old policy keeps running. A file that disappears (an
editor's rename-over-save) is also ignored until it is back.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from policy.index import AssetTags, load_compiled
from policy.observer import PolicyObserver
from sensor.errors import UserError

log = logging.getLogger(__name__)


class PolicyWatcher:
    """Polls one policy file and hands valid new versions to a :class:`PolicyObserver`."""

    def __init__(
        self,
        observer: PolicyObserver,
        path: Path,
        interval: float = 2.0,
        asset_tags: AssetTags | None = None,
    ) -> None:
        self.observer = observer
        self.path = path
        self.interval = interval
        self.asset_tags = asset_tags
        self.reloads = 0
        self.failures = 0
        self.last_error = ""
        self._stamp = self._current_stamp()  # of the file last loaded (or refused)
        self._polled = self._stamp  # of the file at the watcher thread's previous look
        self._lock = threading.Lock()  # the watcher thread and reload_now never interleave
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def check_now(self) -> bool:
        """Reload if the file changed; True when a new policy was installed."""
        with self._lock:
            return self._reload_if_changed(self._current_stamp())

    def reload_now(self) -> bool:
        """For a caller that has just written the file (``PUT /api/v1/policy``): True when the file as it
        is now runs, loaded here or already by the watcher thread, so it is never swapped in twice."""
        with self._lock:
            stamp = self._current_stamp()
            if stamp is not None and stamp == self._stamp and not self.last_error:
                return True
            return self._reload_if_changed(stamp)

    def _reload_if_changed(self, stamp: tuple[int, int] | None) -> bool:
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            compiled = load_compiled(self.path, self.asset_tags)
        except UserError as exc:
            self.failures += 1
            self.last_error = str(exc)
            log.warning("policy reload refused, keeping the running policy:\n%s", exc)
            return False
        self.observer.replace_policy(compiled)
        self.reloads += 1
        self.last_error = ""
        log.info("policy %s reloaded", self.path)
        return True

    def poll(self) -> bool:
        """The watcher thread's look: :meth:`check_now` once the file has not changed since the previous
        look; True when a new policy was installed."""
        with self._lock:
            stamp = self._current_stamp()
            settled = stamp == self._polled
            self._polled = stamp
            return settled and self._reload_if_changed(stamp)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # never let the watcher die silently
                log.exception("policy watcher error")

    def start(self) -> PolicyWatcher:
        self._thread = threading.Thread(target=self._run, name="policy-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def watch_policy(observer: PolicyObserver, path: Path, interval: float = 2.0) -> PolicyWatcher:
    """Start watching ``path`` for the live sensor."""
    return PolicyWatcher(observer, path, interval, observer.policy.zones.asset_tags).start()
