"""Run Django's test classes under the database rules of Django's own runner.

pytest-django blocks every database access in a ``SimpleTestCase``. Django's runner
only refuses new connections and queries there, so a ``request_finished`` signal
(sent by ``HttpResponse.close()`` and by the closing tests) may check the health of a
connection another test left open. Several of Django's cache tests rely on that;
without this fixture they fail or pass depending on test order.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import SimpleTestCase


@pytest.fixture(autouse=True)
def _django_runner_db_rules(
    request: pytest.FixtureRequest, django_db_blocker: object
) -> Iterator[None]:
    cls = getattr(request, "cls", None)
    if cls is not None and issubclass(cls, SimpleTestCase) and not cls.databases:
        # Django's SimpleTestCase still refuses connect() and cursor() itself.
        with django_db_blocker.unblock():  # type: ignore[attr-defined]
            yield
    else:
        yield
