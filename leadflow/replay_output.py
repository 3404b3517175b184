"""The output directory of ``leadflow replay``: one run at a time, written whole or not at all.

- **Locked.** ``DIR/.leadflow.lock`` holds an exclusive ``flock`` and the pid of the run that holds
  it; a second run on the same directory is refused ("DIR is in use by pid N"). The kernel drops
  the lock when its process dies, so a killed run never leaves the directory locked.
- **Atomic.** The three files are written to temporary files in the directory
  (``.lifecycle.jsonl.<pid>.tmp`` ...) and renamed into place only once the run completed, followed
  by ``manifest.json`` (:data:`MANIFEST`), with SIGINT, SIGTERM and SIGHUP held back meanwhile. A
  failed or interrupted run deletes its temporary files and leaves the previous output as it was.
- **The manifest** says what a complete output is: per file its lines, bytes and SHA-256, the
  inputs, the policy file and its ``policy_version``, ``--until``, when the run completed and the
  leadflow version. ``leadflow report`` refuses a directory
  without one, or whose files differ from it (:func:`read_manifest`, :class:`CheckedFile`).
- **No symlink is followed** for a file written: temporary files are created with
  ``O_EXCL | O_NOFOLLOW`` and renamed over whatever had the final name, a symlink included.
- Every I/O error names its path; a full disk is one line, and nothing half-written stays.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from lifecycle.errors import ConfigError, LeadflowError

OUTPUT_FILES = ("lifecycle.jsonl", "alerts.jsonl", "dlq.jsonl")
MANIFEST = "manifest.json"
LOCK = ".leadflow.lock"
FORMAT = "leadflow-replay/1"
#: A manifest is a few hundred bytes (a few KB with many inputs); a bigger one is not ours.
MAX_MANIFEST_BYTES = 1024 * 1024
_TEMPORARY = re.compile(r"^\.(?:lifecycle\.jsonl|alerts\.jsonl|dlq\.jsonl|manifest\.json)\.\d+\.tmp$")
_HELD_BACK = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_WRITE_BUFFER = 256 * 1024


class OutputError(LeadflowError):
    """The output directory cannot be used or written; the message names the path."""


class OutputBusy(OutputError):
    """Another run holds the output directory."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


class OutputFile:
    """One output file being written: a temporary file, its line and byte counts and its SHA-256.

    ``write`` takes whole lines and may be called from several threads (a sink's dead letters).
    """

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        self.lines = 0
        self.bytes = 0
        self._digest = hashlib.sha256()
        self._lock = threading.Lock()
        try:
            fd = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot create {self.temporary}: {_why(exc)}") from None
        self._file: BinaryIO | None = os.fdopen(fd, "wb", buffering=_WRITE_BUFFER)

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._file is None:
                raise OutputError(f"{self.final}: written after the run ended")
            try:
                self._file.write(data)
            except OSError as exc:
                raise OutputError(f"cannot write {self.temporary}: {_why(exc)}") from None
            self.lines += data.count(b"\n")
            self.bytes += len(data)
            self._digest.update(data)

    def finish(self) -> dict[str, Any]:
        """Flush to disk and close; what the manifest says of this file."""
        with self._lock:
            if self._file is not None:
                try:
                    self._file.flush()
                    os.fsync(self._file.fileno())
                except OSError as exc:
                    raise OutputError(f"cannot write {self.temporary}: {_why(exc)}") from None
                finally:
                    self._close()
        return {"lines": self.lines, "bytes": self.bytes, "sha256": self._digest.hexdigest()}

    def discard(self) -> None:
        with self._lock:
            self._close()
        try:
            os.unlink(self.temporary)
        except FileNotFoundError:
            pass
        except OSError:  # noqa: S110 - best effort: the next run removes leftovers
            pass

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:  # a failed flush of a file being discarded
                pass


