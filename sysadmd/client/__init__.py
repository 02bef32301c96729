"""The ``sysadm`` command-line client.

::

    config.py      ~/.config/sysadm/client.ini defaults
    errors.py      failures shown to the user as one line
    calls.py       requests and replies matched by id, events, over one channel
    tls.py         certificate pinning by SHA-256 fingerprint
    connection.py  the Autobahn WebSocket client and the direct link
    binding.py     the server named by its key fingerprint; relayed auth_ssl bound to it
    bridge.py      the relay framing and the encrypted tunnel through a bridge
    auth.py        password, cached token and key (auth_ssl) sign-in
    render.py      event lines, colours and tables
    follow.py      a dispatcher job's output streamed from its events
    output.py      a job's output followed live by byte offset (job-output), resumed
    resume.py      positions in numbered events, gap lines, ``--since``
    watch.py       ``watch``: subscribe, reconnect with backoff, resume, keep alive
    commands.py    the other subcommands
    cli.py         argument parsing and ``main``

It is packaged on its own: it imports nothing of sysadmd but itself and
``sysadmd.protocol`` (the wire format, whose encrypted tunnel both ends must speak from
one implementation).
"""
