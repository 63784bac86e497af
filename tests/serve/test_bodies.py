"""Multipart uploads read from the body in memory: every file part, in order, byte for byte; the
limits and the malformed bodies answered as 4xx naming what was wrong."""

from __future__ import annotations

import pytest

from cnnx.serve.bodies import MAX_FIELDS, file_parts
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
