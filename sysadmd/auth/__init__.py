"""Who may talk to sysadmd: password backends, the users and keys files, challenge
signatures, and (in the core) tokens, bans and the access policy."""
