"""Lab fixtures for tests/lab. (Once tests/conftest.py does `from lab.fixtures import *`
for the whole suite, this import is redundant but harmless.)"""

from lab.fixtures import *  # noqa: F403
