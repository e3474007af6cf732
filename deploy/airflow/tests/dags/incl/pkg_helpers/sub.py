"""Shipped by a dotted name: include_modules=["pkg_helpers.sub"] ships the package pkg_helpers."""


def square(x):
    return x * x
