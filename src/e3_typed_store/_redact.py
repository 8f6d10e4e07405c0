"""Keeping the credentials written into URLs out of messages and logs.

A URL may carry a secret before its host: ``https://user:password@host/``,
or a token alone, ``https://token@host/``. Whatever the library shows of a
URL (an error's message, a log line, a ``repr``) goes through
:func:`hide_credentials` first, so that CI logs and bug reports do not
collect the secret. The user name stays, as pip and git show it; a lone token
is hidden whole. The query string is shown as written.
"""

from __future__ import annotations

import re

__all__ = ["HIDDEN", "hide_credentials", "hide_url_credentials", "one_line"]

HIDDEN = "***"

# The user information of a URL: what lies between "//" and the last "@"
# before the path, the query or the fragment. The greedy class backtracks to
# that last "@", as urlsplit takes it, so that "a@b@host" hides "a@b" whole.
_USERINFO = re.compile(r"(?<=//)([^/?#\s]*)@")


def _hidden(match: re.Match[str]) -> str:
    user, colon, _secret = match.group(1).partition(":")
    return f"{user}:{HIDDEN}@" if colon else f"{HIDDEN}@"


def hide_credentials(text: str) -> str:
    """Return *text* with the credentials of the URLs in it hidden.

    ``http://user:pw@host/x`` becomes ``http://user:***@host/x`` and
    ``http://token@host/x`` becomes ``http://***@host/x``, wherever they stand
    in *text*: a URL alone, or a message that quotes one. Text without ``@``
    is returned as it is, at the cost of one search.

    :param text: a URL, or any text that may quote URLs
    """
    if "@" not in text:
        return text
    return _USERINFO.sub(_hidden, text)


def hide_url_credentials(url: str) -> str:
    """Return *url*, a string meant as one URL, with its credentials hidden.

    Stricter than :func:`hide_credentials`, for a URL that may be malformed
    (an error says what is wrong with it), or a text that quotes one (the
    ``repr`` of a list of them): everything between the start of the first
    URL's authority and the last ``@`` is taken for credentials, a password
    holding an unencoded ``/``, ``?``, ``#`` or space too. The authority starts
    after ``//``, or after ``scheme:`` and any slashes or backslashes, as
    browsers read ``http:user:pw@host``. The user name stays when it is one
    (no such character in it). Hiding too much is the price of never
    showing a secret.

    :param url: the URL, as given
    """
    at = url.rfind("@")
    if at < 0:
        return url
    found = _AUTHORITY.search(url, 0, at)
    start = found.end() if found is not None else 0
    user, colon, _secret = url[start:at].partition(":")
    if colon and user and not _NOT_IN_A_USER.search(user):
        return f"{url[:start]}{user}:{HIDDEN}{url[at:]}"
    return f"{url[:start]}{HIDDEN}{url[at:]}"


# Where a URL's authority starts: after "//", or after "scheme:" and any
# slashes or backslashes.
_AUTHORITY = re.compile(r"//|\b[A-Za-z][A-Za-z0-9+.-]*:[/\\]*")
_NOT_IN_A_USER = re.compile(r"[/?#\s'\"\[\]{}]")


def one_line(text: str) -> str:
    """*text* as one line of a terminal: each line break (where
    ``str.splitlines`` breaks), with the white space around it, as one space;
    any other character that Python does not count as printable (an escape
    sequence's ESC, a tab, a bidirectional override, a no-break space) as its
    backslash escape (``\\x1b``), so that it reaches no terminal; the rest as it is,
    runs of spaces included (a path shown is the path). The surrogates that
    stand for bytes of no text in a path (surrogateescape) stay, for the
    output to write back as those bytes."""
    joined = " ".join(kept for line in text.splitlines() if (kept := line.strip()))
    if joined.isprintable():
        return joined
    return "".join(
        char
        if char.isprintable() or "\udc80" <= char <= "\udcff"
        else char.encode("unicode_escape").decode("ascii")
        for char in joined
    )
