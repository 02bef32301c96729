"""Parsing ``zpool list`` by its header, and the priority rules of system_state."""

import pytest

from sysadmd.systemstate.rules import Thresholds, build_state, pool_level
from sysadmd.systemstate.zpool import FIELDS, ZpoolParseError, parse_zpool_list

OPENZFS = """\
NAME     SIZE  ALLOC   FREE  CKPOINT  EXPANDSZ   FRAG    CAP  DEDUP    HEALTH  ALTROOT
backup  1.81T  1.70T   110G        -         -    30%    94%  1.00x  DEGRADED  /mnt
tank     107G  13.1G  93.9G        -         -     6%    12%  1.00x    ONLINE  -
"""

# FreeBSD 9 / zfs-fuse: no FRAG, EXPANDSZ or CKPOINT.
OLDER = """\
NAME       SIZE  ALLOC   FREE    CAP  DEDUP  HEALTH  ALTROOT
sadtest1  95.5M   138K  95.4M     0%  1.00x  ONLINE  -
"""

# Older still: USED/AVAIL instead of ALLOC/FREE, no DEDUP.
OLDEST = """\
NAME   SIZE   USED  AVAIL    CAP  HEALTH  ALTROOT
rpool  136G  60.2G  75.8G    44%  ONLINE  -
"""


def test_openzfs_columns_are_all_read():
    pools = parse_zpool_list(OPENZFS)
    assert pools["tank"] == {
        "size": "107G", "alloc": "13.1G", "free": "93.9G", "frag": "6%", "expandsz": "-",
        "dedup": "1.00x", "altroot": "-", "capacity": "12%", "health": "ONLINE",
    }
    assert pools["backup"]["health"] == "DEGRADED"
    assert pools["backup"]["altroot"] == "/mnt"
    assert pools["backup"]["capacity"] == "94%"


def test_older_column_set_fills_missing_columns_with_a_dash():
    pools = parse_zpool_list(OLDER)
    assert pools == {
        "sadtest1": {
            "size": "95.5M", "alloc": "138K", "free": "95.4M", "frag": "-", "expandsz": "-",
            "dedup": "1.00x", "altroot": "-", "capacity": "0%", "health": "ONLINE",
        }
    }


def test_used_and_avail_are_alloc_and_free():
    pool = parse_zpool_list(OLDEST)["rpool"]
    assert (pool["alloc"], pool["free"], pool["dedup"], pool["capacity"]) == (
        "60.2G", "75.8G", "-", "44%"
    )
    assert set(pool) == set(FIELDS)


def test_column_order_does_not_matter():
    text = "HEALTH NAME CAP SIZE\nFAULTED z 50% 1G\n"
    assert parse_zpool_list(text)["z"]["health"] == "FAULTED"
    assert parse_zpool_list(text)["z"]["capacity"] == "50%"


@pytest.mark.parametrize("text", ["", "no pools available\n", "\n\n"])
def test_no_pools(text):
    assert parse_zpool_list(text) == {}


def test_output_without_a_header_is_an_error():
    with pytest.raises(ZpoolParseError):
        parse_zpool_list("tank 107G 13.1G 93.9G 12% 1.00x ONLINE -\n")


def pool(health="ONLINE", capacity="10%"):
    return dict(parse_zpool_list(OLDER)["sadtest1"], health=health, capacity=capacity)


@pytest.mark.parametrize(
    "health,capacity,level",
    [
        ("ONLINE", "0%", 0),
        ("ONLINE", "80%", 0),  # "above" 80: 80 itself is fine
        ("ONLINE", "81%", 3),
        ("ONLINE", "90%", 3),
        ("ONLINE", "91%", 6),
        ("ONLINE", "100%", 6),
        ("DEGRADED", "10%", 9),
        ("FAULTED", "95%", 9),
        ("UNAVAIL", "-", 9),
        ("online", "10%", 0),
        ("-", "10%", 0),  # a zpool without HEALTH gives no evidence of trouble
    ],
)
def test_pool_priority_rules(health, capacity, level):
    assert pool_level(pool(health, capacity), Thresholds(80, 90)) == level


def test_thresholds_are_configurable():
    assert pool_level(pool(capacity="55%"), Thresholds(50, 60)) == 3
    assert pool_level(pool(capacity="61%"), Thresholds(50, 60)) == 6


def test_state_has_per_pool_priority_and_the_maximum_on_top():
    state = build_state("host1", parse_zpool_list(OPENZFS), False, Thresholds())
    assert state["hostname"] == "host1"
    assert "hostnamechanged" not in state
    assert state["zpools"]["tank"]["priority"] == "0 - Information"
    assert state["zpools"]["backup"]["priority"] == "9 - Urgent"
    assert state["priority"] == "9 - Urgent"
    assert set(state["zpools"]["tank"]) == set(FIELDS) | {"priority"}


def test_hostname_change_is_flagged_and_at_least_a_warning():
    state = build_state("host2", parse_zpool_list(OLDER), True, Thresholds())
    assert state["hostnamechanged"] == "true"
    assert state["priority"] == "3 - Warning"
    assert state["zpools"]["sadtest1"]["priority"] == "0 - Information"
    urgent = build_state("host2", parse_zpool_list(OPENZFS), True, Thresholds())
    assert urgent["priority"] == "9 - Urgent"


def test_no_pools_is_information():
    assert build_state("h", {}, False, Thresholds()) == {
        "hostname": "h", "zpools": {}, "priority": "0 - Information"
    }
