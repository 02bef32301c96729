"""Render an ini schema as documentation: the sample file every program ships (every key
commented out, with its default and what it does) and the README's reference list.

The programs' own generators (``sysadmd.taps.reference``, ``sysadmd.fleet.reference``)
say which sections; ``make docs`` writes their output, and unit tests check that the
committed copies match.
"""

import textwrap


def render_ini(sections, header):
    """A sample configuration file: ``header``, then each ``(section, options)``."""
    out = [header]
    for section, options in sections:
        out.append(f"\n[{section}]\n")
        for key, option in options.items():
            for line in textwrap.wrap(option.doc, 86):
                out.append(f"# {line}\n")
            out.append(f"#{key} = {option.default}\n".replace(" = \n", " =\n"))
    return "".join(out)


def render_rst(sections):
    """A reference in reStructuredText (a definition list per section)."""
    out = []
    for section, options in sections:
        title = f"``[{section}]``"
        out.append(f"{title}\n{'-' * len(title)}\n\n")
        if not options:
            out.append("No keys yet.\n\n")
        for key, option in options.items():
            default = f"``{option.default}``" if option.default else "empty"
            out.append(f"``{key}`` (default: {default})\n")
            for line in textwrap.wrap(option.doc, 86):
                out.append(f"    {line}\n")
            out.append("\n")
    return "".join(out)
