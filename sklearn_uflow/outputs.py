"""Output files a person can trust: a run removes only what a run recorded, and writes whole files.

A run writes into its output folder through an :class:`OutputFolder`, which
is checked, in full, before any work: the folder must be new, empty, or the
folder of an earlier run (it holds that run's record), and must not be or
contain any of the run's inputs. When the run starts writing it takes the
folder's lock, removes the earlier run's recorded files (only with
``overwrite``, and only those, unchanged since they were written), and writes
its own record, ``.sklearn-uflow-run.json``: the command, the library
version, and every file it is going to write. The record is finished last,
with each file's size. An interrupted run leaves a record that says so, and
the next ``overwrite`` clears exactly its files. A file no run recorded is
never removed nor replaced.

Every file is written under a temporary name beside its destination and
renamed into place (a rename within a folder is atomic), so an interrupted
run leaves whole files and no half-written one.
"""

import contextlib
import datetime
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

try:  # POSIX; elsewhere a run does not lock its folder
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

from ._version import __version__

__all__ = ["RECORD", "LOCK", "FolderInUseError", "OutputExistsError", "StaleLockWarning", "OutputFolder",
           "atomic_path", "check_output_file", "read_record"]

#: The record a run keeps of what it writes, in its output folder.
RECORD = ".sklearn-uflow-run.json"
#: The lock a run holds on its output folder while it writes.
LOCK = ".sklearn-uflow-run.lock"
_RECORD_FORMAT = "sklearn-uflow-run"


class OutputExistsError(FileExistsError):
    """The output path holds files this run may not remove or replace.

    A run removes or replaces only the files an earlier run recorded, and only
    when asked to; anything else in its way is refused before any work.

    See Also
    --------
    OutputFolder : Checks the folder.
    check_output_file : Checks one file.

    Examples
    --------
    >>> from sklearn_uflow.outputs import OutputExistsError
    >>> issubclass(OutputExistsError, FileExistsError)
    True"""


class FolderInUseError(OutputExistsError):
    """Another live run is writing into the output folder.

    Each run locks its output folder while it writes; a second run into the
    same folder is refused, its message naming the first run's process.

    See Also
    --------
    OutputFolder : Takes the lock.

    Examples
    --------
    >>> from sklearn_uflow.outputs import FolderInUseError, OutputExistsError
    >>> issubclass(FolderInUseError, OutputExistsError)
    True"""


class StaleLockWarning(UserWarning):
    """A run ended without releasing its folder's lock; the lock was taken over.

    The lock file names the process that held it; when that process is gone
    the run takes the folder over and says so, rather than refusing it.

    See Also
    --------
    OutputFolder : Takes the lock.
    FolderInUseError : A live run holds the lock.

    Examples
    --------
    >>> from sklearn_uflow.outputs import StaleLockWarning
    >>> issubclass(StaleLockWarning, UserWarning)
    True"""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Write a file whole or not at all.

    A context manager giving a temporary path beside ``path`` to write the
    content to; it is renamed to ``path`` when the block ends without error,
    and removed otherwise (Ctrl-C included). The file gets the permissions a
    new file would: 0o666 less the umask.

    Parameters
    ----------
    path : path-like
        The file to write.

    Yields
    ------
    temporary : str
        The path to write to.

    See Also
    --------
    OutputFolder : The folder the files go to.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_uflow.outputs import atomic_path
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with atomic_path(Path(folder) / "a.txt") as temporary:
    ...         _ = Path(temporary).write_text("whole")
    ...     print(Path(folder, "a.txt").read_text())
    whole
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _is_temporary_of(name, output):
    """Whether ``name`` is a temporary file of :func:`atomic_path` for ``output``."""
    return name.startswith(f".{output}.") and name.endswith(".part")


def _writable_folder(folder):
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write into {folder}")


def _names(paths, limit=3):
    paths = sorted(paths)
    return ", ".join(paths[:limit]) + (", ..." if len(paths) > limit else "")


def _refuse_inputs(output, inputs, what):
    """Refuse an output that is, or (for a folder) contains, one of the inputs."""
    resolved = Path(output).resolve()
    for path in map(Path, inputs):
        path = path.resolve()
        if path == resolved:
            raise ValueError(f"the output {what} {output} is an input of the run; choose another one")
        if resolved in path.parents:
            raise ValueError(f"the output {what} {output} contains {path}, an input of the run; choose another "
                             "folder")


