"""Test-only reader for IMAP s-expressions and an ABNF shape check for ENVELOPE / body.

Independent of the code under test: it reads the wire bytes back (quoted strings, literals,
NIL, numbers, lists) and checks them against RFC 9051 section 9 productions.
"""

from __future__ import annotations

import re

_NUM = re.compile(rb"\d+")
_ATOM = re.compile(rb"[^\s()\"{]+")


class Nil:
    def __repr__(self) -> str:
        return "NIL"


NIL = Nil()


def read(data: bytes):
    """Parse one s-expression; returns (value, rest)."""
    pos = 0

    def value(i):
        c = data[i : i + 1]
        if c == b"(":
            items = []
            i += 1
            while True:
                if data[i : i + 1] == b")":
                    return items, i + 1
                if data[i : i + 1] == b" ":
                    i += 1
                    continue
                v, i = value(i)
                items.append(v)
        if c == b'"':
            out = bytearray()
            i += 1
            while data[i : i + 1] != b'"':
                if data[i : i + 1] == b"\\":
                    i += 1
                    assert data[i : i + 1] in (b'"', b"\\"), "bad quoted-pair"
                ch = data[i]
                assert ch not in (10, 13, 0) and ch < 0x80, "illegal char in quoted"
                out.append(ch)
                i += 1
            return bytes(out), i + 1
        if c == b"{":
            j = data.index(b"}", i)
            n = int(data[i + 1 : j])
            assert data[j + 1 : j + 3] == b"\r\n", "literal needs CRLF"
            start = j + 3
            assert len(data) >= start + n
            return data[start : start + n], start + n
        m = _ATOM.match(data, i)
        assert m, f"junk at {i}: {data[i:i+20]!r}"
        tok = m.group(0)
        if tok == b"NIL":
            return NIL, m.end()
        assert _NUM.fullmatch(tok), f"unexpected atom {tok!r}"
        return int(tok), m.end()

    v, pos = value(0)
    return v, data[pos:]


def parse(data: bytes):
    v, rest = read(data)
    assert rest == b"", rest
    return v


def _nstring(x):
    assert x is NIL or isinstance(x, bytes), x


def _string(x):
    assert isinstance(x, bytes), x


def check_address_list(x):
    if x is NIL:
        return
    assert isinstance(x, list) and x
    for a in x:
        assert isinstance(a, list) and len(a) == 4
        for f in a:
            _nstring(f)


def check_envelope(env):
    assert isinstance(env, list) and len(env) == 10, env
    _nstring(env[0])
    _nstring(env[1])
    for k in range(2, 8):
        check_address_list(env[k])
    _nstring(env[8])
    _nstring(env[9])


def _params(x):
    if x is NIL:
        return
    assert isinstance(x, list) and x and len(x) % 2 == 0
    for s in x:
        _string(s)


def _dsp(x):
    if x is NIL:
        return
    assert isinstance(x, list) and len(x) == 2
    _string(x[0])
    _params(x[1])


def _lang(x):
    if isinstance(x, list):
        assert x
        for s in x:
            _string(s)
    else:
        _nstring(x)


def check_body(b, ext: bool, depth: int = 0):
    """Validate the `body` production; returns a count of parts."""
    assert depth < 200
    assert isinstance(b, list) and b
    if isinstance(b[0], list):  # body-type-mpart: 1*body SP media-subtype [SP body-ext-mpart]
        k = 0
        n = 0
        while k < len(b) and isinstance(b[k], list):
            n += check_body(b[k], ext, depth + 1)
            k += 1
        _string(b[k])
        rest = b[k + 1 :]
        if ext:
            assert len(rest) == 4, rest
            _params(rest[0])
            _dsp(rest[1])
            _lang(rest[2])
            _nstring(rest[3])
        else:
            assert rest == []
        return n
    typ, sub = b[0], b[1]
    _string(typ)
    _string(sub)
    _params(b[2])
    _nstring(b[3])
    _nstring(b[4])
    _string(b[5])
    assert isinstance(b[6], int)
    k = 7
    if typ.upper() == b"MESSAGE" and sub.upper() in (b"RFC822", b"GLOBAL"):
        check_envelope(b[7])
        check_body(b[8], ext, depth + 1)
        assert isinstance(b[9], int)
        k = 10
    elif typ.upper() == b"TEXT":
        assert isinstance(b[7], int)
        k = 8
    rest = b[k:]
    if ext:
        assert len(rest) == 4, rest
        _nstring(rest[0])
        _dsp(rest[1])
        _lang(rest[2])
        _nstring(rest[3])
    else:
        assert rest == []
    return 1
