"""The persistence engine of a running node: AOF appending, group commit, snapshots and AOF
rewrites, disk errors.

**Group commit.** Every change the store propagates is encoded into a buffer. The server hands
each batch of replies to `hold()` instead of writing it while the buffer is not empty (`pending`),
and the first change of an event-loop iteration schedules `flush()` for the next one: one write of
everything buffered, then one fdatasync in `every` mode, then the held replies go out, in order.
So no reply leaves before the change it acknowledges (or observed) is written, in every mode, and
in `every` mode fsynced; a kill -9 loses nothing acknowledged. `interval` fsyncs every second in a
thread; `none` leaves it to the OS. (The fsync of `every` stays inline: measured in one run on 2
cores, an fsync in a thread while the loop runs the next batch cost 1.6x the CPU per command at
-P 1 and gave 0.64x Redis instead of 0.83x; it gained only 0.56x -> 0.63x at -P 16.)

**Snapshots are AOF rewrites.** `begin_rewrite` writes what is buffered, starts a new AOF file
`appendonly.N.aof` and commits a manifest naming [old snapshot, old AOFs..., new AOF] (so recovery
is right whatever happens next), then forks a child that writes `snapshot.N.atlas` (the state
before appendonly.N began). When the child is done, a second manifest names [snapshot.N,
appendonly.N...] and the old files are deleted. A crash at any instant leaves a manifest whose
files are all there; files it does not name are removed at the next start.

**Disk errors.** If the write or the fsync of a batch fails (ENOSPC, EIO...), the batch is rolled
back: the file is cut back to what was durable (and that is fsynced), the keyspace is reloaded
from disk, and the held replies become `-MISCONF Errors writing to the AOF file: ...`. Until a
probe succeeds (every 100 ms: room for the failed batch reserved and released, then a write and an
fsync), write commands are refused with the same error. If
even the cut-back fails, replies stay held until it succeeds: nothing is acknowledged that is not
on disk, and nothing is refused that then comes back.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from atlas.commands.session import ServerState, reset_command_stats, touch_all_watchers
from atlas.persistence.aof import AofFile, FileOps, select_record
from atlas.persistence.files import DataDir, Manifest, PersistenceError, aof_name, fsync_dir, sequence_of, snapshot_name
from atlas.persistence.recovery import RecoveryReport, load_state
from atlas.persistence.snapshot import BackgroundSnapshot, SnapshotInfo, SnapshotOutcome, write_snapshot
from atlas.protocol import encode_error

if TYPE_CHECKING:
    from atlas.store.keyspace import Store

logger = logging.getLogger(__name__)

CRON_SECONDS = 0.1
INTERVAL_FSYNC_SECONDS = 1.0
SNAPSHOT_RETRY_SECONDS = 5.0  # after a failed snapshot, as Redis's CONFIG_BGSAVE_RETRY_DELAY
PROBE_LOG_SECONDS = 5.0
PROBE_ROOM_BYTES = 64 * 1024  # writes are accepted again once at least this much fits
RETAINED_DEFAULTS = {
    "auto-aof-rewrite-percentage": "100",
    "auto-aof-rewrite-min-size": "67108864",
    "rdb-key-save-delay": "0",
}
FSYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SNAPSHOT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def is_closing(self) -> bool: ...


class RewriteInProgress(Exception):
    """A snapshot (AOF rewrite) is already running."""


class Histogram:
    """Counts of observations per bucket, for the metrics endpoint (no prometheus call on the hot path)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        running = 0
        out = []
        for bound, count in zip([*map(str, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass(frozen=True)
class PersistenceOptions:
    data_dir: Path
    appendonly: bool = True


def parse_save_points(text: str) -> list[tuple[float, int]]:
    """Redis's `save` parameter ("300 1 60 1000": after N seconds if M changes); bad pairs are ignored."""
    words = text.split()
    points = []
    for seconds, changes in zip(words[0::2], words[1::2], strict=False):
        with contextlib.suppress(ValueError):
            points.append((float(seconds), int(changes)))
    return [(seconds, changes) for seconds, changes in points if seconds > 0 and changes > 0]


class Persistence:
    """One node's durability: owns the data directory while the node runs."""

    def __init__(self, state: ServerState, options: PersistenceOptions, ops: FileOps | None = None) -> None:
        self.state = state
        self.store: Store = state.store
        self.options = options
        self.ops = ops or FileOps()
        self.datadir = DataDir(options.data_dir)
        self.manifest = Manifest(snapshot=None, aofs=(), next_seq=1)
        self.aof: AofFile | None = None
        self.buffer = bytearray()
        self.pending = False  # the server must hand replies to hold() instead of writing them
        self._held: list[tuple[Transport, bytes, int, bool]] = []
        self._flush_scheduled = False
        self._appending = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cron: asyncio.Task[None] | None = None
        # disk errors
        self.write_error: str | None = None  # the MISCONF message while writes are refused
        self.stuck = False  # a failed batch could not be cut back yet: its replies stay held
        self._failed_bytes = 0  # the size of the batch that failed: a probe wants room for it
        self._last_probe_log = 0.0
        # fsync
        self.fsync_seconds = Histogram(FSYNC_BUCKETS)
        self.last_fsync_time = 0.0
        self.delayed_fsyncs = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._fsync_job: concurrent.futures.Future[float] | None = None
        self._last_interval_fsync = time.monotonic()
        # snapshots / rewrites
        self.child: BackgroundSnapshot | None = None
        self._child_seq = 0
        self._dirty_at_fork = 0
        self.rewrite_scheduled = False
        self.snapshot_seconds = Histogram(SNAPSHOT_BUCKETS)
        self.dirty_at_snapshot = 0
        self.last_snapshot_time = time.time()
        self.last_snapshot_status = "ok"
        self.last_snapshot_seconds = -1.0
        self.last_snapshot_error = ""
        self.snapshots_done = 0
        self._last_failed_attempt = 0.0
        self.base_size = 0
        self.aof_size_at_rewrite = 0
        self.report = RecoveryReport()
        self._save_text = ""
        self._save_points: list[tuple[float, int]] = []

    # -- start and stop -------------------------------------------------------------------------

    def recover(self) -> RecoveryReport:
        """Lock the data dir, load the state it holds, and open the AOF for appending."""
        self.datadir.lock()
        try:
            return self._recover()
        except BaseException:
            self.datadir.unlock()
            raise

    def _recover(self) -> RecoveryReport:
        manifest = self.datadir.initialise()
        removed = self.datadir.remove_orphans(manifest)
        if removed:
            logger.info("removed files no manifest names: %s", ", ".join(removed), extra={"action": "orphans_removed"})
        self.report = report = load_state(self.state, self.datadir, manifest)
        reset_command_stats()  # the replay is not traffic
        if self.options.appendonly:
            if manifest.aofs:
                self.aof = AofFile(self.datadir.file(manifest.aofs[-1]), self.ops)
            else:
                seq = manifest.next_seq
                self.aof = self._new_aof(seq)
                manifest = Manifest(manifest.snapshot, (aof_name(seq),), seq + 1)
                self.datadir.write_manifest(manifest)
        self.manifest = manifest
        self.dirty_at_snapshot = self.store.dirty
        self.base_size = report.snapshot_size
        self.aof_size_at_rewrite = self.aof.size if self.aof else 0
        logger.info(
            "loaded %d keys in %.3f s (snapshot: %d keys, AOF: %d records)",
            report.keys,
            report.seconds,
            report.snapshot_keys,
            report.aof_records,
            extra={
                "action": "loaded",
                "keys": report.keys,
                "seconds": round(report.seconds, 3),
                "snapshot": manifest.snapshot,
                "aof_files": list(manifest.aofs),
            },
        )
        return report

    def start(self, loop: asyncio.AbstractEventLoop, cron: bool = True) -> None:
        """Begin appending and the periodic work (tick(), unless cron is False: tests call it);
        install the INFO fields and the handle commands use."""
        self._loop = loop
        state = self.state
        for name, value in RETAINED_DEFAULTS.items():
            state.config.others.setdefault(name, value)
        state.info_sections["persistence"] = self.info_fields
        state.persistence = self
        if self.options.appendonly:
            self.store.add_listener(self._on_change)
            self._appending = True
        if cron:
            self._cron = loop.create_task(self._run_cron())

    def stop(self, save: bool) -> None:
        """Shutdown: stop a running snapshot, make the AOF durable, and save when asked to."""
        if self._cron is not None:
            self._cron.cancel()
        if self.child is not None:
            self.child.kill()
            self.child = None
        if self.write_error is None and not self.stuck:
            with contextlib.suppress(OSError):
                self.flush()
                self._wait_background_fsync()
                if self.aof is not None and self.aof.synced != self.aof.size:
                    self._timed_fsync(self.aof)
        if save and self._save_points_configured() and self.store.dirty != self.dirty_at_snapshot:
            try:
                self.begin_rewrite(background=False)
            except (OSError, PersistenceError) as exc:
                logger.error("snapshot at shutdown failed: %s", exc, extra={"action": "snapshot_failed"})
        self._appending = False
        if self.aof is not None:
            self.aof.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.datadir.unlock()
        # Until the process exits, nothing more is acknowledged: a change now would not be stored.
        self._closed = True
        self.pending = True

    # -- appending and the reply gate --------------------------------------------------------------

    def _on_change(self, db_index: int, argv: list[bytes]) -> None:
        if not self._appending:
            return
        aof = self.aof
        assert aof is not None
        buffer = self.buffer
        if db_index != aof.selected_db:
            buffer += select_record(db_index)
            aof.selected_db = db_index
        append_command(buffer, argv)
        if not self.pending and self.write_error is None:
            self.pending = True
            self._schedule_flush()

    def hold(self, transport: Transport, data: bytes, replies: int, close: bool) -> None:
        """Keep a batch of replies (`replies` of them) until the next flush; close after if asked."""
        if self._closed:
            return  # shutting down: no reply, rather than one for a change that will not be stored
        self._held.append((transport, data, replies, close))
        if not self.stuck:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_iteration)

    def _flush_iteration(self) -> None:
        self._flush_scheduled = False
        if not self.stuck:
            self.flush()

    def flush(self) -> bool:
        """Write what is buffered (and fsync in `every` mode), then release held replies; on a disk
        error, roll the batch back and answer its replies with MISCONF. True when all went well."""
        aof = self.aof
        if aof is not None and self.write_error is None:
            if self.buffer:
                data, self.buffer = self.buffer, bytearray()
                try:
                    aof.write(data)
                except OSError as exc:
                    self._failed_bytes = len(data)
                    self._failed(exc)
                    return False
            if self.state.config.appendfsync == "always" and aof.synced != aof.size:
                try:
                    self._timed_fsync(aof)
                except OSError as exc:
                    self._failed(exc)
                    return False
        self._release()
        return True

    def _release(self) -> None:
        held, self._held = self._held, []
        self.pending = False
        for transport, data, _, close in held:
            if transport.is_closing():
                continue
            if data:
                transport.write(data)
            if close:
                transport.close()

    def _timed_fsync(self, aof: AofFile) -> None:
        started = time.perf_counter()
        aof.fsync()
        self.fsync_seconds.observe(time.perf_counter() - started)
        self.last_fsync_time = time.time()

    # -- disk errors --------------------------------------------------------------------------------

    def _failed(self, exc: OSError) -> None:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        message = f"MISCONF Errors writing to the AOF file: {reason}"
        logger.error(
            "AOF write failed (%s): rolling the batch back and refusing writes until the disk recovers",
            reason,
            extra={"action": "aof_write_error", "error": reason},
        )
        self.write_error = message
        self._set_refusal(message)
        self._rollback()

    def _rollback(self) -> None:
        """Make the keyspace what the disk holds, then answer the held replies with the error."""
        aof = self.aof
        assert aof is not None
        assert self.write_error is not None
        durable = aof.synced if self.state.config.appendfsync == "always" else aof.size
        try:
            aof.truncate(durable)
        except OSError:
            if not self.stuck:
                logger.error("cannot cut the AOF back: replies wait", extra={"action": "aof_stuck"})
            self.stuck = True
            self.pending = True
            return
        # Make the cut durable if the disk lets us; if it does not, the probe's fsync will, before
        # any write is accepted again (only an OS crash in between could bring the batch back).
        with contextlib.suppress(OSError):
            aof.fsync()
        self.stuck = False
        self.buffer = bytearray()
        aof.selected_db = -1
        self._reload()
        error = encode_error(self.write_error)
        self._held = [(transport, error * replies, replies, close) for transport, _, replies, close in self._held]
        self._release()

    def _reload(self) -> None:
        self._appending = False
        try:
            for db in self.store.dbs:
                db.flush()
                touch_all_watchers(db)
            load_state(self.state, self.datadir, self.manifest, repair_tail=False)
        except (OSError, PersistenceError) as exc:  # pragma: no cover - the disk fails reads too
            logger.critical("cannot reload the keyspace after a disk error: %s", exc, extra={"action": "fatal"})
            os._exit(70)
        finally:
            self._appending = self.options.appendonly
        self.dirty_at_snapshot = min(self.dirty_at_snapshot, self.store.dirty)

    def _probe(self) -> None:
        """While writes are refused: write what is buffered (or a harmless SELECT) and fsync."""
        aof = self.aof
        assert aof is not None
        try:
            if aof.ragged and not aof.cut_back():
                raise OSError(5, "cannot truncate the AOF")
            aof.check_room(max(self._failed_bytes, PROBE_ROOM_BYTES))  # room for what failed, at least
            if self.buffer:
                aof.write(self.buffer)
                self.buffer = bytearray()
            else:
                db = max(aof.selected_db, 0)
                aof.write(select_record(db))
                aof.selected_db = db
            self._timed_fsync(aof)
        except OSError as exc:
            now = time.monotonic()
            if now - self._last_probe_log > PROBE_LOG_SECONDS:
                self._last_probe_log = now
                logger.warning("AOF still failing: %s", exc, extra={"action": "aof_write_error"})
            return
        logger.info("AOF writes work again: accepting writes", extra={"action": "aof_write_recovered"})
        self.write_error = None
        self._set_refusal(None)

    def _set_refusal(self, message: str | None) -> None:
        self.state.write_refusal = message
        for session in self.state.sessions.values():
            session.refresh_gate()

    # -- interval fsync ---------------------------------------------------------------------------

    def _interval_fsync(self) -> None:
        aof = self.aof
        if aof is None or self._fsync_job is not None or aof.synced == aof.size:
            return
        if time.monotonic() - self._last_interval_fsync < INTERVAL_FSYNC_SECONDS:
            return
        self._last_interval_fsync = time.monotonic()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="aof-fsync")
        loop = self._loop
        assert loop is not None
        size = aof.size
        job = self._executor.submit(_fdatasync_timed, self.ops.fdatasync, aof.fd)
        self._fsync_job = job
        job.add_done_callback(lambda done: loop.call_soon_threadsafe(self._interval_fsync_done, done, aof, size))

    def _interval_fsync_done(self, job: concurrent.futures.Future[float], aof: AofFile, size: int) -> None:
        if self._fsync_job is job:
            self._fsync_job = None
        try:
            seconds = job.result()
        except OSError as exc:
            if self.write_error is None:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                self.write_error = f"MISCONF Errors writing to the AOF file: {reason}"
                logger.error("AOF fsync failed: %s", reason, extra={"action": "aof_write_error"})
                self._set_refusal(self.write_error)
            return
        self.fsync_seconds.observe(seconds)
        self.last_fsync_time = time.time()
        aof.synced = max(aof.synced, size)

    def _wait_background_fsync(self) -> None:
        job = self._fsync_job
        if job is not None:
            with contextlib.suppress(OSError):
                job.result()
            self._fsync_job = None

    # -- snapshots and rewrites ------------------------------------------------------------------------

    @property
    def rewriting(self) -> bool:
        return self.child is not None

    def begin_rewrite(self, background: bool = True) -> None:
        """Snapshot the keyspace and start a fresh AOF (BGSAVE, SAVE, BGREWRITEAOF, the schedule)."""
        if self.child is not None:
            raise RewriteInProgress
        if self.write_error is not None:
            raise PersistenceError(f"cannot snapshot while the AOF is failing: {self.write_error}")
        aof = self.aof
        if aof is not None and self._appending:
            if not self.flush():
                raise PersistenceError(self.write_error or "AOF write failed")
            self._wait_background_fsync()
            if aof.synced != aof.size:
                self._timed_fsync(aof)
        seq = self.manifest.next_seq
        if self._appending:
            new_aof = self._new_aof(seq)
            staged = Manifest(self.manifest.snapshot, (*self.manifest.aofs, aof_name(seq)), seq + 1)
            try:
                self.datadir.write_manifest(staged)
            except OSError:
                new_aof.close()
                with contextlib.suppress(OSError):
                    new_aof.path.unlink()
                raise
            if aof is not None:
                aof.close()
            self.aof = new_aof
        else:
            staged = Manifest(self.manifest.snapshot, self.manifest.aofs, seq + 1)
            self.datadir.write_manifest(staged)
        self.manifest = staged
        self._dirty_at_fork = self.store.dirty
        target = self.datadir.file(snapshot_name(seq))
        self.aof_size_at_rewrite = 0
        if background:
            delay = _float(self.state.config.others.get("rdb-key-save-delay", "0")) / 1_000_000
            self.child = BackgroundSnapshot.start(self.store, target, key_delay=max(delay, 0.0))
            self._child_seq = seq
            logger.info("background snapshot started (pid %d)", self.child.pid, extra={"action": "snapshot_started"})
            return
        started = time.monotonic()
        try:
            info = write_snapshot(self.store, target)
        except OSError as exc:
            self._snapshot_failed(str(exc), time.monotonic() - started, target)
            raise
        self._complete_rewrite(seq, info, time.monotonic() - started)

    def _complete_rewrite(self, seq: int, info: SnapshotInfo, seconds: float) -> None:
        current = self.manifest
        final = Manifest(
            snapshot_name(seq), tuple(name for name in current.aofs if sequence_of(name) >= seq), current.next_seq
        )
        try:
            self.datadir.write_manifest(final)
        except OSError as exc:
            self._snapshot_failed(f"manifest: {exc}", seconds, self.datadir.file(snapshot_name(seq)))
            return
        self.manifest = final
        for name in current.files():
            if name not in final.files():
                with contextlib.suppress(FileNotFoundError):
                    self.datadir.file(name).unlink()
        with contextlib.suppress(OSError):
            fsync_dir(self.datadir.path)
        self.last_snapshot_time = time.time()
        self.last_snapshot_status = "ok"
        self.last_snapshot_error = ""
        self.last_snapshot_seconds = seconds
        self.snapshot_seconds.observe(seconds)
        self.snapshots_done += 1
        self.dirty_at_snapshot = self._dirty_at_fork
        self.base_size = info.size
        logger.info(
            "snapshot %s: %d keys, %d bytes in %.3f s",
            snapshot_name(seq),
            info.keys,
            info.size,
            seconds,
            extra={"action": "snapshot_done", "keys": info.keys, "bytes": info.size, "seconds": round(seconds, 3)},
        )

    def _snapshot_failed(self, error: str, seconds: float, target: Path) -> None:
        self.last_snapshot_status = "err"
        self.last_snapshot_error = error
        self.last_snapshot_seconds = seconds
        self._last_failed_attempt = time.monotonic()
        for path in (target, target.with_name(target.name + ".tmp")):
            with contextlib.suppress(OSError):
                path.unlink()
        logger.error("snapshot failed: %s", error, extra={"action": "snapshot_failed", "error": error})

    def _poll_child(self) -> None:
        child = self.child
        if child is None:
            return
        outcome: SnapshotOutcome | None = child.poll()
        if outcome is None:
            return
        self.child = None
        if outcome.ok and outcome.info is not None:
            self._complete_rewrite(self._child_seq, outcome.info, outcome.seconds)
        else:
            self._snapshot_failed(outcome.error, outcome.seconds, child.path)

    def _new_aof(self, seq: int) -> AofFile:
        path = self.datadir.file(aof_name(seq))
        aof = AofFile(path, self.ops)
        os.fsync(aof.fd)
        fsync_dir(self.datadir.path)
        return aof

    def _save_points_configured(self) -> bool:
        return bool(self._current_save_points())

    def _current_save_points(self) -> list[tuple[float, int]]:
        text = self.state.config.save
        if text != self._save_text:
            self._save_text = text
            self._save_points = parse_save_points(text)
        return self._save_points

    def _due(self) -> bool:
        """Whether a save point or the AOF growth asks for a rewrite now."""
        if time.monotonic() - self._last_failed_attempt < SNAPSHOT_RETRY_SECONDS:
            return False
        changes = self.store.dirty - self.dirty_at_snapshot
        elapsed = time.time() - self.last_snapshot_time
        for seconds, needed in self._current_save_points():
            if elapsed >= seconds and changes >= needed:
                return True
        aof = self.aof
        if aof is None:
            return False
        others = self.state.config.others
        percentage = _float(others.get("auto-aof-rewrite-percentage", "100"))
        min_size = _float(others.get("auto-aof-rewrite-min-size", "67108864"))
        grown = aof.size - self.aof_size_at_rewrite
        base = max(self.base_size, 1)
        return percentage > 0 and aof.size >= min_size and grown * 100 / base >= percentage

    # -- the periodic work -----------------------------------------------------------------------------

    async def _run_cron(self) -> None:
        while True:
            await asyncio.sleep(CRON_SECONDS)
            try:
                self.tick()
            except Exception:  # the cron must keep running: log and go on
                logger.exception("persistence cron failed", extra={"action": "cron_error"})

    def tick(self) -> None:
        """Everything periodic: the child, disk-error recovery, interval fsync, scheduled snapshots."""
        self._poll_child()
        if self.stuck:
            self._rollback()
        elif self.write_error is not None:
            self._probe()
        elif self.state.config.appendfsync == "everysec":
            self._interval_fsync()
        if self.child is None and self.write_error is None and (self.rewrite_scheduled or self._due()):
            self.rewrite_scheduled = False
            try:
                self.begin_rewrite(background=True)
            except (OSError, PersistenceError) as exc:
                self._snapshot_failed(str(exc), 0.0, self.datadir.file(snapshot_name(self.manifest.next_seq)))

    # -- what commands and INFO use --------------------------------------------------------------------

    def save(self) -> None:
        """SAVE: a snapshot in the foreground (refused while a background one runs, as in Redis)."""
        self.begin_rewrite(background=False)

    def info_fields(self) -> list[tuple[str, Any]]:
        now = time.time()
        child = self.child
        aof = self.aof
        current = int(time.monotonic() - child.started) if child is not None else -1
        last_seconds = round(self.last_snapshot_seconds) if self.last_snapshot_seconds >= 0 else -1
        return [
            ("loading", 0),
            ("async_loading", 0),
            ("rdb_changes_since_last_save", self.store.dirty - self.dirty_at_snapshot),
            ("rdb_bgsave_in_progress", int(child is not None)),
            ("rdb_last_save_time", int(self.last_snapshot_time)),
            ("rdb_last_bgsave_status", self.last_snapshot_status),
            ("rdb_last_bgsave_time_sec", last_seconds),
            ("rdb_current_bgsave_time_sec", current),
            ("rdb_saves", self.snapshots_done),
            ("rdb_last_load_keys_loaded", self.report.keys),
            ("aof_enabled", int(self.options.appendonly)),
            ("aof_rewrite_in_progress", int(child is not None)),
            ("aof_rewrite_scheduled", int(self.rewrite_scheduled)),
            ("aof_last_rewrite_time_sec", last_seconds),
            ("aof_current_rewrite_time_sec", current),
            ("aof_last_bgrewrite_status", self.last_snapshot_status),
            ("aof_rewrites", self.snapshots_done),
            ("aof_last_write_status", "err" if self.write_error else "ok"),
            ("aof_last_cow_size", 0),
            ("aof_current_size", aof.size if aof else 0),
            ("aof_base_size", self.base_size),
            ("aof_buffer_length", len(self.buffer)),
            ("aof_pending_bio_fsync", int(self._fsync_job is not None)),
            ("aof_delayed_fsync", self.delayed_fsyncs),
            ("aof_last_fsync_time", f"{self.last_fsync_time:.3f}"),
            (
                "atlas_sync_mode",
                {"always": "every", "everysec": "interval", "no": "none"}[self.state.config.appendfsync],
            ),
            ("atlas_snapshot_file", self.manifest.snapshot or ""),
            ("atlas_aof_files", len(self.manifest.aofs)),
            ("atlas_last_snapshot_error", self.last_snapshot_error),
            ("atlas_load_time_sec", f"{self.report.seconds:.3f}"),
            ("atlas_load_truncated_bytes", sum(dropped for _, _, dropped in self.report.truncated)),
            ("atlas_uptime_since_snapshot_sec", int(now - self.last_snapshot_time)),
        ]


def append_command(buffer: bytearray, argv: list[bytes]) -> None:
    """RESP-encode a command onto `buffer` (protocol.encode_command, on the hot path: the usual
    arities take one formatting operation)."""
    count = len(argv)
    if count == 3:
        a, b, c = argv
        buffer += b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(a), a, len(b), b, len(c), c)
    elif count == 2:
        a, b = argv
        buffer += b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(a), a, len(b), b)
    elif count == 4:
        a, b, c, d = argv
        buffer += b"*4\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(a), a, len(b), b, len(c), c, len(d), d,
        )  # fmt: skip
    else:
        buffer += b"*%d\r\n" % count
        for arg in argv:
            buffer += b"$%d\r\n%s\r\n" % (len(arg), arg)


def _fdatasync_timed(fdatasync: Callable[[int], None], fd: int) -> float:
    started = time.perf_counter()
    fdatasync(fd)
    return time.perf_counter() - started


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
