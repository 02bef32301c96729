"""The original SysAdm clients' exact messages (``../shared/reference/original-client.md``),
replayed against the real daemon and bridge: every path a user of the Qt client takes.
Uses the integration tests' harness and fixtures."""

from tests.integration.conftest import admin, client, daemon, make_daemon  # noqa: F401
