# An app module that imports a package that is not installed: the error must name that package.
from __future__ import annotations

import laurelin_test_not_installed_dependency  # noqa: F401

application = None
