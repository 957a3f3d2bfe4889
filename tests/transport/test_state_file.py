"""Tests of ensemble_agg.transport.state_file: atomic writes and strict loads."""

from __future__ import annotations

import json
import os

import pytest

from ensemble_agg.transport.state_file import StateFileError, load_tally, save_tally


def test_round_trip(tmp_path):
    path = tmp_path / "t.json"
    assert load_tally(path) == {}
    save_tally(path, {"a": 1.5, "b": 0.0})
    assert load_tally(path) == {"a": 1.5, "b": 0.0}
    assert os.listdir(tmp_path) == ["t.json"]  # no temporary left behind


def test_write_is_atomic_rename(tmp_path):
    path = tmp_path / "t.json"
    save_tally(path, {"a": 1.0})
    before = path.stat().st_ino
    save_tally(path, {"a": 2.0})
    assert path.stat().st_ino != before  # a new file renamed over the old one


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{oops", "not valid JSON"),
        ("[]", "not an ensemble-agg tally"),
        (
            '{"format": "ensemble-agg-tally", "version": 9, "contributions": {}}',
            "version 9",
        ),
        ('{"format": "ensemble-agg-tally", "version": 1}', 'no "contributions"'),
        (
            '{"format": "ensemble-agg-tally", "version": 1, "contributions": {"a": "x"}}',
            "must be a number",
        ),
        (
            '{"format": "ensemble-agg-tally", "version": 1, "contributions": {"a": NaN}}',
            "finite",
        ),
    ],
)
def test_corrupt_files_are_errors(tmp_path, content, words):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(StateFileError) as info:
        load_tally(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_unwritable_directory(tmp_path):
    with pytest.raises(StateFileError, match="cannot write"):
        save_tally(tmp_path / "missing" / "t.json", {})


def test_file_format_is_documented_json(tmp_path):
    path = tmp_path / "t.json"
    save_tally(path, {"m": 3.0})
    assert json.loads(path.read_text()) == {
        "format": "ensemble-agg-tally",
        "version": 1,
        "contributions": {"m": 3.0},
    }
