"""The programs: ``twistd sysadmd`` and ``twistd sysadm-bridge`` wire their services here."""
