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


def server(registry, connection_id, accepts):
    registry.add(connection_id)
    registry.identified(connection_id, "server")
    registry.signed_in(connection_id, f"SHA256:server-{connection_id}")
    registry.accepts(connection_id, accepts)


def client(registry, connection_id, key):
    registry.add(connection_id)
    registry.identified(connection_id, "client")
    registry.signed_in(connection_id, key)


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
    registry.identified("A", "server")
    registry.signed_in("A", "SHA256:a")
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
    registry.identified("c1", "client")
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


def test_late_identify_turns_a_client_into_a_server(setup):
    """A connection that signs in before identifying counts as a client until it says it
    is a server."""
    registry, announced = setup
    client(registry, "c1", KEY_1)
    registry.add("A")
    registry.signed_in("A", KEY_1)
    assert registry.role("A") == "client" and registry.available("A") == set()
    registry.identified("A", "server")
    registry.accepts("A", [KEY_1])
    assert registry.available("c1") == {"A"}
    registry.identified("A", "something else")
    assert registry.role("A") == "client" and registry.available("c1") == set()


def test_duplicate_ids_are_refused(setup):
    """Connection ids are unique."""
    registry, _ = setup
    registry.add("x")
    with pytest.raises(ValueError):
        registry.add("x")
