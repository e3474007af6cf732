"""The functions both executors run: a module of their own, so that Lithops
and skeinrun ship and import the same code."""


def noop(x):
    return x


def total(results):
    return sum(results)
