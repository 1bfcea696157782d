"""The runtime type checker the test suite installs on tslens (tests/conftest.py): beartype,
with Python's numeric tower (an ``int`` is a valid ``float``, as PEP 484 says)."""

from beartype import BeartypeConf, beartype

beartype_with_tower = beartype(conf=BeartypeConf(is_pep484_tower=True))
