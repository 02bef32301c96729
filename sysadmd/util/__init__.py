"""Small helpers shared by several parts of sysadmd (child processes, ...)."""
