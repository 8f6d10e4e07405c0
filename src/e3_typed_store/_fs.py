"""Filesystem helpers: containment checks and atomic placement of files."""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import threading
from collections.abc import Generator
from contextlib import contextmanager

from e3_typed_store._types import override

__all__ = [
    "MAX_NAME_BYTES",
    "SAFE_COMPONENT_FORMS",
    "RemovalsFailedError",
    "SparseWriter",
    "create_unnamed",
    "is_within",
    "noting_published",
    "place_in",
    "publish",
    "raise_removals_failed",
    "remove_temp",
    "safe_component",
    "safe_file_name",
    "unique_temp_name",
]


class RemovalsFailedError(OSError):
    """Removals failed; each is in :attr:`problems`, already logged."""

    def __init__(self, problems: list[str]) -> None:
        if len(problems) == 1:
            super().__init__(problems[0])
        else:
            # No count: one problem may name several paths (a cache's clear).
            super().__init__("removals failed: " + "; ".join(problems))
        self.problems = problems

    @override
    def __reduce__(self) -> tuple[type[RemovalsFailedError], tuple[list[str]]]:
        # Rebuilt from its list (OSError's own would pass the message).
        return (type(self), (self.problems,))


def raise_removals_failed(failed: list[OSError]) -> None:
    """Raise what *failed*, if anything: the one error itself, or a
    :class:`RemovalsFailedError` naming each of several."""
    if len(failed) == 1:
        raise failed[0]
    if failed:
        raise RemovalsFailedError([str(exc) for exc in failed])


# Lower case only: on a case-insensitive filesystem (macOS' and Windows'
# defaults) "Foo" and "foo" would be one file.
_SAFE_COMPONENT = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")

#: Every name :func:`safe_component` gives, or gave: early builds kept upper
#: case too. A file or directory of a cache named otherwise is not the
#: package's, and is left alone.
SAFE_COMPONENT_FORMS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}|_[0-9a-f]{64}")

#: The longest file name taken from outside (a server, a URL, a query), in bytes
#: of UTF-8.
MAX_NAME_BYTES = 255
# The longest path Linux takes, its NUL included (PATH_MAX): unnamed files,
# which only Linux has, are published under a path shorter than this.
_PATH_MAX = 4096
# The longest name of a directory entry most filesystems take, in bytes
# (NAME_MAX; ext4, XFS, btrfs, APFS, tmpfs): a temporary name stays within it.
_NAME_MAX = 255
# Characters that are not portable in a file name (Windows forbids them) on
# top of the path separators and the control characters.
_FORBIDDEN_CHARACTERS = frozenset('<>:"|?*')
# Unicode categories refused in a file name: control, format, surrogate,
# private use and unassigned characters, and line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    # Superscript digits too: Windows reserves COM¹, COM², COM³ and LPT¹...
    | {f"{port}{digit}" for port in ("com", "lpt") for digit in "0123456789¹²³"}
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
    bidirectional overrides...), a line or paragraph separator or one of
    ``<>:"|?*``, is a Windows device name (``CON``, ``nul .tar``), or is
    longer than :data:`MAX_NAME_BYTES` bytes in UTF-8.

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
        if unicodedata.category(character) in _REFUSED_CATEGORIES:
            return None
    # Windows drops the spaces that end a stem: "CON .txt" is CON too.
    if name.split(".", 1)[0].rstrip(" ").lower() in _WINDOWS_DEVICES:
        return None
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return None
    return name


def unique_temp_name(directory: str, base: str) -> str:
    """Return a path in *directory* that no other process or thread will pick.

    The name is ``.<base>.<pid>.<32 hex digits>.tmp``, and always one a
    filesystem accepts: *base* is cut short (by whole characters) when the
    name would exceed :data:`_NAME_MAX` bytes, as it would for a file name of
    :data:`MAX_NAME_BYTES` bytes. What makes it unique is never cut.

    :param directory: where the temporary file will live
    :param base: a readable stem, kept for people looking at the directory
    """
    unique = f".{os.getpid()}.{os.urandom(16).hex()}.tmp"
    room = _NAME_MAX - _size(unique) - 1  # 1: the leading dot
    return os.path.join(directory, f".{_cut_to(base, room)}{unique}")


def _cut_to(text: str, room: int) -> str:
    """Return the longest start of *text* that takes at most *room* bytes.

    Cut between characters, never inside one. Sizes are those of UTF-8 (a lone
    surrogate counted as 3 bytes), at least those of the name on disk.
    """
    if _size(text) <= room:
        return text
    used = 0
    for index, character in enumerate(text):
        used += _size(character)
        if used > room:
            return text[:index]
    return text


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
_O_BINARY: int = getattr(os, "O_BINARY", 0)
_O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY: int = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
# What open(O_TMPFILE) answers where a filesystem has no unnamed files (FAT,
# NFS: EOPNOTSUPP) or the kernel does not know the flag (EISDIR: it opened the
# directory itself).
_NO_UNNAMED_FILES = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
_COPY_CHUNK = 1 << 20
# A run of zeros shorter than this is written: a hole is made of whole blocks.
_SPARSE_MINIMUM = 64 << 10


