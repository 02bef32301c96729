"""``rpc/identify`` and ``rpc/query``."""

import socket

import sysadmd
from sysadmd.auth import policy


def register(router, hostname=socket.gethostname):
    """Add identify and query to ``router``; ``hostname`` is called on every identify so a
    renamed machine answers with its new name."""

    def identify(session, args):
        return {"type": "server", "hostname": hostname(), "version": sysadmd.__version__}

    def query(session, args):
        return policy.query(session.access, router.access_table())

    router.register("rpc", "identify", identify, policy.PUBLIC)
    router.register("rpc", "query", query, policy.LIMITED)
