"""Multipart uploads read from the body in memory: every file part, in order, byte for byte; the
limits and the malformed bodies answered as 4xx naming what was wrong."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnx.serve.bodies import MAX_FIELDS, _parse, _Parts, _split, file_parts
from cnnx.serve.errors import RequestError
from tests.serve.client import multipart
from tests.serve.conftest import DIGITS

SEVEN = (DIGITS / "mnist-7.png").read_bytes()


def test_every_file_part_in_order_byte_for_byte_and_the_fields_dropped():
    tricky = b"\r\n--not-the-boundary\r\n" + bytes(range(256)) * 4 + b"\r\n"  # CRLFs and dashes inside a file
    body, kind = multipart([("a.png", SEVEN), ("b.bin", tricky), ("c.png", b"")], {"note": "hello", "x": "1"})
    parts = file_parts(body, kind, 256)
    assert [(p.name, p.data) for p in parts] == [("a.png", SEVEN), ("b.bin", tricky), ("c.png", b"")]


def test_a_browser_form_part_without_a_file_name_goes_by_its_field_name():
    # what a browser sends for <input type=file name=photo> (filename="" when nothing was chosen),
    # with the header names in another case and a quoted name holding a semicolon
    body = (
        b"------WebKitFormBoundaryX\r\n"
        b'content-disposition: form-data; name="photo"; filename=""\r\n'
        b"content-type: application/octet-stream\r\n\r\n" + SEVEN + b"\r\n"
        b"------WebKitFormBoundaryX\r\n"
        b'Content-Disposition: form-data; name="f"; filename="my; digit.png"\r\n\r\n' + SEVEN + b"\r\n"
        b"------WebKitFormBoundaryX--\r\n"
    )
    parts = file_parts(body, "multipart/form-data; boundary=----WebKitFormBoundaryX", 256)
    assert [p.name for p in parts] == ["photo", "my; digit.png"]
    assert all(p.data == SEVEN for p in parts)


def test_a_file_name_that_is_not_utf8_is_kept_as_latin1():
    body, kind = multipart([("d\udce9j\udce0.png", SEVEN)])  # the bytes 0xE9 and 0xE0, as an old client sends
    assert file_parts(body, kind, 256)[0].name == "d\xe9j\xe0.png"


def test_as_many_files_as_allowed_and_one_more():
    body, kind = multipart([(f"{i}.png", b"x") for i in range(4)])
    assert len(file_parts(body, kind, 4)) == 4
    with pytest.raises(RequestError) as exc:
        file_parts(body, kind, 3)
    assert exc.value.status == 413 and "at most 3" in str(exc.value)


def test_too_many_fields_is_a_bad_request():
    body, kind = multipart([("a.png", SEVEN)], {f"field{i}": "v" for i in range(MAX_FIELDS + 1)})
    with pytest.raises(RequestError) as exc:
        file_parts(body, kind, 256)
    assert exc.value.status == 400 and "parts that are not files" in str(exc.value)


@pytest.mark.parametrize(
    ("body", "kind", "words"),
    [
        (b"--x\r\nnonsense", "multipart/form-data", "names no boundary"),
        (b"no boundary anywhere\r\n", "multipart/form-data; boundary=x", "malformed multipart body"),
        (b"--y\r\n", "multipart/form-data; boundary=x", "malformed multipart body"),  # another boundary
        (b"--x\r\nnot a header line\r\n\r\ndata\r\n--x--\r\n", "multipart/form-data; boundary=x", "in header"),
    ],
)
def test_a_malformed_body_is_a_bad_request(body, kind, words):
    with pytest.raises(RequestError) as exc:
        file_parts(body, kind, 256)
    assert exc.value.status == 400 and words in str(exc.value)


def test_a_body_cut_off_inside_a_part_holds_no_files():
    # the part's end never came: nothing of it is taken (the route then answers 400, "holds no files")
    body, kind = multipart([("a.png", SEVEN)])
    assert file_parts(body[: len(body) // 2], kind, 256) == []
    assert file_parts(b"--x\r\nnonsense", "multipart/form-data; boundary=x", 256) == []


def _outcome(read: Callable[[], list]) -> tuple:
    """What a client gets for a body: its files, or the error's status and message."""
    try:
        return ("files", [(p.name, p.data) for p in read()])
    except RequestError as exc:
        return ("error", exc.status, str(exc))


def _parser_only(body: bytes, boundary: bytes, max_images: int) -> list:
    parts = _Parts(max_images)
    _parse(body, boundary, parts)
    return parts.files


