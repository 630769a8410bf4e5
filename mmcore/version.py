"""The version of mmcore and the name it is installed under (a leaf: anything may import it)."""

__version__ = "0.1.0"

#: the core's distribution name: ``pip install mmcore-torch`` installs the package ``mmcore``
#: (the name ``mmcore`` on PyPI belongs to an unrelated project)
DISTRIBUTION = "mmcore-torch"

#: the names under which earlier runs and bundles recorded the core's version; read as
#: :data:`DISTRIBUTION`, never looked up as installed packages
LEGACY_DISTRIBUTIONS = ("mmcore",)


def core_distribution(name: str) -> str:
    """``name``, or :data:`DISTRIBUTION` when ``name`` is one the core was recorded under."""
    return DISTRIBUTION if name in LEGACY_DISTRIBUTIONS else name


def with_core_distribution(versions: dict[str, str]) -> dict[str, str]:
    """A recorded ``{distribution: version}`` with the core under :data:`DISTRIBUTION`."""
    return {core_distribution(name): version for name, version in versions.items()}
