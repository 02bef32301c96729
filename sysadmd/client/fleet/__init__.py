"""``sysadm fleet``: many sysadmd machines through NATS JetStream.

::

    sysadm fleet [--nats URL ...] [--nats-user USER] [--nats-password-file PATH]
                 [--nats-ca PATH] COMMAND
      setup [--max-age S] [--max-bytes N] [--duplicate-window S]
                                   create or update the streams (a stream admin)
      hosts [--json]               every machine that sent presence: up/down, since...
      watch [--hosts GLOB] [--since WHEN] [--json] [SOURCE ...]
                                   events of many machines, each line after its host
      run --hosts GLOB [--queue Q] [--timeout S] [--wait-timeout S] ID CMD [CMD ...]
                                   one job on every machine up that matches; a table
      state [--hosts GLOB] [--json]
                                   each machine's last system state

The wire format is :mod:`sysadmd.protocol.fleet`; each machine's ``sysadm-fleet`` agent
(:mod:`sysadmd.fleet`) is the other end.

::

    arguments.py   the subcommands and their options, --since WHEN, --hosts GLOB
    settings.py    [fleet] defaults, password, TLS CA
    connection.py  connecting to NATS; its failures and permission refusals as one line
    feed.py        an ordered consumer that resumes by stream sequence; last per subject
    tables.py      the tables and event lines printed
    commands.py    setup, hosts, state, watch
    run.py         run
    launch.py      asyncio.run, exit statuses, the missing nats-py line

Only ``arguments`` is imported with ``sysadm`` itself: nats-py is an optional
dependency (the ``fleet`` extra), imported when a fleet command runs.
"""

from sysadmd.client.fleet.arguments import add_parser

__all__ = ["add_parser", "main"]


def main(options):
    """Run the parsed ``sysadm fleet`` command; its exit status."""
    from sysadmd.client.fleet.launch import launch

    return launch(options)
