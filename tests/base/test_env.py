"""base.env: APPTAINER_ names before SINGULARITY_ ones, as Apptainer reads them."""

from __future__ import annotations

import pytest

from base.env import Twin, apptainer_env, apptainer_flag, parse_bool, twin
from base.errors import UsageError


@pytest.mark.parametrize("environ,expect", [
    ({"APPTAINER_CACHEDIR": "/a", "SINGULARITY_CACHEDIR": "/s"}, "/a"),
    ({"SINGULARITY_CACHEDIR": "/s"}, "/s"),
    ({"APPTAINER_CACHEDIR": "", "SINGULARITY_CACHEDIR": "/s"}, "/s"),  # empty counts as unset
    ({"CACHEDIR": "/x"}, None),
])
def test_apptainer_name_wins_then_the_legacy_one(environ, expect):
    assert apptainer_env("CACHEDIR", environ) == expect


@pytest.mark.parametrize("value,expect", [("1", True), ("true", True), ("TRUE", True), ("yes", True),
                                          ("0", False), ("no", False), ("", False)])
def test_flag_values(value, expect):
    assert apptainer_flag("NOHTTPS", {"SINGULARITY_NOHTTPS": value}) is expect


def test_flag_takes_the_apptainer_value_even_when_it_says_no():
    assert apptainer_flag("NOHTTPS", {"APPTAINER_NOHTTPS": "0", "SINGULARITY_NOHTTPS": "1"}) is False


def test_default_is_the_process_environment(monkeypatch):
    monkeypatch.setenv("SINGULARITY_SBUILD_TEST_NAME", "v")
    assert apptainer_env("SBUILD_TEST_NAME") == "v"


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, None),
    ({"APPTAINER_BIND": "  "}, None),
    ({"APPTAINER_BIND": "/a"}, ("APPTAINER_BIND", "/a", None)),
    ({"APPTAINER_BIND": "/a", "SINGULARITY_BIND": "/a"}, ("APPTAINER_BIND", "/a", None)),
    ({"APPTAINER_BIND": "/a", "SINGULARITY_BIND": "/b"},
     ("APPTAINER_BIND", "/a", ("warning", "SINGULARITY_BIND and APPTAINER_BIND have different values, using the latter"))),
    ({"SINGULARITY_BIND": "/b"},
     ("SINGULARITY_BIND", "/b", ("info", "Environment variable SINGULARITY_BIND is set, but APPTAINER_BIND is preferred"))),
])
def test_twin_follows_apptainers_prefix_rules(environ, expected):
    assert twin(["BIND"], environ) == (None if expected is None else Twin(*expected))


def test_twin_takes_the_first_key_that_is_set():
    env = {"SINGULARITY_APPNAME": "b", "APPTAINER_APP": "a"}
    assert twin(["APP", "APPNAME"], env).value == "a"
    assert twin(["APPNAME", "APP"], env).name == "SINGULARITY_APPNAME"


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True", " true "])
def test_parse_bool_true(text):
    assert parse_bool(text, "APPTAINER_NV") is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_parse_bool_false(text):
    assert parse_bool(text, "APPTAINER_NV") is False


@pytest.mark.parametrize("text", ["yes", "on", "2", "tRuE", ""])
def test_parse_bool_refuses_what_go_refuses(text):
    with pytest.raises(UsageError, match="APPTAINER_NV"):
        parse_bool(text, "APPTAINER_NV")
