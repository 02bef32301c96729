"""Every daemon module logs through ``sysadmd.util.log.Logger``, which escapes control
characters in peer-supplied fields; Twisted's own Logger would write a user name holding
a newline as a forged log line. The command-line client (standalone) is exempt."""

import ast

import pytest

from tests.architecture.test_layers import MODULES, PATHS

DAEMON_MODULES = [m for m in MODULES if not m.startswith("sysadmd.client") and m != "sysadmd.util.log"]


@pytest.mark.parametrize("module", DAEMON_MODULES)
def test_no_module_uses_twisteds_logger_directly(module):
    with open(PATHS[module], encoding="utf-8") as f:
        tree = ast.parse(f.read())
    direct = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module == "twisted.logger"
        and any(alias.name == "Logger" for alias in node.names)
    ]
    assert direct == [], f"{module} imports twisted.logger.Logger (line {direct}): use sysadmd.util.log.Logger"
