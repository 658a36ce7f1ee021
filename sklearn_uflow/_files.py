"""Output files a person can trust: one run per folder, each file whole or absent.

Every file is written under a temporary name beside its destination and
renamed into place (a rename within a folder is atomic), so an interrupted
run leaves whole files and no half-written one. A run's summary files are
written last, so that their presence means it finished. A folder that holds
another run's outputs is refused unless the caller asks to overwrite them,
and then those outputs are removed first.
"""

import contextlib
import fnmatch
import os
import tempfile
from pathlib import Path

__all__ = ["OUTPUT_PATTERNS", "OutputExistsError", "atomic_path", "check_output_dir", "check_output_file",
           "prepare_output_dir"]

#: What a run writes into its folder (``predict``, ``run``, ``evaluate -o``,
#: :func:`~sklearn_uflow.batch.score_files`), and the temporary names of
#: files being written.
OUTPUT_PATTERNS = ("results.csv", "report.html", "model.uflow", "*_map.png", "*_mask.png", "*_overlay.png",
                   ".*.part")


class OutputExistsError(FileExistsError):
    """The output folder holds another run's outputs."""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path to write ``path``'s content to; renamed to ``path``
    when the block ends without error, removed otherwise (Ctrl-C included).
    The file gets the permissions a new file would: 0o666 less the umask."""
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


def _writable_folder(folder):
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write into {folder}")


def check_output_file(path):
    """Check, before any work, that ``path`` can be written as a file.

    Raises
    ------
    OSError
        If its folder does not exist or cannot be written to, or ``path`` is
        a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name, e.g. {path / 'model.uflow'}")
    _writable_folder(path.parent.resolve())


def earlier_outputs(folder):
    """The files of ``folder`` that a run writes (:data:`OUTPUT_PATTERNS`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and any(fnmatch.fnmatchcase(p.name, pattern) for pattern in OUTPUT_PATTERNS))


def check_output_dir(folder, overwrite=False):
    """Check, before any work and without touching anything, that ``folder``
    can take a run's outputs.

    Parameters
    ----------
    folder : path-like
        The output folder; it need not exist, but the nearest existing folder
        above it must be writable.
    overwrite : bool, default=False
        Whether another run's outputs found there (:data:`OUTPUT_PATTERNS`)
        may be removed, instead of the folder being refused.

    Returns
    -------
    earlier : list of pathlib.Path
        The earlier run's files, which :func:`prepare_output_dir` removes.

    Raises
    ------
    OutputExistsError
        If the folder holds another run's outputs and ``overwrite`` is False.
    OSError
        If the folder is a file, or cannot be created or written to.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not an output folder")
    _writable_folder(folder if folder.exists() else next(p for p in folder.resolve().parents if p.exists()))
    earlier = earlier_outputs(folder)
    if earlier and not overwrite:
        names = ", ".join(p.name for p in earlier[:3]) + (", ..." if len(earlier) > 3 else "")
        raise OutputExistsError(f"{folder} holds another run's outputs ({len(earlier)} files: {names}); choose "
                                "another folder, or replace them with --overwrite (overwrite=True)")
    return earlier


def prepare_output_dir(folder, overwrite=False):
    """Make ``folder`` ready for a run's outputs: :func:`check_output_dir`,
    then create it (with its parents) and remove the earlier run's outputs.
    Other files are left alone.

    Returns
    -------
    folder : pathlib.Path
    """
    folder = Path(folder)
    earlier = check_output_dir(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    for path in earlier:
        path.unlink()
    return folder