# header names and values as clients send them, and odd ones
_names = st.sampled_from([b"Content-Disposition", b"content-disposition", b"Content-Type", b"X-Note"])
_odd_names = st.sampled_from([b"Bad Name", b"", b"Content-Disposition ", b"X\x00"])
_values = st.sampled_from([b"a.png", b"my; digit.png", b'say "hi".png', b"d\xe9j\xe0", b"", b"\\", b"a\nb"])
_odd_values = st.sampled_from([b"x\r\ny", b"\r", b"x\ry", b"x" * 5000])
ODD = ("names", "values", "many headers", "boundary in data", "ending", "spoiled")


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(boundary, body): multipart bodies as clients send them, each with none, some or all of ODD's
    irregularities (and then spoiled: cut, a byte changed or put in, a preamble)."""
    odd = draw(st.sets(st.sampled_from(ODD)))
    boundary = draw(st.text("abcXYZ019-_'", min_size=1, max_size=12)).encode()
    body = b""
    for _ in range(draw(st.integers(1, 4))):
        lines = []
        for _ in range(draw(st.integers(0, 10 if "many headers" in odd else 3))):
            name = draw(st.one_of(_names, _odd_names) if "names" in odd else _names)
            if name.lower() == b"content-disposition":
                value = b'form-data; name="' + draw(_values) + b'"'
                if draw(st.booleans()):
                    value += b'; filename="' + draw(_values) + b'"'
            else:
                value = draw(st.one_of(_values, _odd_values) if "values" in odd else _values)
            lines.append(name + b":" + b" " * draw(st.integers(0, 2)) + value)
        data = draw(st.binary(max_size=40))
        if "boundary in data" in odd and draw(st.booleans()):  # followed by anything
            data += b"\r\n--" + boundary + draw(st.sampled_from([b"", b"-", b"--", b"\r\n", b"x", b" \r\n"])) + data
        elif draw(st.booleans()):  # what looks like the boundary, but is not
            data += draw(st.sampled_from([b"\r\n--" + boundary[:-1] + b"#", b"--" + boundary, b"\n--" + boundary]))
        body += b"--" + boundary + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + data + b"\r\n"
    ends = [b"--\r\nmore", b"\r\n", b"", b"-", b"--  "] if "ending" in odd else [b"--\r\n", b"--"]
    body += b"--" + boundary + draw(st.sampled_from(ends))
    if "spoiled" in odd:
        at = draw(st.integers(0, len(body)))
        how = draw(st.sampled_from(["cut", "change", "insert", "preamble"]))
        byte = bytes([draw(st.sampled_from(b"\r\n-:; ax\x00"))])
        body = {
            "cut": body[:at],
            "change": body[:at] + byte + body[at + 1 :],
            "insert": body[:at] + byte + body[at:],
            "preamble": b"\r\n" + body,
        }[how]
    return boundary, body


@settings(max_examples=400, deadline=None)
@given(_bodies(), st.integers(1, 3))
def test_the_cut_at_the_boundaries_gives_what_the_parser_gives(drawn, max_images):
    # the fast cut of a usual body and python-multipart's parser agree on every body: the same files,
    # or the same error (the cut hands every body it is not sure of to the parser)
    boundary, body = drawn
    kind = 'multipart/form-data; boundary="' + boundary.decode() + '"'
    assert _outcome(lambda: file_parts(body, kind, max_images)) == _outcome(
        lambda: _parser_only(body, boundary, max_images)
    )


def _one_part(headers: bytes, data: bytes = b"x", end: bytes = b"--B--\r\n") -> bytes:
    return b"--B\r\n" + headers + b"\r\n" + data + b"\r\n" + end


_DISPOSITION = b'Content-Disposition: form-data; name="f"; filename="a.png"\r\n'


@pytest.mark.parametrize(
    "body",
    [
        b"\r\n" + _one_part(_DISPOSITION),  # a preamble
        _one_part(_DISPOSITION, end=b"--B"),  # no end
        _one_part(_DISPOSITION, end=b"--B--\r\nan epilogue"),
        _one_part(_DISPOSITION)[:-12],  # cut off
        _one_part(_DISPOSITION.replace(b"Content-Disposition:", b"Content Disposition:")),
        _one_part(_DISPOSITION + b"X-Note: a\rb\r\n"),  # a lone CR in a value
        _one_part(_DISPOSITION + b"X-Note: a\r\n" * 8),  # 9 headers: the parser's limit is 8
        _one_part(_DISPOSITION + b"X-Note: " + b"a" * 5000 + b"\r\n"),  # a header line beyond the limit
        _one_part(_DISPOSITION + b": no name\r\n"),
        _one_part(_DISPOSITION, data=b"x\r\n--Bx\r\n\r\ny"),  # the boundary followed by neither CRLF nor --
        _one_part(_DISPOSITION, data=b"x\r\n--BX-Note: 1\r\n\r\ny"),
        _one_part(_DISPOSITION, data=b"x\r\n--B--\r\n\r\ny"),  # the end in the middle
        _one_part(_DISPOSITION, data=b"x\r\n--B \r\n"),  # white space after a boundary
    ],
)
def test_an_unusual_body_goes_to_the_parser(body):
    assert _split(body, b"B") is None
    assert _outcome(lambda: file_parts(body, "multipart/form-data; boundary=B", 3)) == _outcome(
        lambda: _parser_only(body, b"B", 3)
    )


def test_a_usual_body_is_cut():
    # (the cut is not taken for granted: it must handle what clients send, or the speed is not there)
    body, kind = multipart([("a.png", SEVEN), ("b.png", SEVEN)], {"note": "hello"})
    boundary = kind.split("boundary=")[1].encode()
    assert sorted(d for _, d in _split(body, boundary) or []) == sorted([SEVEN, SEVEN, b"hello"])
    assert _split(_one_part(_DISPOSITION + b"X-Note: a\r\n" * 7), b"B") == [(_DISPOSITION[21:-2], b"x")]
