"""The ``relay`` section of ``make bench`` (issue 18): events relayed through a real bridge
to subscribers whose sessions are end-to-end encrypted (the Noise tunnel) or plaintext,
on the same daemon and bridge in the same run, so the ratio compares like with like.

One bridge (``twistd -n sysadm-bridge``) and one daemon (``twistd -n sysadmd``, the
``bench`` source, ``[bridge] connections`` to that bridge and ``legacy_clients = yes`` so
that it takes both kinds of session). A client key is registered at the bridge and in
the daemon's keys file (so the bridge lets it reach the daemon); the daemon's bridge key
(``sysadmd-admin bridge export-key``) in the bridge's server keys file. Then, round after
round, each variant in turn (the order alternates between rounds): N subscribers
(bench/relay_client.py, in several processes) sign in to the bridge, open their relayed
sessions (``tunnel``: offer, handshake, sealed messages; ``plain``: as they are), sign in
to the daemon and subscribe to ``bench``; the events are counted at saturation, then
timed at a fixed rate; the subscribers leave. See bench/README.md.
"""

import os
import re
import subprocess
import sys
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from loadclient import USER, LoadGroup, RelayClient
from servers import BIN, PLUGINS, add_key, start_bridge, start_sysadmd, wait_for_log

sys.path.insert(0, os.path.join(PLUGINS, "sysadmd", "plugins"))
from bench_source import write_control

VARIANTS = ("tunnel", "plain")
NICK = "bench"

BRIDGE_SECTION = """
[bridge]
connections = {nick}={url}
legacy_clients = yes
"""


def log(message):
    print(message, file=sys.stderr, flush=True)


class Relay:
    """The bridge, the daemon linked to it, and what a client needs to reach it: the
    client key's PEM file and the daemon's bridge key fingerprint (what clients pin)."""

    def __init__(self, ws, profile=None):
        self.bridge = self.daemon = None
        d = ws.new("relay-client")
        key = ed25519.Ed25519PrivateKey.generate()
        self.key_path = os.path.join(d, "client_key.pem")
        with open(self.key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                serialization.PublicFormat.OpenSSH).decode() + " bench-client"
        self.fingerprint = None
        try:
            # profile: a directory for the daemon's and the bridge's cProfile stats
            self.bridge = start_bridge(ws, profile=profile and os.path.join(profile, "bridge.pstats"))
            add_key(self.bridge.keys_file, "bench-client", public)

            def before_start(config, state_dir, env):
                add_key(os.path.join(state_dir, "keys"), USER, public)
                exported = subprocess.run(
                    [os.path.join(BIN, "sysadmd-admin"), "bridge", "export-key", "--config", config],
                    capture_output=True, text=True, check=True, env=env,
                )
                [self.fingerprint] = re.findall(r"^fingerprint (SHA256:\S+)$", exported.stderr, re.MULTILINE)
                add_key(self.bridge.server_keys_file, "bench-server", exported.stdout.strip())

            self.daemon = start_sysadmd(ws, extra_config=BRIDGE_SECTION.format(nick=NICK, url=self.bridge.url),
                                        before_start=before_start,
                                        profile=profile and os.path.join(profile, "sysadmd.pstats"))
            wait_for_log(self.daemon, f"signed in to bridge {NICK} with key", 60)
        except BaseException:
            self.stop()
            raise

    def group(self, cfg, variant):
        """N subscribers of ``variant`` in cfg.relay_processes processes, ready."""
        def client(**options):
            return RelayClient(self.bridge.url, cfg.deadline, key=self.key_path, server=self.fingerprint,
                               variant=variant, **options)

        return LoadGroup(self.bridge.url, cfg.deadline, cfg.relay_subscribers, cfg.relay_processes, client=client)

    def stop(self):
        for server in (self.daemon, self.bridge):
            if server is not None:
                server.stop()


def measure_window(relay, client, warmup, window, latency):
    """A window of counting by the clients, with the daemon's and the bridge's CPU (of
    one core) sampled over it."""
    client.start_measure(warmup=warmup, duration=window, latency=latency)
    time.sleep(warmup)
    d0, b0, t0 = relay.daemon.cpu(), relay.bridge.cpu(), time.monotonic()
    time.sleep(window)
    d1, b1, t1 = relay.daemon.cpu(), relay.bridge.cpu(), time.monotonic()
    result = client.measured(warmup + window + 60)
    result["server_cpu"] = (d1 - d0) / (t1 - t0)
    result["bridge_cpu"] = (b1 - b0) / (t1 - t0)
    result["server_rss"] = relay.daemon.rss()
    result["bridge_rss"] = relay.bridge.rss()
    return result


