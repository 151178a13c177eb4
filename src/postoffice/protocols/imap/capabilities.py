"""The IMAP extensions this grammar understands.

The server builds its CAPABILITY response (it decides e.g. STARTTLS,
LOGINDISABLED, AUTH=... and APPENDLIMIT=n per connection); this set lists the
extension names whose *syntax* ``parse_command`` supports.
"""

from __future__ import annotations

__all__ = ["SUPPORTED_EXTENSIONS", "ENABLEABLE"]

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset({
    "IMAP4rev1",        # RFC 3501
    "IMAP4rev2",        # RFC 9051
    "IDLE",             # RFC 2177
    "CONDSTORE",        # RFC 7162
    "QRESYNC",          # RFC 7162
    "UIDPLUS",          # RFC 4315
    "MOVE",             # RFC 6851
    "SPECIAL-USE",      # RFC 6154
    "CREATE-SPECIAL-USE",  # RFC 6154 section 3
    "LIST-EXTENDED",    # RFC 5258
    "LIST-STATUS",      # RFC 5819
    "STATUS=SIZE",      # RFC 8438
    "ESEARCH",          # RFC 4731
    "SEARCHRES",        # RFC 5182
    "LITERAL+",         # RFC 7888
    "LITERAL-",         # RFC 7888
    "SASL-IR",          # RFC 4959
    "ENABLE",           # RFC 5161
    "ID",               # RFC 2971
    "NAMESPACE",        # RFC 2342
    "UNSELECT",         # RFC 3691
    "QUOTA",            # RFC 9208
    "MULTIAPPEND",      # RFC 3502
    "BINARY",           # RFC 3516
    "UTF8=ACCEPT",      # RFC 6855
    "WITHIN",           # RFC 5032
    "APPENDLIMIT",      # RFC 7889 (advertised as APPENDLIMIT=n)
    "SORT",             # RFC 5256
    "SORT=DISPLAY",     # RFC 5957
    "THREAD=ORDEREDSUBJECT",  # RFC 5256
    "THREAD=REFERENCES",      # RFC 5256
    "ESORT",            # RFC 5267 section 3
    "COMPRESS=DEFLATE",  # RFC 4978
    "CONTEXT=SEARCH",   # RFC 5267 section 4
    "CONTEXT=SORT",     # RFC 5267 section 4
    "CATENATE",         # RFC 4469 (URLs to the user's own messages)
    "URLAUTH",          # RFC 4467 (GENURLAUTH, URLFETCH, RESETKEY)
    "URLAUTH=BINARY",   # RFC 5524 (URLFETCH BODY, BINARY, BODYPARTSTRUCTURE)
    "METADATA",         # RFC 5464
    "METADATA-SERVER",  # RFC 5464
    "NOTIFY",           # RFC 5465
    "UIDBATCHES",       # RFC 10022
})

#: Capabilities a client may ENABLE (RFC 5161) that change the protocol.
ENABLEABLE: frozenset[str] = frozenset({"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"})