def check_output_file(path, *, overwrite=False, replaceable=lambda path: False, inputs=()):
    """Check, before any work, that ``path`` can be written as a file.

    The file counterpart of :class:`OutputFolder`, for a run that writes one
    file (``fit -o``): everything that would refuse it is found before the
    work starts.

    Parameters
    ----------
    path : path-like
        The file to write.
    overwrite : bool, default=False
        Whether an existing file that ``replaceable`` accepts may be replaced.
    replaceable : callable, default=never
        Whether an existing file at ``path`` is one this kind of run writes
        (a model file, for ``fit``); any other file is never replaced.
    inputs : sequence of path-like, default=()
        The run's input files and folders: ``path`` may be none of them and
        lie in none of the folders.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and may not be replaced.
    ValueError
        If ``path`` is or lies in an input.
    OSError
        If its folder does not exist or cannot be written to, or ``path`` is
        a folder.

    See Also
    --------
    OutputFolder : The same for a folder of outputs.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_uflow.outputs import OutputExistsError, check_output_file
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     check_output_file(Path(folder) / "new.uflow")  # a new file: nothing to say
    ...     (Path(folder) / "notes.txt").touch()
    ...     try:
    ...         check_output_file(Path(folder) / "notes.txt", overwrite=True)
    ...     except OutputExistsError:
    ...         print("refused")
    refused
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name, e.g. {path / 'model.uflow'}")
    _writable_folder(path.parent.resolve())
    for folder in map(Path, inputs):
        if folder.resolve() == path.resolve() or folder.resolve() in path.resolve().parents:
            raise ValueError(f"{path} would be written among the run's inputs ({folder}); write it elsewhere")
    if path.exists():
        if not replaceable(path):
            raise OutputExistsError(f"{path} exists and was not written by sklearn-uflow; choose another name")
        if not overwrite:
            raise OutputExistsError(f"{path} exists; choose another name, or replace it with --overwrite")


def read_record(folder):
    """The record of the run that wrote into ``folder``, or None.

    The record is what lets a later run with ``overwrite`` remove this run's
    files and nothing else.

    Parameters
    ----------
    folder : path-like
        An output folder.

    Returns
    -------
    record : dict or None
        ``command``, ``library_version``, ``pid``, ``started``,
        ``finished`` (None while, or if, the run did not finish) and
        ``files``: each file's name and size in bytes (None until the run
        finished).

    Raises
    ------
    OutputExistsError
        If the folder holds a record that cannot be read.

    See Also
    --------
    OutputFolder : Writes the record.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn_uflow.outputs import read_record
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     print(read_record(folder))
    None
    """
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        files = record["files"]
        valid = (record.get("format") == _RECORD_FORMAT and isinstance(files, dict)
                 and all(isinstance(n, str) and "/" not in n and n not in ("", ".", "..")
                         and (s is None or isinstance(s, int)) for n, s in files.items()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise OutputExistsError(f"{path} is not a run record sklearn-uflow can read; choose another folder")
    return record


def _in_use(folder, pid):
    return FolderInUseError(f"{folder} is being written by another run (PID {pid}); wait for it to end, or choose "
                            "another folder")


def _lock_holder(folder):
    """The PID written in the folder's lock when a live process holds it, else None."""
    if fcntl is None:
        return None
    try:
        handle = os.open(Path(folder) / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(handle) or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None
    finally:
        os.close(handle)


def _pid_in(handle):
    os.lseek(handle, 0, os.SEEK_SET)
    text = os.read(handle, 64).decode(errors="replace").strip()
    return text if text.isdigit() else None


class _FolderLock:
    """An exclusive ``flock`` on the folder's lock file, which holds the PID.
    The kernel releases it when the process dies, so a lock file found
    unlocked is stale: it is reported and taken over."""

    def __init__(self, folder):
        self.path, self.handle = Path(folder) / LOCK, None
        if fcntl is None:  # pragma: no cover
            return
        while True:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, as any new file
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _pid_in(handle) or "unknown"
                os.close(handle)
                raise _in_use(folder, pid) from None
            # The file may have been removed by the holder that just released it: lock the one at the path.
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(handle), os.stat(self.path)):
                    break
            os.close(handle)
        stale = _pid_in(handle)
        if stale is not None:
            warnings.warn(f"{folder}: the run with PID {stale} ended without releasing its lock; taken over",
                          StaleLockWarning, stacklevel=3)
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        self.handle = handle

    def release(self):
        if self.handle is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self.handle)
            self.handle = None