def _unnamed_files() -> bool:
    """Tell whether a file made with ``O_TMPFILE`` can be given a name later.

    It takes a link from ``/proc/self/fd``: without /proc mounted, such a file
    could never be published.
    """
    return bool(_O_TMPFILE) and _proc_fd_links()


@functools.cache
def _proc_fd_links() -> bool:
    return os.path.isdir("/proc/self/fd")


def create_unnamed(
    directory: str, stem: str, flags: int, mode: int = 0o666
) -> tuple[int, str | None]:
    """Open a new, empty file in *directory*, of *mode* less the umask and
    less the set-user-ID, set-group-ID and sticky bits, as ``cp`` makes one.

    Where the system allows it (Linux, on the usual local filesystems), the file
    has no name until :func:`publish` gives it one, so that a process killed
    while writing it leaves nothing behind. Elsewhere it is made under a
    :func:`unique_temp_name` of *stem*, which the caller removes if it never
    publishes the file.

    :param directory: where the file will be published
    :param stem: a readable stem for the temporary name, if one is needed
    :param flags: the access mode, ``os.O_WRONLY`` or ``os.O_RDWR``
    :param mode: its permission bits, before the umask
    :return: the descriptor, and the temporary name (None when there is none)
    :raises OSError: the file cannot be made (FileNotFoundError: no *directory*)
    """
    mode &= 0o777  # a mirror's setuid file is no setuid copy of root's
    if _unnamed_files():
        try:
            return os.open(directory or ".", flags | _O_TMPFILE, mode), None
        except OSError as exc:
            if exc.errno not in _NO_UNNAMED_FILES:
                raise
    temp = unique_temp_name(directory, stem)
    fd = os.open(temp, flags | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_BINARY, mode)
    return fd, temp


# What publish() gave a name to, per thread, while noting_published() notes it.
_NOTES = threading.local()


@contextmanager
def noting_published() -> Generator[dict[str, os.stat_result]]:
    """Note what :func:`publish` gives a name to in this thread, while in the block.

    The mapping yielded fills with each target path, as given to
    :func:`publish`, and the state of the file it named (``fstat`` of the
    descriptor, taken before the name was given). A driver verifies the file
    it publishes: the state tells that file from one put at the same path by
    another writer since.
    """
    outer: dict[str, os.stat_result] | None = getattr(_NOTES, "published", None)
    published: dict[str, os.stat_result] = {}
    _NOTES.published = published
    try:
        yield published
    finally:
        _NOTES.published = outer


