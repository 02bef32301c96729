"""The security suite repeats, against the real daemon and bridge, every attack an outside
review once got through (issue 13), and the defences it found solid, so that none comes
back. It uses the integration tests' harness and fixtures."""

from tests.integration.conftest import admin, client, daemon, make_daemon  # noqa: F401
