"""Filesystem helpers: containment checks and atomic placement of files."""

from __future__ import annotations

import os
import re

__all__ = ["is_within", "place_in", "safe_component", "unique_temp_name"]

_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def is_within(path: str, directory: str) -> bool:
    """Tell whether *path* lies inside *directory* once links are resolved.

    :param path: the path to check
    :param directory: the directory that should contain it
    """
    real_dir = os.path.realpath(directory)
    real_path = os.path.realpath(path)
    return (
        real_path != real_dir and os.path.commonpath([real_dir, real_path]) == real_dir
    )


def safe_component(text: str) -> str:
    """Return a single path component standing for *text*, safe on any filesystem.

    A short name of letters, digits, ``.``, ``_`` and ``-`` that starts with a
    letter or digit is kept as it is; anything else becomes ``_`` and the
    sha256 of the text, which no kept name can equal (kept names never start
    with ``_``).

    :param text: any string, a uid for instance
    """
    if _SAFE_COMPONENT.fullmatch(text) and not text.endswith("."):
        return text
    import hashlib  # here: only unusual uids need it, and it is slow to import

    return "_" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def unique_temp_name(directory: str, base: str) -> str:
    """Return a path in *directory* that no other process or thread will pick.

    :param directory: where the temporary file will live
    :param base: a readable stem, kept for people looking at the directory
    """
    return os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(16).hex()}.tmp")


def place_in(source: str, directory: str, name: str) -> str:
    """Make *source* appear as *directory*/*name*, atomically.

    A hard link when the filesystem allows one, a copy otherwise; either way the
    file is built under a temporary name and renamed into place, so a reader
    never sees a partial file. An existing file of that name is replaced.

    :param source: the file to place
    :param directory: the directory to place it in (created if missing)
    :param name: the base name it gets there
    :return: the path of the placed file
    """
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, name)
    if os.path.exists(target) and os.path.samefile(source, target):
        return target
    temp = unique_temp_name(directory, name)
    try:
        try:
            os.link(source, temp)
        except OSError:
            import shutil  # here: a hard link is the common case

            shutil.copyfile(source, temp)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    return target
