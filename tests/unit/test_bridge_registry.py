"""The bridge's reachability bookkeeping, in memory."""

import pytest

from sysadmd.bridge.registry import Registry

KEY_1 = "SHA256:one"
KEY_2 = "SHA256:two"


class Announcements:
    """Records ``announce(id, ids)`` calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, connection_id, ids):
        self.calls.append((connection_id, ids))

    def take(self):
        calls, self.calls = self.calls, []
        return calls

    def last(self, connection_id):
        for called_id, ids in reversed(self.calls):
            if called_id == connection_id:
                return ids
        return None


def server(registry, connection_id, accepts, label=None):
    registry.add(connection_id)
    registry.labelled(connection_id, label)
    registry.signed_in(connection_id, f"SHA256:server-{connection_id}", "server")
    registry.accepts(connection_id, accepts)


def client(registry, connection_id, key):
    registry.add(connection_id)
    registry.signed_in(connection_id, key, "client")


@pytest.fixture
def setup():
    announced = Announcements()
    return Registry(announced), announced


def test_each_client_reaches_exactly_the_servers_that_accept_its_key(setup):
    """Two servers, two clients with different keys: the reachability is the accept lists."""
    registry, announced = setup
    server(registry, "A", [KEY_1, KEY_2])
    server(registry, "B", [KEY_1])
    client(registry, "c1", KEY_1)
    client(registry, "c2", KEY_2)
    assert registry.available("c1") == {"A", "B"}
    assert registry.available("c2") == {"A"}
    assert registry.available("A") == {"c1", "c2"}
    assert registry.available("B") == {"c1"}
    assert registry.can_relay("c2", "A") and not registry.can_relay("c2", "B")
    assert not registry.can_relay("B", "c2")
    assert announced.last("c1") == ["A", "B"] and announced.last("c2") == ["A"]


def test_servers_never_reach_servers_nor_clients_clients(setup):
    """A server accepting another server's key does not list it; clients sharing a key do
    not see each other."""
    registry, _ = setup
    server(registry, "A", ["SHA256:server-B"])
    server(registry, "B", ["SHA256:server-A"])
    client(registry, "c1", KEY_1)
    client(registry, "c2", KEY_1)
    assert registry.available("A") == set() and registry.available("B") == set()
    assert registry.available("c1") == set() and not registry.can_relay("c1", "c2")


def test_signing_in_announces_even_an_empty_list_and_changes_only_when_they_change(setup):
    """A connection is told its list right after signing in; later events only when it
    changes, and only to those whose list changed."""
    registry, announced = setup
    client(registry, "c1", KEY_1)
    assert announced.take() == [("c1", [])]
    client(registry, "c2", KEY_2)
    assert announced.take() == [("c2", [])]
    registry.add("A")
    registry.signed_in("A", "SHA256:a", "server")
    assert announced.take() == [("A", [])]
    registry.accepts("A", [KEY_1])
    assert sorted(announced.take()) == [("A", ["c1"]), ("c1", ["A"])]
    registry.accepts("A", [KEY_1])
    assert announced.take() == []


def test_unauthenticated_connections_are_invisible_and_hear_nothing(setup):
    """Until it signs in a connection is reached by no one and gets no event."""
    registry, announced = setup
    server(registry, "A", [KEY_1])
    announced.take()
    registry.add("c1")
    registry.labelled("c1", "laptop")
    assert announced.take() == []
    assert registry.available("A") == set()
    assert not registry.can_relay("c1", "A")


def test_a_gone_server_is_removed_from_its_clients_lists(setup):
    """Removing a server sends its clients (and only them) their new full list."""
    registry, announced = setup
    server(registry, "A", [KEY_1])
    server(registry, "B", [KEY_1, KEY_2])
    client(registry, "c1", KEY_1)
    client(registry, "c2", KEY_2)
    client(registry, "c3", "SHA256:nobody")
    announced.take()
    registry.remove("A")
    assert announced.take() == [("c1", ["B"])]
    registry.remove("B")
    assert sorted(announced.take()) == [("c1", []), ("c2", [])]
    assert "B" not in registry and len(registry) == 3


def test_a_gone_client_is_removed_from_its_servers_lists(setup):
    """Removing a client tells the servers that could reach it."""
    registry, announced = setup
    server(registry, "A", [KEY_1])
    client(registry, "c1", KEY_1)
    announced.take()
    registry.remove("c1")
    assert announced.take() == [("A", [])]
    registry.remove("c1")  # twice is harmless
    assert announced.take() == []


def test_a_server_that_stops_accepting_a_key_loses_that_client(setup):
    """A new accept list replaces the old one, both ways."""
    registry, announced = setup
    server(registry, "A", [KEY_1, KEY_2])
    client(registry, "c1", KEY_1)
    client(registry, "c2", KEY_2)
    announced.take()
    registry.accepts("A", [KEY_2])
    assert sorted(announced.take()) == [("A", ["c2"]), ("c1", [])]


def test_the_role_is_the_one_given_at_sign_in_never_a_label(setup):
    """A connection is a server only when it signs in as one: what it calls itself (its
    label) and the accept list it sends change nothing for a client."""
    registry, announced = setup
    client(registry, "c1", KEY_1)
    registry.add("fake")
    registry.labelled("fake", "server")
    registry.signed_in("fake", KEY_2, "client")
    registry.accepts("fake", [KEY_1])
    assert registry.role("fake") == "client"
    assert registry.available("c1") == set() and registry.available("fake") == set()
    assert not registry.can_relay("fake", "c1") and not registry.can_relay("c1", "fake")
    registry.signed_in("fake", KEY_2, "something else")
    assert registry.role("fake") == "client"


def test_signing_in_again_with_a_server_key_makes_a_server(setup):
    """The role follows the key of the latest sign-in."""
    registry, _ = setup
    client(registry, "c1", KEY_1)
    registry.add("A")
    registry.signed_in("A", KEY_2, "client")
    registry.accepts("A", [KEY_1])
    assert registry.available("c1") == set()
    registry.signed_in("A", "SHA256:a", "server")
    assert registry.role("A") == "server" and registry.available("c1") == {"A"}


def test_details_give_role_proven_fingerprint_and_label_when_known(setup):
    """Each listed id's role, the key it signed in with, and its label only if it gave one."""
    registry, _ = setup
    server(registry, "A", [KEY_1], label="web1")
    server(registry, "B", [KEY_1])
    client(registry, "c1", KEY_1)
    registry.add("quiet")
    assert registry.details(["A", "B", "c1", "quiet", "gone"]) == {
        "A": {"role": "server", "fingerprint": "SHA256:server-A", "hostname": "web1"},
        "B": {"role": "server", "fingerprint": "SHA256:server-B"},
        "c1": {"role": "client", "fingerprint": KEY_1},
    }


def test_a_client_signing_in_with_another_key_is_announced_again(setup):
    """The servers that reach a client are told again when its key changes, even if their
    lists stay the same (a daemon counts failed logins on the key)."""
    registry, announced = setup
    server(registry, "A", [KEY_1, KEY_2])
    client(registry, "c1", KEY_1)
    announced.take()
    registry.signed_in("c1", KEY_2, "client")
    assert sorted(announced.take()) == [("A", ["c1"]), ("c1", ["A"])]
    assert registry.details(["c1"])["c1"]["fingerprint"] == KEY_2
    registry.signed_in("c1", KEY_2, "client")
    assert announced.take() == [("c1", ["A"])]


def test_duplicate_ids_are_refused(setup):
    """Connection ids are unique."""
    registry, _ = setup
    registry.add("x")
    with pytest.raises(ValueError):
        registry.add("x")
