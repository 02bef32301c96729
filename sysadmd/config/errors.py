"""Configuration errors that name the file, section and key."""


class ConfigError(Exception):
    """One mistake in a configuration: where it is and what is wrong."""

    def __init__(self, source, section, key, message):
        super().__init__(source, section, key, message)
        self.source = source
        self.section = section
        self.key = key
        self.message = message

    def __str__(self):
        where = self.source
        if self.section is not None:
            where += f": [{self.section}]"
        if self.key is not None:
            where += f" {self.key}"
        return f"{where}: {self.message}"


class ConfigErrors(Exception):
    """Every mistake found in one configuration, reported together."""

    def __init__(self, errors):
        super().__init__(errors)
        self.errors = list(errors)

    def __str__(self):
        return "\n".join(str(error) for error in self.errors)
