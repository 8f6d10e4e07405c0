"""Filesystem helpers: containment checks and atomic placement of files."""

from __future__ import annotations

import os
import re

__all__ = [
    "MAX_NAME_BYTES",
    "SAFE_COMPONENT_FORMS",
    "is_within",
    "place_in",
    "safe_component",
    "safe_file_name",
    "unique_temp_name",
]

# Lower case only: on a case-insensitive filesystem (macOS' and Windows'
# defaults) "Foo" and "foo" would be one file.
_SAFE_COMPONENT = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")

#: Every name :func:`safe_component` gives, or gave: version 0.1.0 kept upper
#: case too. A file or directory of a cache named otherwise is not the
#: package's, and is left alone.
SAFE_COMPONENT_FORMS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}|_[0-9a-f]{64}")

#: The longest file name taken from outside (a server, a URL, a query), in bytes
#: of UTF-8.
MAX_NAME_BYTES = 255
# Characters that are not portable in a file name (Windows forbids them) on
# top of the path separators and the control characters.
_FORBIDDEN_CHARACTERS = frozenset('<>:"|?*')
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"com{digit}" for digit in range(10)}
    | {f"lpt{digit}" for digit in range(10)}
)


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

    A short name of lower-case letters, digits, ``.``, ``_`` and ``-`` that
    starts with a letter or digit is kept as it is; anything else becomes
    ``_`` and the sha256 of the text, which no kept name can equal (kept names
    never start with ``_``). Upper case is not kept: two texts that differ only
    in case must not name one file on a case-insensitive filesystem; nor is a
    Windows device name (``con``, ``nul.json``...), which names no file there.

    :param text: any string, a uid for instance
    """
    if (
        _SAFE_COMPONENT.fullmatch(text)
        and not text.endswith(".")
        and text.split(".", 1)[0] not in _WINDOWS_DEVICES
    ):
        return text
    import hashlib  # here: only unusual uids need it, and it is slow to import

    return "_" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def safe_file_name(candidate: str) -> str | None:
    """Reduce a name that came from outside to a safe base name, or None.

    The name is cut to what follows its last ``/`` or ``\\`` (so ``../x``,
    ``/etc/passwd`` and ``C:\\x`` give ``x``, ``passwd`` and ``x``); the result
    is refused when it is empty, ``.`` or ``..``, has leading or trailing
    white space or a trailing dot, holds a control or format character (NUL,
    bidirectional overrides...) or one of ``<>:"|?*``, is a Windows device
    name, or is longer than :data:`MAX_NAME_BYTES` bytes in UTF-8.

    :param candidate: a file name suggested by a server or a URL
    :return: a name that is one path component inside any directory, or None
    """
    import unicodedata  # here: the base module's import stays light

    name = re.split(r"[/\\]", candidate)[-1]
    if name in {"", ".", ".."} or name != name.strip() or name.endswith("."):
        return None
    for character in name:
        if character in _FORBIDDEN_CHARACTERS:
            return None
        if unicodedata.category(character).startswith("C"):
            return None
    if name.split(".", 1)[0].lower() in _WINDOWS_DEVICES:
        return None
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return None
    return name


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
    target = os.path.join(directory, name)
    # The common case first: no file of that name yet, and a hard link allowed.
    # A link appears whole at once, so it needs no temporary name.
    try:
        os.link(source, target)
    except FileNotFoundError:
        if not os.path.exists(source):
            raise
        os.makedirs(directory, exist_ok=True)
        # A directory just made holds no file of that name: link again.
        try:
            os.link(source, target)
        except OSError:
            pass  # made and filled meanwhile, or no link possible: the general way
        else:
            return target
    except OSError:
        pass  # the name is taken, or no link is possible: the general way
    else:
        return target
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
