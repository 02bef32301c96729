"""The job of the ``output`` measurement: writes SIZE bytes of numbered lines to stdout.

    python3 bench/output_gen.py SIZE

Every line is 64 bytes: its number (12 digits, from 0), a space, 50 letters and a newline,
so line k starts at byte 64 k and a follower can check that every byte arrived in order
(bench/client/load.js ``follow``). The last line is cut at SIZE. Deterministic: the same
SIZE gives the same bytes, which the baseline (the same command, stdout to a file) writes
to disk for the followers' hash to be compared with. Fast (a template per 10,000 lines
with the high digits replaced, about 2 GB/s), so that the command is not what bounds
either figure.
"""

import os
import sys

LINE = 64
PER_BLOCK = 10000  # lines per template: the low 4 digits are in the template
PLACEHOLDER = b"HHHHHHHH"  # the high 8 digits; the filler is lower case, so no clash
FILLER = b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx"  # 50 letters


def template():
    block = b"".join(PLACEHOLDER + b"%04d " % j + FILLER + b"\n" for j in range(PER_BLOCK))
    assert len(block) == LINE * PER_BLOCK
    return block


def blocks(size):
    """The output, in blocks of 640,000 bytes (the last one shorter)."""
    block, number, left = template(), 0, size
    while left > 0:
        data = block.replace(PLACEHOLDER, b"%08d" % number)
        if len(data) > left:
            data = data[:left]
        yield data
        left -= len(data)
        number += 1


def main():
    size = int(sys.argv[1])
    out = sys.stdout.fileno()
    for data in blocks(size):
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]
    return 0


if __name__ == "__main__":
    sys.exit(main())
