"""The probe's check of the guest's TCP stream: the numbers in order, nothing lost or
repeated, whatever way the bytes are split into reads."""

from __future__ import annotations

import pytest

from lab.probe import StreamCheck

pytestmark = pytest.mark.unit

HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"


def fed(*chunks: bytes) -> StreamCheck:
    check = StreamCheck()
    for chunk in chunks:
        check.feed(chunk)
    return check


def test_numbers_in_order_pass_however_the_reads_split_them() -> None:
    body = b"".join(b"%d\n" % n for n in range(1, 2001))
    whole = HEAD + body
    check = fed(*(whole[i : i + 7] for i in range(0, len(whole), 7)))
    assert (check.error, check.numbers) == (None, 2000)


def test_busybox_httpd_s_bare_newlines_end_the_header_too() -> None:
    check = fed(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\n\n1\n2\n")
    assert (check.error, check.numbers) == (None, 2)


def test_a_lost_byte_breaks_the_stream() -> None:
    check = fed(HEAD, b"1\n2\n3\n4\n5\n6\n7\n8\n9\n1\n11\n")  # "10" lost its 0
    assert check.error == "after 9 came b'1', not 10"


def test_a_repeated_line_breaks_the_stream() -> None:
    assert fed(HEAD, b"1\n2\n2\n").error == "after 2 came b'2', not 3"


def test_an_error_answer_is_not_a_stream() -> None:
    check = fed(b"HTTP/1.0 404 Not Found\r\n\r\n")
    assert check.error is not None and "404" in check.error