def run_phase(relay, client, cfg, name, window, **settings):
    """One window with the source following ``settings``; then the source stops and the
    events still on their way are let through."""
    write_control(relay.daemon.control, run=name, duration=cfg.warmup + window + 1, **settings)
    result = measure_window(relay, client, cfg.warmup, window, latency=settings.get("rate", 0) > 0)
    write_control(relay.daemon.control, run=f"{name}-stop", rate=-1)
    client.measure(60, quiet=0.3, timeout=30, start_timeout=0.5)
    return result


def variant_once(relay, cfg, variant, round_):
    """Saturation, then latency at cfg.relay_rate, for N fresh subscribers of ``variant``."""
    group = relay.group(cfg, variant)
    try:
        result = {"variant": variant, "round": round_, "setup_s": group.ready()["setup_s"]}
        # The encrypted subscribers open (decrypt) every event even here: a tunnel
        # cannot skip a message. The plaintext ones only count.
        result["saturation"] = run_phase(relay, group, cfg, f"{variant}-sat", cfg.window, rate=0, burst=cfg.burst)
        window = max(cfg.window, cfg.rate_events / cfg.relay_rate)
        result["rate"] = run_phase(relay, group, cfg, f"{variant}-rate", window, rate=cfg.relay_rate)
        return result
    finally:
        group.close()


def relay(ws, cfg):
    """Both variants, interleaved over cfg.rounds rounds (the first variant alternates)."""
    server = Relay(ws)
    try:
        runs = []
        for round_ in range(cfg.rounds):
            for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                log(f"relay: round {round_ + 1}/{cfg.rounds}, {variant}, {cfg.relay_subscribers} relayed "
                    f"subscribers in {cfg.relay_processes} process(es)")
                result = variant_once(server, cfg, variant, round_ + 1)
                sat, lat = result["saturation"], result["rate"]
                log(f"  saturation {sat['rate']:,.0f} ev/s (daemon cpu {sat['server_cpu']:.0%}, bridge cpu "
                    f"{sat['bridge_cpu']:.0%}, clients {sat['client_cpu']:.0%}, busiest {sat['client_cpu_max']:.0%}, "
                    f"dropped {sat['dropped']}, subscribers with no event {sat.get('starved')}); {cfg.relay_rate}/s: p50 {lat['latency']['p50_ms']} p99 "
                    f"{lat['latency']['p99_ms']} max {lat['latency']['max_ms']} ms (daemon cpu "
                    f"{lat['server_cpu']:.0%}, bridge {lat['bridge_cpu']:.0%})")
                runs.append(result)
        with open(server.daemon.log_path) as f:
            daemon_log = f.read()
        with open(server.bridge.log_path) as f:
            bridge_log = f.read()
        return {
            "subscribers": cfg.relay_subscribers, "processes": cfg.relay_processes, "rate": cfg.relay_rate,
            "runs": runs, "tracebacks": daemon_log.count("Traceback") + bridge_log.count("Traceback"),
            "tunnels_opened": daemon_log.count("opened an encrypted tunnel"),
        }
    finally:
        server.stop()


def relay_profile(ws, cfg):
    """Each variant once more, with its own daemon and bridge under cProfile (twistd
    --profile); the functions taking the most time in each go to
    bench/results/relay-profile.txt (figures are slower than unprofiled)."""
    import pstats

    results = os.path.dirname(cfg.out)
    os.makedirs(results, exist_ok=True)
    text_path = os.path.join(results, "relay-profile.txt")
    saturation = {}
    with open(text_path, "w") as f:
        for variant in VARIANTS:
            directory = os.path.join(results, f"relay-profile-{variant}")
            os.makedirs(directory, exist_ok=True)
            log(f"relay profile: {variant}, the daemon and the bridge under cProfile")
            server = Relay(ws, profile=directory)
            try:
                run = variant_once(server, cfg, variant, 1)
            finally:
                server.stop()
            saturation[variant] = run["saturation"]["rate"]
            for who in ("sysadmd", "bridge"):
                f.write(f"==== {variant}: {who} (saturation {run['saturation']['rate']:,.0f} events delivered/s, "
                        f"then {cfg.relay_rate:g} events/s) ====\n")
                stats = pstats.Stats(os.path.join(directory, f"{who}.pstats"), stream=f)
                stats.sort_stats("tottime").print_stats(25)
                stats.sort_stats("cumulative").print_stats(35)
    log(f"  written to {text_path}")
    return {"text": text_path, "saturation": saturation}
