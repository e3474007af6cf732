"""Functions the tests run remotely by name (a module of the tests' folder,
shipped with the jobs because the functions use it)."""


class BadRow(Exception):
    """A user exception class from a module the runtime imports."""


def scale(x, factor=3):
    return x * factor