def publish(fd: int, temp: str | None, target: str) -> None:
    """Give the file of *fd*, made by :func:`create_unnamed`, the path *target*.

    Atomically: a file already there is replaced, and a reader sees either it or
    the new one whole. *fd* is closed in every case. A file with a temporary
    name is closed before it is renamed, so that an error the close reports (a
    write-back failure) keeps it from being published.

    :param fd: the descriptor :func:`create_unnamed` returned
    :param temp: the temporary name it returned
    :param target: the path to give the file
    :raises OSError: the file cannot be published (a temporary name is then the
        caller's to remove)
    """
    published: dict[str, os.stat_result] | None = getattr(_NOTES, "published", None)
    if published is not None:
        try:
            published[target] = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
    if temp is not None:
        os.close(fd)
        os.replace(temp, target)
        return
    try:
        if len(os.fsencode(target)) >= _PATH_MAX:
            # Linked through a directory descriptor, the file would get a
            # path nobody can open by.
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), target)
        directory, name = os.path.split(target)
        # linkat() with AT_SYMLINK_FOLLOW names the open file itself; os.link
        # calls it (rather than link(), which would refuse a link across
        # filesystems to /proc) only when given a directory descriptor.
        dir_fd = os.open(directory or ".", _O_DIRECTORY)
        try:
            _link_named(f"/proc/self/fd/{fd}", name, dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        os.close(fd)


def remove_temp(temp: str | None) -> None:
    """Remove the temporary name :func:`create_unnamed` gave a file, if any.

    For a file that will not be published; an unnamed one goes with its
    descriptor.
    """
    if temp is None:
        return
    try:
        os.unlink(temp)
    except FileNotFoundError:
        pass


def _link_named(source: str, name: str, dir_fd: int) -> None:
    try:
        os.link(source, name, dst_dir_fd=dir_fd)  # the common case: a new name
    except FileExistsError:
        # A link cannot replace a file: link under a temporary name, then
        # rename, as atomic as a rename alone.
        temp = os.path.basename(unique_temp_name("", name))
        os.link(source, temp, dst_dir_fd=dir_fd)
        try:
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            raise


def place_in(source: str, directory: str, name: str) -> str:
    """Make *source* appear as *directory*/*name*, atomically.

    A hard link when the filesystem allows one, a copy otherwise; either way a
    reader never sees a partial file. A copy is written into a file that has no
    name until it is whole where the system allows (:func:`create_unnamed`), so
    that a process killed while copying leaves nothing. An existing file of that
    name is replaced.

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
        os.link(source, temp)
    except OSError:
        _copy_to(source, target)  # no link possible (another filesystem)
        return target
    try:
        os.replace(temp, target)
    finally:
        # Gone once renamed, except when another process placed the same
        # file under that name meanwhile: rename(2) then leaves both links.
        remove_temp(temp)
    return target


class SparseWriter:
    """Writes a file's content in turn, leaving a hole where a chunk is all
    zeros, as ``cp`` does: a sparse file of a gigabyte with a few kilobytes of
    data is copied as such, not written out in full (which can fill a disk).

    :param fd: a new, empty file open for writing, at offset 0
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._end = 0
        self._zeros = b""  # made on the first piece that may be a hole
        self._hole = 0  # zeros received and not written yet

    def write(self, chunk: memoryview) -> None:
        """Append *chunk*, leaving holes for its runs of zeros.

        The file is looked at in pieces of 64 KiB at multiples of 64 KiB,
        whatever the chunks' sizes, and the zeros of consecutive pieces add
        up: a run of zeros that covers at least 64 KiB of such pieces becomes
        a hole, a shorter one is written.

        :raises OSError: the file cannot be written
        """
        data: int | None = None  # where the run of data being looked at starts
        start = 0
        while start < len(chunk):
            # To the next multiple of the piece size, counted in the file.
            stop = start + _SPARSE_MINIMUM - (self._end + start) % _SPARSE_MINIMUM
            piece = chunk[start:stop]
            if self._all_zeros(piece):
                if data is not None:
                    self._write(chunk[data:start])
                    data = None
                self._hole += len(piece)
            elif data is None:
                self._skip_hole()
                data = start
            start = stop
        if data is not None:
            self._write(chunk[data:])
        self._end += len(chunk)

    def _write(self, data: memoryview) -> None:
        while data:
            data = data[os.write(self._fd, data) :]

    def _skip_hole(self) -> None:
        if self._hole >= _SPARSE_MINIMUM:
            os.lseek(self._fd, self._hole, os.SEEK_CUR)
        elif self._hole:
            self._write(memoryview(self._zeros)[: self._hole])
        self._hole = 0

    def _all_zeros(self, chunk: memoryview) -> bool:
        # Its ends first: data rarely starts and ends with a zero byte, and a
        # whole look costs a copy. Then against zeros made once (a
        # memoryview's own comparison goes byte by byte in Python).
        if chunk[0] != 0 or chunk[-1] != 0:
            return False
        if not self._zeros:
            self._zeros = bytes(_SPARSE_MINIMUM)
        return chunk.tobytes() == self._zeros[: len(chunk)]

    def finish(self) -> None:
        """Give the file its whole size, a final hole included.

        :raises OSError: the file cannot be written
        """
        if not self._hole:
            return
        try:
            os.ftruncate(self._fd, self._end)  # the rest is a hole
        except OSError:
            # A filesystem that sets no size this way (FAT through FUSE):
            # the zeros, written.
            if not self._zeros:
                self._zeros = bytes(_SPARSE_MINIMUM)
            while self._hole:
                size = min(self._hole, _SPARSE_MINIMUM)
                self._write(memoryview(self._zeros)[:size])
                self._hole -= size
        self._hole = 0


def _copy_to(source: str, target: str) -> None:
    """Copy *source* to *target* through a file unnamed until it is whole."""
    directory, name = os.path.split(target)
    with open(source, "rb", buffering=0) as reader:
        # The source's permission bits (less the umask), as cp gives them.
        mode = stat.S_IMODE(os.fstat(reader.fileno()).st_mode)
        fd, temp = create_unnamed(directory, name, os.O_WRONLY, mode)
        try:
            writer = SparseWriter(fd)
            buffer = memoryview(bytearray(_COPY_CHUNK))
            while size := reader.readinto(buffer):
                writer.write(buffer[:size])
            writer.finish()
        except BaseException:
            os.close(fd)
            remove_temp(temp)
            raise
    try:
        publish(fd, temp, target)
    except BaseException:
        remove_temp(temp)
        raise
