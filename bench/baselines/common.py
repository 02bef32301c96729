"""What the two fan-out baselines share: the bench source's pacing and event shape, the
fixed replies to the requests the load client sends, and start-up.

A baseline speaks just enough of the sysadmd protocol for bench/client/load.js: any
``rpc/auth*`` call gets a token, ``events/subscribe`` subscribes the connection, anything
else gets an empty response. It prints ``listening on ws://127.0.0.1:PORT`` once bound.
"""

import argparse
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_FILE = os.path.join(HERE, "..", "plugins", "sysadmd", "plugins", "bench_source.py")
TOKEN = "0" * 64


def load_bench_source():
    """The bench source module (for its Pacer, ControlFile and event shape), loaded from
    its file, so the baselines publish exactly what the daemon's plugin publishes."""
    spec = importlib.util.spec_from_file_location("bench_source", SOURCE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def encode(frame):
    """The same serialization as ``sysadmd.protocol.envelope.encode``."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def event(args):
    """An event frame of the bench source."""
    return {"namespace": "events", "name": "bench", "id": "none", "args": args}


def reply(request):
    """``(reply frame, subscribe?)`` for a decoded request."""
    namespace, name, request_id = request.get("namespace"), request.get("name"), request.get("id")
    if namespace == "rpc" and name.startswith("auth"):
        result = [TOKEN, 900]
    elif namespace == "events" and name == "subscribe":
        names = request.get("args")
        result = {"subscribe": [names] if isinstance(names, str) else names}
        return {"namespace": namespace, "name": "response", "id": request_id, "args": result}, True
    else:
        result = {}
    return {"namespace": namespace, "name": "response", "id": request_id, "args": result}, False


def arguments(description):
    """Parse ``--port`` and ``--control``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control", required=True, help="the bench source's JSON control file")
    parser.add_argument("--pools", type=int, default=2)
    return parser.parse_args()


def run(reactor, factory, publish, options):
    """Listen on 127.0.0.1, follow the control file with the bench Pacer, run."""
    source = load_bench_source()
    pacer = source.Pacer(
        reactor, publish, {"rate": -1, "burst": 10, "count": 0, "duration": 0, "pools": options.pools}
    )
    control = source.ControlFile(reactor, options.control, pacer)
    port = reactor.listenTCP(options.port, factory, interface="127.0.0.1")
    print(f"listening on ws://127.0.0.1:{port.getHost().port}/", flush=True)
    control.start()
    reactor.run()
    sys.stdout.flush()
