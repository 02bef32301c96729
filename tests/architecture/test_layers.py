"""Imports point one way: ``util`` -> ``config``, ``protocol`` -> the domain parts ->
the source plugins -> ``channel`` -> the transports -> the programs. Walks the import statements of every
module under ``sysadmd/`` (without importing them), so a new module is checked too."""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "sysadmd")

# Lowest first. A module may import its own layer's parts (without cycles, checked
# below) and anything in a lower layer, never a higher one.
LAYERS = [
    ("util", {"sysadmd", "util"}),
    ("foundations", {"config", "protocol", "interfaces"}),
    ("domain", {"auth", "events", "dispatcher", "systemstate", "lifepreserver", "rpc"}),
    # The built-in event source plugins: each wires a domain part into an event source.
    ("plugins", {"plugins"}),
    ("channel", {"channel"}),
    ("transports", {"server", "web", "bridge"}),
    ("programs", {"taps", "admin"}),
]
RANK = {part: rank for rank, (_, parts) in enumerate(LAYERS) for part in parts}
# The command-line client is packaged on its own: it imports itself and, besides, only
# what STANDALONE_USES lets it. Only the fleet agent imports it. The fleet agent
# (twistd sysadm-fleet) is a client of the daemon, packaged with the client: it imports
# the client, the wire format, config and util, never the daemon's parts, and nothing
# imports it.
STANDALONE = {"client", "fleet"}
# ``protocol`` is the wire format both ends speak, and the encrypted tunnel's one
# implementation: a crypto protocol must not be written twice, so the client imports it
# rather than keeping a copy. It imports nothing of sysadmd but ``util`` (checked below),
# so the client's package is ``client`` + ``protocol`` + ``util``.
STANDALONE_USES = {"client": {"protocol"}, "fleet": {"client", "protocol", "config", "util"}}
# What the parts the client may use may import in turn (besides themselves).
CLIENT_CLOSURE = {"protocol": {"util"}, "util": set()}


def _part(module):
    """``sysadmd.events.hub`` -> ``events``; ``sysadmd`` -> ``sysadmd``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "sysadmd"


def _modules():
    for directory, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, os.path.join(ROOT, ".."))[:-3].replace(os.sep, ".")
                yield relative.removesuffix(".__init__"), path


def _imports(module, path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, node.lineno
            for alias in node.names:
                # "from sysadmd import tap" names a module, not an attribute
                yield f"{target}.{alias.name}", node.lineno


def _sysadmd_edges():
    for module, path in _modules():
        for target, line in _imports(module, path):
            if target == "sysadmd" or target.startswith("sysadmd."):
                yield module, path, _part(target), line


MODULES = sorted(module for module, _ in _modules())
PATHS = dict(_modules())


def test_every_part_has_a_layer():
    """A new top-level package must be placed in a layer (or declared standalone)."""
    unplaced = sorted({_part(m) for m in MODULES} - set(RANK) - STANDALONE)
    assert unplaced == []


def _known(target_part):
    return target_part in RANK or target_part in STANDALONE


def test_imports_never_point_up():
    """No module imports a part of a higher layer; the client imports only itself and
    ``protocol`` (the fleet agent: the client, ``protocol``, ``config`` and ``util``), and
    only the fleet agent imports the client."""
    wrong = []
    for module, path, target, line in _sysadmd_edges():
        source = _part(module)
        if not _known(target):
            continue  # an attribute of sysadmd/__init__, e.g. sysadmd.__version__
        if source in STANDALONE or target in STANDALONE:
            allowed = {source, "sysadmd"} | STANDALONE_USES.get(source, set())
            if source != target and not (source in STANDALONE and target in allowed):
                wrong.append(f"{module}:{line} imports {target}")
            continue
        if RANK[target] > RANK[source]:
            wrong.append(f"{module}:{line} ({LAYERS[RANK[source]][0]}) imports {target} ({LAYERS[RANK[target]][0]})")
    assert wrong == []


def test_what_the_client_uses_imports_only_protocol_and_util():
    """The client's package stays ``client`` + ``protocol`` + ``util``: ``protocol``
    imports nothing of sysadmd but ``util``, and ``util`` nothing but itself."""
    wrong = []
    for module, path, target, line in _sysadmd_edges():
        source = _part(module)
        allowed = {source, "sysadmd"} | CLIENT_CLOSURE.get(source, set())
        if source in CLIENT_CLOSURE and _known(target) and target not in allowed:
            wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def test_parts_of_one_layer_do_not_import_each_other_in_a_cycle():
    """Within a layer, the parts' imports form no cycle (one of them is the lower)."""
    edges = {}
    for module, path, target, line in _sysadmd_edges():
        source = _part(module)
        if source != target and _known(target) and source in RANK and RANK.get(target) == RANK[source]:
            edges.setdefault(source, set()).add(target)

    def reaches(start, goal, seen):
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if reaches(b, a, {b}))
    assert cycles == []


@pytest.mark.parametrize("module", MODULES)
def test_module_is_at_most_400_lines(module):
    """Small modules with names that explain themselves."""
    with open(PATHS[module], encoding="utf-8") as f:
        assert sum(1 for _ in f) <= 400