class ReplayOutput:
    """A locked output directory for one run: ``begin`` the files, write them, ``commit`` or ``close``.

    >>> with ReplayOutput.open(Path("out")) as out:          # doctest: +SKIP
    ...     lifecycle, alerts, dlq = out.begin()
    ...     lifecycle.write(b'{...}\\n')
    ...     out.commit(inputs=["events.jsonl"], until=None)
    """

    def __init__(self, path: Path, lock_fd: int, policy_source: str | None) -> None:
        self.path = path
        self.policy_source = policy_source
        self._lock_fd: int | None = lock_fd
        self.files: dict[str, OutputFile] = {}
        self.committed = False

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, policy_source: str | None = None) -> "ReplayOutput":
        """Create ``path`` if needed and lock it; raises :class:`OutputError` (or :class:`OutputBusy`)."""
        if path.is_symlink() and not path.exists():
            raise OutputError(f"{path} is a symlink to {os.readlink(path)}, which does not exist")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output directory {path}: {_why(exc)}") from None
        if not path.is_dir():
            raise OutputError(f"{path}: not a directory")
        output = cls(path, _lock(path), policy_source)
        output._remove_leftovers()
        return output

    def _remove_leftovers(self) -> None:
        """Temporary files of a run that was killed (SIGKILL, power loss): ours now, as we hold the lock."""
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise OutputError(f"cannot list {self.path}: {_why(exc)}") from None
        for name in names:
            if _TEMPORARY.match(name):
                try:
                    os.unlink(self.path / name)
                except OSError as exc:
                    raise OutputError(f"cannot remove {self.path / name}: {_why(exc)}") from None

    # -- writing -------------------------------------------------------------------------------

    def begin(self) -> tuple[OutputFile, OutputFile, OutputFile]:
        """Temporary ``lifecycle.jsonl``, ``alerts.jsonl`` and ``dlq.jsonl``, empty."""
        if self.files:
            raise OutputError(f"{self.path}: a run already began in this output")
        try:
            for name in OUTPUT_FILES:
                self.files[name] = OutputFile(self.path / name)
        except OutputError:
            self.abort()
            raise
        lifecycle, alerts, dlq = (self.files[name] for name in OUTPUT_FILES)
        return lifecycle, alerts, dlq

    def dead_letter(self, line: bytes) -> None:
        """Append one line to ``dlq.jsonl`` (a sink's dead letters, from any thread)."""
        if "dlq.jsonl" not in self.files:
            raise OutputError(f"{self.path}: a dead letter before the run began")
        self.files["dlq.jsonl"].write(line)

    def commit(self, inputs: Sequence[str], until: int | None, policy_version: str | None = None) -> dict[str, Any]:
        """Put the files in place, then ``manifest.json``; return the manifest."""
        from importlib.metadata import PackageNotFoundError, version

        from schemas.wire import format_time

        if not self.files or self.committed:
            raise OutputError(f"{self.path}: nothing to commit")
        try:
            leadflow_version = version("leadflow")
        except PackageNotFoundError:
            leadflow_version = "unknown"
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "files": {name: self.files[name].finish() for name in OUTPUT_FILES},
            "inputs": list(inputs),
            "policy": self.policy_source or "built-in",
            "until": format_time(until) if until is not None else None,
            "completed_at": format_time(int(time.time() * 1000)),
            "leadflow_version": leadflow_version,
        }
        if policy_version is not None:
            manifest["policy_version"] = policy_version
        staged = self.path / f".{MANIFEST}.{os.getpid()}.tmp"
        _write_new(staged, (json.dumps(manifest, indent=2) + "\n").encode())
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_BACK)
        try:
            _unlink(self.path / MANIFEST)  # from here until the new one is in place: no manifest
            for name in OUTPUT_FILES:
                _rename(self.files[name].temporary, self.path / name)
            _rename(staged, self.path / MANIFEST)
            self.committed = True
            _sync_directory(self.path)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return manifest

    def abort(self) -> None:
        """Delete the temporary files; the directory keeps what it had."""
        for output in self.files.values():
            output.discard()
        try:
            os.unlink(self.path / f".{MANIFEST}.{os.getpid()}.tmp")
        except OSError:
            pass

    def close(self) -> None:
        """Abort an uncommitted run and release the lock."""
        if not self.committed:
            self.abort()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            _unlock(self.path, fd)

    def __enter__(self) -> "ReplayOutput":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# -- the lock ----------------------------------------------------------------------------------------

