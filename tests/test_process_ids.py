"""mmm.process: the process id and random ids the request path uses instead of system calls."""

import json
import os
import random
import re
import select
import signal

import pytest

from mmm.process import current_pid, random_hex


def in_a_forked_child(work, *, deadline: float = 20.0) -> dict:
    """Run ``work()`` in a child forked from this process; return what it returned (JSON)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: answer and leave without running pytest's cleanup
        try:
            os.write(write, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        readable, _, _ = select.select([read], [], [], deadline)
        if not readable:
            os.kill(child, signal.SIGKILL)
            pytest.fail(f"the forked child sent no answer within {deadline:g} s")
        with os.fdopen(read) as answer:
            text = answer.read()
    finally:
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child failed"
    return {**json.loads(text), "child": child}


def test_the_pid_is_this_process_s():
    assert current_pid() == os.getpid()


@pytest.mark.timeout(30)
def test_a_forked_child_knows_its_own_pid():
    seen = in_a_forked_child(lambda: {"current": current_pid(), "getpid": os.getpid()})

    assert seen["current"] == seen["getpid"] == seen["child"] != os.getpid()
    assert current_pid() == os.getpid()  # the parent's is unchanged


def test_random_ids_look_like_uuid4_hex_and_do_not_repeat():
    ids = [random_hex() for _ in range(10_000)]

    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.timeout(30)
def test_a_forked_child_draws_other_ids_than_its_parent():
    # An inherited sequence would repeat ids across the gateway's workers.
    child = in_a_forked_child(lambda: {"ids": [random_hex() for _ in range(100)]})
    parent = [random_hex() for _ in range(100)]

    assert not set(child["ids"]) & set(parent)


def test_seeding_the_random_module_does_not_make_ids_repeat():
    state = random.getstate()
    try:
        random.seed(0)
        first = [random_hex() for _ in range(10)]
        random.seed(0)
        again = [random_hex() for _ in range(10)]
    finally:
        random.setstate(state)  # the other tests' random module, as it was

    assert not set(first) & set(again)
