"""Instances: start, list, join with instance://, stop; names, stale entries, errors."""

from __future__ import annotations

import json
import os
import signal

import pytest


@pytest.fixture
def instances(profile):
    yield profile
    profile.sbuild("instance", "stop", "--all", "--timeout", "2")


def test_two_instances_of_one_image_start_list_join_and_stop(instances, images, rt):
    p = instances
    r = p.sbuild("instance", "start", images["simg"], "one")
    assert r.status == 0 and "instance started successfully" in r.err and r.out == "", r.err
    r = p.sbuild("instance", "start", "--writable-tmpfs", images["simg"], "two")
    assert r.status == 0, r.err
    listed = json.loads(p.sbuild("instance", "list", "--json").out)["instances"]
    assert sorted(i["instance"] for i in listed) == ["one", "two"]
    assert all(i["img"] == str(images["simg"]) for i in listed)
    assert all(i["logOutPath"].endswith(f"/instances/{i['instance']}.out") for i in listed)
    # the startscript runs in the instance; exec joins its namespaces and sees it
    r = p.sbuild("exec", "instance://one", "sh", "-c", "cat /dev/shm/started; ps -o pid,args | grep -c 'sleep 3456.5'")
    assert r.out.split()[0] == "started", r.err
    r = p.sbuild("exec", "instance://two", "sh", "-c", "echo hi > /etc/inst; cat /etc/inst")
    assert r.out == "hi\n", r.err
    r = p.sbuild("exec", "instance://two", "cat", "/etc/inst")
    assert r.out == "hi\n", r.err
    r = p.sbuild("exec", "instance://one", "test", "-e", "/etc/inst")
    assert r.status == 1  # separate instances, separate overlays
    r = p.sbuild("instance", "stop", "one")
    assert r.status == 0, r.err
    names = [i["instance"] for i in json.loads(p.sbuild("instance", "list", "--json").out)["instances"]]
    assert names == ["two"]
    assert p.sbuild("instance", "stop", "--all").status == 0
    assert rt.wait_until(lambda: not rt.marked("3456.5"), 5)
    assert "one" not in p.sbuild("instance", "list").out


def test_name_in_use_and_unknown_instance_are_usage_errors(instances, images):
    p = instances
    assert p.sbuild("instance", "start", images["sandbox"], "dup").status == 0
    r = p.sbuild("instance", "start", images["sandbox"], "dup")
    assert r.status == 2 and "instance dup already exists" in r.err and r.err.count("\n") <= 2
    r = p.sbuild("exec", "instance://nope", "true")
    assert r.status == 2 and "no instance named 'nope'" in r.err
    r = p.sbuild("instance", "stop", "nope")
    assert r.status == 2


def test_dead_instance_is_cleaned_up_and_its_name_reusable(instances, images, rt):
    p = instances
    assert p.sbuild("instance", "start", images["sandbox"], "stale").status == 0
    pid = json.loads(p.sbuild("instance", "list", "--json").out)["instances"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert rt.wait_until(lambda: not rt.marked("3456.5"), 5)
    assert json.loads(p.sbuild("instance", "list", "--json").out)["instances"] == []
    assert p.sbuild("instance", "start", images["sandbox"], "stale").status == 0


def test_stop_with_signal_and_timeout(instances, images, rt):
    p = instances
    assert p.sbuild("instance", "start", images["sif"], "sig").status == 0
    r = p.sbuild("instance", "stop", "--signal", "KILL", "--timeout", "1", "sig")
    assert r.status == 0, r.err
    assert rt.wait_until(lambda: not rt.marked("3456.5"), 5)


def test_failed_start_leaves_no_entry(instances, images):
    p = instances
    r = p.sbuild("instance", "start", "-B", "/no/such:/x", images["sandbox"], "bad")
    assert r.status == 2
    assert json.loads(p.sbuild("instance", "list", "--json").out)["instances"] == []