def _lock(directory: Path) -> int:
    """An open, ``flock``-ed ``DIR/.leadflow.lock`` holding our pid; :class:`OutputBusy` if taken."""
    path = directory / LOCK
    for _ in range(5):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot create the lock file {path}: {_why(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise OutputBusy(f"{directory} is in use by {who} (another leadflow replay writes there)") from None
        except OSError as exc:
            os.close(fd)
            raise OutputError(f"cannot lock {path}: {_why(exc)}") from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed it between our open and our lock: again
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise OutputError(f"cannot write the lock file {path}: {_why(exc)}") from None
        return fd
    raise OutputBusy(f"{directory} is in use (its lock file keeps changing)")


def _unlock(directory: Path, fd: int) -> None:
    path = directory / LOCK
    try:
        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)  # while still holding it, so a waiting run sees the file is gone
    except OSError:
        pass
    finally:
        os.close(fd)


# -- small file operations, each error naming its path -------------------------------------------------

def _write_new(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot create {path}: {_why(exc)}") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        _unlink(path)
        raise OutputError(f"cannot write {path}: {_why(exc)}") from None
    os.close(fd)


def _rename(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError as exc:
        raise OutputError(f"cannot rename {source} to {target}: {_why(exc)}") from None


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"cannot remove {path}: {_why(exc)}") from None


def _sync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- reading a finished output back (leadflow report) ----------------------------------------------------

def read_manifest(directory: Path) -> dict[str, Any]:
    """``DIR/manifest.json``, checked against the files beside it by size; raises :class:`ConfigError`
    with a one-line reason when the directory is not a complete replay output."""
    path = directory / MANIFEST
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        present = [name for name in OUTPUT_FILES if (directory / name).exists()]
        why = ("not a complete replay output (an interrupted run, or files copied from elsewhere)" if present
               else "not a replay output directory")
        raise ConfigError(f"{directory}: no {MANIFEST}: {why}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {_why(exc)}") from None
    try:
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ValueError(f"over {MAX_MANIFEST_BYTES:,} bytes")
        manifest = json.loads(raw)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"no \"format\": \"{FORMAT}\"")
        files = manifest["files"]
        for name in OUTPUT_FILES:
            entry = files[name]
            if not (isinstance(entry["lines"], int) and isinstance(entry["bytes"], int)
                    and isinstance(entry["sha256"], str)):
                raise ValueError(f"bad entry for {name}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a leadflow replay manifest ({exc})") from None
    for name in OUTPUT_FILES:
        target = directory / name
        try:
            size = os.stat(target).st_size
        except FileNotFoundError:
            raise ConfigError(f"{target}: missing, but {MANIFEST} lists it (an incomplete output)") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {target}: {_why(exc)}") from None
        expected = files[name]["bytes"]
        if size != expected:
            raise ConfigError(f"{target}: {size:,} bytes, but {MANIFEST} says {expected:,} "
                              "(a file of another run, or changed since)")
    return manifest


class CheckedFile:
    """Reads one output file line by line while checking it against its manifest entry; raises
    :class:`ConfigError` at the end when lines or SHA-256 differ."""

    def __init__(self, directory: Path, name: str, manifest: dict[str, Any]) -> None:
        self.path = directory / name
        self.expected = manifest["files"][name]

    def lines(self) -> Iterator[tuple[int, bytes]]:
        from leadflow.jsonlines import LongLine, read_lines

        try:
            with open(self.path, "rb") as handle:
                tee = _Hashing(handle)
                for number, line, _ in read_lines(tee, skip_long=False):
                    if isinstance(line, LongLine):
                        raise ConfigError(f"{self.path}:{number}: a line of more than {line.limit:,} bytes "
                                          "(not a replay output)")
                    yield number, line
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {_why(exc)}") from None
        tee.check(self)

    def verify(self) -> None:
        """The whole file against its manifest entry, in chunks."""
        try:
            with open(self.path, "rb") as handle:
                tee = _Hashing(handle)
                while tee.readline(1024 * 1024):
                    pass
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {_why(exc)}") from None
        tee.check(self)


class _Hashing:
    """A binary stream's ``readline`` that feeds every byte read to a SHA-256 and counts newlines."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._digest = hashlib.sha256()
        self.lines = 0

    def readline(self, limit: int = -1) -> bytes:
        data = self._stream.readline(limit)
        self._digest.update(data)
        if data.endswith(b"\n"):
            self.lines += 1
        return data

    def check(self, file: CheckedFile) -> None:
        if self.lines != file.expected["lines"] or self._digest.hexdigest() != file.expected["sha256"]:
            raise ConfigError(f"{file.path}: content differs from {MANIFEST} "
                              "(a file of another run, or changed since)")
