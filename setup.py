"""Package discovery for the ``invoicesync`` namespace.

Metadata lives in pyproject.toml. This file only maps the three folders at the
repository root (SPEC section 9) onto sub-packages of the PEP 420 namespace
``invoicesync`` -- a mapping that pyproject.toml cannot express with package
discovery -- so that nothing installs a top-level ``daemon`` or ``plugins``.
"""

from setuptools import find_packages, setup

ROOTS = {
    "daemon": "invoicesync.daemon",
    "plugins": "invoicesync.plugins",
    "connectors_builtin": "invoicesync.connectors_builtin",
}

packages: list[str] = []
for folder, name in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir={name: folder for folder, name in ROOTS.items()})
