"""The IMAP grammar, one module per production family (no I/O).

* ``reader``       atoms, strings, literals, numbers, dates (the lexical layer)
* ``sequence_set`` sequence sets and ``$``
* ``search``       SEARCH key AST
* ``fetch_att``    FETCH items and body sections
* ``utf7``         modified UTF-7 and mailbox name decoding
"""

from .fetch_att import FETCH_MACROS, FetchAtt, Section
from .reader import ParseError, Reader
from .search import (
    MAX_SEARCH_DEPTH, SearchAll, SearchAnd, SearchBody, SearchDate, SearchFlag, SearchHeader,
    SearchKey, SearchModSeq, SearchNew, SearchNot, SearchOld, SearchOlder, SearchOr, SearchSeqSet,
    SearchSize, SearchText, SearchUid, SearchYounger,
)
from .sequence_set import SequenceSet, compress_uids
from .utf7 import InvalidMailboxName, decode_mailbox_name, encode_mailbox_name, utf7_decode, utf7_encode

__all__ = [
    "FETCH_MACROS", "FetchAtt", "Section", "ParseError", "Reader", "MAX_SEARCH_DEPTH",
    "SearchAll", "SearchAnd", "SearchBody", "SearchDate", "SearchFlag", "SearchHeader",
    "SearchKey", "SearchModSeq", "SearchNew", "SearchNot", "SearchOld", "SearchOlder",
    "SearchOr", "SearchSeqSet", "SearchSize", "SearchText", "SearchUid", "SearchYounger",
    "SequenceSet", "compress_uids", "InvalidMailboxName", "decode_mailbox_name",
    "encode_mailbox_name", "utf7_decode", "utf7_encode",
]
