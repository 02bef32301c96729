"""The fleet agent's sample configuration, from its schema (``make docs``)::

    python -m sysadmd.fleet.reference > etc/sysadm-fleet.ini
"""

import sys

from sysadmd.config import reference
from sysadmd.fleet.options import SECTIONS

INI_HEADER = """\
# sysadm-fleet configuration: every key, commented out, with its default.
#
# Install as /usr/local/etc/sysadm-fleet.ini (FreeBSD) or /etc/sysadm-fleet.ini, or pass
# --config PATH. `sysadmd-admin fleet init` prints the lines this machine needs. Relative
# paths are relative to this file's directory. Unknown sections and keys are errors.
"""


def render_ini():
    """The sample ``sysadm-fleet.ini``."""
    return reference.render_ini(list(SECTIONS.items()), INI_HEADER)


if __name__ == "__main__":
    sys.stdout.write(render_ini())
