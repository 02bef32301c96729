"""The fleet's wire format on NATS: subjects, headers, presence and requests.

Each machine's ``sysadm-fleet`` agent (``sysadmd.fleet``) and the ``sysadm fleet``
commands (``sysadmd.client.fleet``) speak it; it lives here once so the two cannot drift.

Subjects, ``<host>`` being the machine's fleet name (:func:`check_host`)::

    sysadm.<host>.events.<source>   every event of the machine's daemon, in the JetStream
                                    stream SYSADM_EVENTS; the payload is the daemon's event
                                    frame as it sent it (``seq`` and ``epoch`` included)
    sysadm.<host>.presence          the agent's heartbeat (:func:`presence`), in the
                                    stream SYSADM_PRESENCE (the last one per machine)
    sysadm.<host>.rpc               NATS request/reply: the request is one envelope
                                    ``{"namespace", "name", "id", "args"}``, the reply the
                                    daemon's answer to it (a response or an error frame)

Event messages carry :data:`HOST`, :data:`SOURCE`, :data:`EPOCH` and :data:`SEQ`
(:func:`event_headers`), and numbered events ``Nats-Msg-Id`` (:func:`message_id`), so
JetStream drops a message published twice within its duplicate window.
"""

import json
import re

EVENTS_STREAM = "SYSADM_EVENTS"
PRESENCE_STREAM = "SYSADM_PRESENCE"
EVENTS_SUBJECTS = "sysadm.*.events.>"
PRESENCE_SUBJECTS = "sysadm.*.presence"

HOST = "Sysadm-Host"
SOURCE = "Sysadm-Source"
SEQ = "Sysadm-Seq"
EPOCH = "Sysadm-Epoch"
MSG_ID = "Nats-Msg-Id"
# Set by nats-server on a request that crossed into the machines' account through a
# service import with ``share: true``; a client cannot forge it there (the server
# replaces it). See :func:`requester`.
REQUEST_INFO = "Nats-Request-Info"

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def check_host(name):
    """Return ``name`` when it is a valid fleet name (letters, digits, ``_``, ``-``; at
    most 64), else raise ValueError: one NATS subject token, no dots or wildcards."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise ValueError(
            f"fleet host name {name!r} must be 1-64 letters, digits, '_' or '-' "
            "(one NATS subject token)"
        )
    return name


def host_from_hostname(hostname):
    """A default fleet name for ``hostname``: its first label, other characters as '-'."""
    label = hostname.split(".", 1)[0] or "localhost"
    return re.sub(r"[^A-Za-z0-9_-]", "-", label)[:64]


def events_subject(host, source):
    """``sysadm.<host>.events.<source>``."""
    return f"sysadm.{check_host(host)}.events.{check_source(source)}"


def events_filter(host="*", source=">"):
    """A subject filter of event messages: one or every (``*``) machine, one or every
    (``>``) source."""
    host = host if host == "*" else check_host(host)
    source = source if source == ">" else check_source(source)
    return f"sysadm.{host}.events.{source}"


def check_source(source):
    """Return ``source`` when it can be a subject token, else raise ValueError."""
    if not isinstance(source, str) or not _TOKEN.match(source):
        raise ValueError(f"event source name {source!r} cannot be a NATS subject token")
    return source


def presence_subject(host):
    """``sysadm.<host>.presence``."""
    return f"sysadm.{check_host(host)}.presence"


def rpc_subject(host):
    """``sysadm.<host>.rpc``."""
    return f"sysadm.{check_host(host)}.rpc"


def host_of(subject):
    """The ``<host>`` of any fleet subject, or None."""
    parts = subject.split(".")
    return parts[1] if len(parts) >= 3 and parts[0] == "sysadm" else None


def message_id(host, source, epoch, seq):
    """JetStream's de-duplication id of a numbered event."""
    return f"{host}/{source}/{epoch}/{seq}"


def event_headers(host, source, epoch, seq, numbered=True):
    """The headers of an event message.

    Every message says where the machine's publishing stands in that source's numbering
    after it (:data:`EPOCH`, :data:`SEQ`), which is where its agent resumes after a
    restart. A numbered event (its frame has ``seq``) is that position itself and also
    carries a message id; a message without a number (a ``gap``, or the state sent after
    one) carries the position its source's stream continues from (the gap's ``head``).
    """
    headers = {HOST: host, SOURCE: source, EPOCH: str(epoch), SEQ: str(seq)}
    if numbered:
        headers[MSG_ID] = message_id(host, source, epoch, seq)
    return headers


def event_position(headers):
    """``(epoch, seq)`` from an event message's headers, or None when it has none."""
    headers = headers or {}
    try:
        return headers[EPOCH], int(headers[SEQ])
    except (KeyError, ValueError):
        return None


def presence(host, hostname, version, up, since, now, interval, state=None):
    """The presence message's payload (UTF-8 JSON).

    ``up`` false is the agent's goodbye on a clean stop; a machine whose last presence
    is older than three ``interval``\\ s is down too (see :func:`is_up`). ``since`` is
    when the agent came up (Unix time), ``state`` the ``args`` of the daemon's last
    system-state event (hostname, priority, pools...), or None before one arrived.
    """
    return json.dumps(
        {
            "host": host,
            "hostname": hostname,
            "version": version,
            "up": bool(up),
            "since": since,
            "time": now,
            "interval": interval,
            "state": state,
        },
        separators=(",", ":"),
    ).encode("utf-8")


def is_up(message, now):
    """Whether a decoded presence ``message`` says its machine is up at ``now``."""
    if not message.get("up"):
        return False
    interval = message.get("interval") or 0
    return now - (message.get("time") or 0) <= 3 * max(interval, 1)


def requester(headers):
    """``(account, user)`` of the NATS client that sent a request, from the header the
    server sets on an imported service request, or None when there is none."""
    raw = (headers or {}).get(REQUEST_INFO)
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("user"), str) or not info["user"]:
        return None
    return info.get("acc"), info["user"]


def format_credentials(user, password):
    """The text of an agent's NATS credentials file (written by ``sysadmd-admin fleet
    init``, mode 0600, read by ``sysadm-fleet``'s ``[fleet] credentials``)."""
    return (
        "# NATS credentials of a sysadm-fleet agent (sysadmd-admin fleet init)\n"
        f"user {user}\npassword {password}\n"
    )


def parse_credentials(text):
    """``(user, password)`` from a credentials file's text; ValueError names what is
    missing or wrong."""
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key not in ("user", "password") or not value.strip():
            raise ValueError(f"line {number}: expected 'user NAME' or 'password SECRET'")
        values[key] = value.strip()
    missing = [key for key in ("user", "password") if key not in values]
    if missing:
        raise ValueError("no " + " and no ".join(missing) + " line")
    return values["user"], values["password"]