class OutputFolder:
    """The output folder of one run.

    It is checked before any work (:meth:`check`); used as a context
    manager, it is locked and recorded while the run writes.

    Parameters
    ----------
    folder : path-like
        The folder. It need not exist; the nearest existing folder above it
        must be writable.
    outputs : iterable of str
        The names of the files the run writes there.
    inputs : iterable of path-like, default=()
        The run's input files and folders: the output folder may not be one
        of them, nor contain one.
    overwrite : bool, default=False
        Whether the files recorded by an earlier run in the folder may be
        removed, instead of the folder being refused.
    command : str or list of str, default=None
        What the record says wrote the files; by default ``sys.argv``.

    See Also
    --------
    read_record : What a run recorded.
    sklearn_uflow.batch.score_files : Writes its outputs through one.

    Examples
    --------
    >>> from sklearn_uflow.outputs import OutputFolder
    >>> folder = OutputFolder("out", ["results.csv"]).check()  # doctest: +SKIP
    >>> with folder:  # doctest: +SKIP
    ...     (folder.path / "results.csv").write_text("...")
    """

    def __init__(self, folder, outputs, *, inputs=(), overwrite=False, command=None):
        self.path = Path(folder)
        self.outputs = sorted(set(outputs))
        self.inputs = list(inputs)
        self.overwrite = overwrite
        self.command = command
        self._lock = None

    @property
    def is_open(self):
        """Whether the run holds the folder (inside its ``with`` block)."""
        return self._lock is not None

    def check(self):
        """Check that the run may write its outputs here, touching nothing.

        Returns
        -------
        self : OutputFolder
            The folder, checked.

        Raises
        ------
        FolderInUseError
            If a live run is writing into the folder.
        OutputExistsError
            If the folder holds files no run recorded, an earlier run's files
            without ``overwrite``, or recorded files changed since.
        ValueError
            If the folder is, or contains, one of the inputs.
        OSError
            If the folder is a file, or cannot be created or written to.
        """
        self._earlier_outputs(locked=False)
        return self

    def _earlier_outputs(self, locked):
        folder = self.path
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file, not an output folder")
        _refuse_inputs(folder, self.inputs, "folder")
        _writable_folder(folder if folder.exists() else next(p for p in folder.resolve().parents if p.exists()))
        if not folder.exists():
            return []
        pid = None if locked else _lock_holder(folder)
        if pid is not None:
            raise _in_use(folder, pid)
        record = read_record(folder)
        present = {p.name: p for p in folder.iterdir()}
        present.pop(RECORD, None)
        present.pop(LOCK, None)
        recorded = record["files"] if record else {}
        earlier = {name for name in present
                   if name in recorded or any(_is_temporary_of(name, r) for r in recorded)}
        foreign = set(present) - earlier
        if record is None and foreign:
            raise OutputExistsError(f"{folder} holds files that no sklearn-uflow run wrote ({_names(foreign)}); "
                                    "choose a new or empty folder")
        clashes = foreign & set(self.outputs)
        if clashes:
            raise OutputExistsError(f"{folder} holds {_names(clashes)}, which this run writes and no run "
                                    "recorded; choose a new or empty folder")
        if earlier and not self.overwrite:
            raise OutputExistsError(f"{folder} holds the outputs of an earlier run ({len(earlier)} files, listed in "
                                    f"{RECORD}); choose another folder, or remove exactly those with --overwrite "
                                    "(overwrite=True)")
        for name in sorted(earlier):
            path, size = present[name], recorded.get(name)
            if path.is_symlink() or not path.is_file() or (size is not None and path.stat().st_size != size):
                raise OutputExistsError(f"{path} was changed after the run that wrote it; move it away first")
        return [present[name] for name in sorted(earlier)]

    def __enter__(self):
        self.check()  # before creating anything: the lock file must not be made in an input folder
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = _FolderLock(self.path)
        try:
            # Checked again under the lock: another run may have written here since.
            for path in self._earlier_outputs(locked=True):
                path.unlink()
            self._write_record(finished=False)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None:
                self._write_record(finished=True)
        finally:
            self._release()

    def _release(self):
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _write_record(self, finished):
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        if finished:
            files = {name: (self.path / name).stat().st_size for name in self.outputs
                     if (self.path / name).is_file()}
        else:
            files = dict.fromkeys(self.outputs)
            self._started = now
        command = self.command if self.command is not None else sys.argv
        record = {"format": _RECORD_FORMAT, "library_version": __version__,
                  "command": command if isinstance(command, str) else list(map(str, command)),
                  "pid": os.getpid(), "started": self._started, "finished": now if finished else None,
                  "files": files}
        with atomic_path(self.path / RECORD) as temporary:
            Path(temporary).write_text(json.dumps(record, indent=1) + "\n")
