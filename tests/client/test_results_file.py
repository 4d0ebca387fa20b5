"""The client's check of the results file a workflow writes ($CRUNCH_RESULTS): every refusal
in one line that names the problem, nothing read through a link, no file is no results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crunch.choices import FailReason
from crunchclient.worker.results import InvalidResultsFile, clear_stale, read_results

GOOD = {
    "words": 12, "score": 0.93, "site": "north", "ok": True, "day": "2024-05-01",
    "at": "2024-05-01T12:00:00Z", "where": {"lat": 46.5, "lon": 6.6}, "big": -(2**63),
    "text": "é, \u00e9 and emoji \U0001f600", "_private": 0, "x" * 64: 1.5e-300,
}  # fmt: skip


def written(tmp_path: Path, data: str | bytes) -> Path:
    path = tmp_path / "results.json"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_no_file_is_no_results(tmp_path):
    assert read_results(tmp_path / "results.json") is None


def test_a_flat_object_is_read_as_it_is(tmp_path):
    assert read_results(written(tmp_path, json.dumps(GOOD, indent=2))) == GOOD
    assert read_results(written(tmp_path, "{}")) == {}


BAD = [
    ("words 12", "results.json: is not JSON (Expecting value at line 1 column 1)."),
    ('{"a": 1,}', "results.json: is not JSON (Expecting property name enclosed in double quotes at line 1 column 9)."),  # noqa: E501
    ("[1, 2]", 'results.json: is a list, not an object of keys and values ({"words": 10, ...}).'),
    ("null", 'results.json: is a null, not an object of keys and values ({"words": 10, ...}).'),
    ('{"a": {"b": {"c": 1}}}', 'results.json: \'a\' is an object; only {"lat": .., "lon": ..} may be nested.'),  # noqa: E501
    ('{"a": {"lat": 1, "lon": 2, "alt": 3}}', 'results.json: \'a\' is an object; only {"lat": .., "lon": ..} may be nested.'),  # noqa: E501
    ('{"a": [1, 2]}', 'results.json: \'a\' is a list; report a number, a text, true or false, an ISO date or date and time, or {"lat": .., "lon": ..}.'),  # noqa: E501
    ('{"a": null}', "results.json: 'a' is null; leave the key out instead."),
    ('{"a": NaN}', "results.json: holds NaN, which is no number; report finite numbers only."),
    ('{"a": -Infinity}', "results.json: holds -Infinity, which is no number; report finite numbers only."),  # noqa: E501
    ('{"a": 1e999}', "results.json: 'a' is inf; report finite numbers only."),
    ('{"a": 9223372036854775808}', "results.json: 'a' is 9223372036854775808, which does not fit in 64 bits."),  # noqa: E501
    ('{"a b": 1}', "results.json: key 'a b' is not an identifier (a letter or '_', then letters, digits or '_', at most 64 characters)."),  # noqa: E501
    ('{"<b>bold</b>": 1}', "results.json: key '<b>bold</b>' is not an identifier (a letter or '_', then letters, digits or '_', at most 64 characters)."),  # noqa: E501
    ('{"a\\u0007": 1}', "results.json: key 'a\\x07' is not an identifier (a letter or '_', then letters, digits or '_', at most 64 characters)."),  # noqa: E501
    ('{"9lives": 1}', "results.json: key '9lives' is not an identifier"),
    ('{"' + "k" * 65 + '": 1}', "is not an identifier"),
    ('{"state": "done"}', "results.json: key 'state' is reserved (dataset, slug, state)."),
    ('{"a": "line\\nbreak"}', "results.json: 'a' holds the control character '\\n'."),
    ('{"a": "' + "x" * 1001 + '"}', "results.json: 'a' is a text of 1,001 characters; at most 1,000."),  # noqa: E501
    ('{"a": "' + "€" * 700 + '"}', "results.json: 'a' is a text of more than 2,000 bytes in UTF-8."),  # noqa: E501
    ('{"a": {"lat": 91, "lon": 0}}', "results.json: 'a''s lat 91 is not between -90 and 90."),
    ('{"a": {"lat": true, "lon": 0}}', "results.json: 'a''s lat is not a number."),
    ('{"a": 1, "a": 2}', "results.json: key 'a' appears twice."),
    ("[" * 100_00 + "]" * 100_00, 'results.json: is nested too deeply; only {"lat": .., "lon": ..} may be nested.'),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m[14:50] for _, m in BAD])
def test_each_invalid_file_is_refused_in_one_line(tmp_path, text, message):
    with pytest.raises(InvalidResultsFile) as raised:
        read_results(written(tmp_path, text))
    assert message in str(raised.value)
    assert str(raised.value).startswith("results.json: ")
    assert "\n" not in str(raised.value)
    assert raised.value.failure.reason == FailReason.RESULTS


def test_too_many_keys_and_too_many_bytes(tmp_path):
    thousand = json.dumps({f"k{i}": i for i in range(1000)})
    with pytest.raises(InvalidResultsFile, match=r"^results.json: has 1,000 keys; at most 200 are allowed.$"):  # fmt: skip  # noqa: E501
        read_results(written(tmp_path, thousand))
    assert read_results(written(tmp_path, json.dumps({f"k{i}": i for i in range(200)})))
    large = json.dumps({"a": 1}) + " " * 64 * 1024
    with pytest.raises(InvalidResultsFile) as raised:
        read_results(written(tmp_path, large))
    assert str(raised.value) == (
        "results.json: larger than 64 KiB (65,536 bytes); report fewer or shorter results."
    )
    assert read_results(written(tmp_path, json.dumps({"a": 1}).ljust(64 * 1024))) == {"a": 1}


def test_bytes_that_are_not_utf8(tmp_path):
    with pytest.raises(InvalidResultsFile, match=r"is not UTF-8 \(byte 8 is 0xff\)\.$"):
        read_results(written(tmp_path, b'{"a": "\xff"}'))


def test_a_link_is_refused_not_followed(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"token": "s3cr3t"}')
    (tmp_path / "results.json").symlink_to(secret)
    with pytest.raises(InvalidResultsFile) as raised:
        read_results(tmp_path / "results.json")
    assert str(raised.value) == "results.json: is a symbolic link; write the file itself."
    assert "s3cr3t" not in str(raised.value)


def test_a_fifo_or_a_folder_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "results.json")
    with pytest.raises(InvalidResultsFile, match="is not a regular file"):
        read_results(tmp_path / "results.json")
    (tmp_path / "results.json").unlink()
    (tmp_path / "results.json").mkdir()
    with pytest.raises(InvalidResultsFile, match="is not a regular file"):
        read_results(tmp_path / "results.json")


def test_an_earlier_runs_file_is_cleared(tmp_path):
    path = written(tmp_path, "{}")
    assert clear_stale(path) is True and not path.exists()
    assert clear_stale(path) is False
