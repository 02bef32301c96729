"""Generate the configuration reference from the schema, so the sample ini file and the
README never drift from the code.

    python -m sysadmd.taps.reference ini   > etc/sysadmd.ini
    python -m sysadmd.taps.reference rst   # the README's "Configuration reference"
    python -m sysadmd.taps.reference readme README.rst   # rewrite it in place
    python -m sysadmd.taps.reference bridge-ini > etc/sysadm-bridge.ini
    python -m sysadmd.taps.reference bridge-rst  # the bridge's keys, for the README

A unit test checks that the committed copies match this output.
"""

import sys

from sysadmd.bridge import schema as bridge_schema
from sysadmd.config import reference
from sysadmd.config.loader import SOURCE_PREFIX
from sysadmd.taps.discovery import discover_sources
from sysadmd.taps.sections import SECTIONS

INI_HEADER = """\
# sysadmd configuration: every key, commented out, with its default.
#
# Install as /usr/local/etc/sysadmd.ini (FreeBSD) or /etc/sysadmd.ini, or pass
# --config PATH. Uncomment and change what you need. Relative paths are relative to
# this file's directory. Unknown sections and keys are errors.
"""


BRIDGE_INI_HEADER = """\
# sysadm-bridge configuration: every key, commented out, with its default.
#
# Install as /usr/local/etc/sysadm-bridge.ini (FreeBSD) or /etc/sysadm-bridge.ini, or
# pass --config PATH. [server] and [auth] take the same keys as sysadmd's; those a bridge
# does not use say so. Relative paths are relative to this file's directory. Unknown
# sections and keys are errors.
"""


def _bridge_sections():
    return list(bridge_schema.SECTIONS.items())


def _sections():
    sections = list(SECTIONS.items())
    for name, factory in sorted(discover_sources().items()):
        sections.append((SOURCE_PREFIX + name, factory.options))
    return sections


def render_ini(sections=None, header=INI_HEADER):
    """The sample configuration file (the daemon's unless ``sections`` is given)."""
    return reference.render_ini(_sections() if sections is None else sections, header)


def render_bridge_ini():
    """The bridge's sample configuration file."""
    return render_ini(_bridge_sections(), BRIDGE_INI_HEADER)


def render_rst(sections=None):
    """The README's configuration reference (a definition list per section)."""
    return reference.render_rst(_sections() if sections is None else sections)


BEGIN = ".. BEGIN CONFIG REFERENCE\n"
END = ".. END CONFIG REFERENCE\n"


def readme_region(text):
    """The generated part of a README's text (between the markers)."""
    start = text.index(BEGIN) + len(BEGIN)
    return text[start:text.index(END, start)]


def update_readme(text):
    """``text`` with its generated region replaced by the current reference."""
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    return text[:start] + "\n" + render_rst() + text[end:]


def main(argv=None):
    """Print the ini or rst reference, or update a README in place."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["readme"] and len(argv) == 2:
        with open(argv[1], encoding="utf-8") as f:
            text = f.read()
        with open(argv[1], "w", encoding="utf-8") as f:
            f.write(update_readme(text))
        return 0
    kinds = {
        "ini": render_ini,
        "rst": render_rst,
        "bridge-ini": render_bridge_ini,
        "bridge-rst": lambda: render_rst(_bridge_sections()),
    }
    if len(argv) != 1 or argv[0] not in kinds:
        sys.stderr.write(
            "usage: python -m sysadmd.taps.reference ini|rst|bridge-ini|bridge-rst|readme PATH\n"
        )
        return 2
    sys.stdout.write(kinds[argv[0]]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
