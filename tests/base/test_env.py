"""base.env: APPTAINER_ names before SINGULARITY_ ones, as Apptainer reads them."""

from __future__ import annotations

import pytest

from base.env import apptainer_env, apptainer_flag


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
