"""sysadmd: a Twisted re-implementation of the SysAdm event service."""

__version__ = "0.1.0"
