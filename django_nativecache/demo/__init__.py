"""An example Django site whose pages are cached through the four doors Django offers.

``/site/<n>/``      a section under Django's per-site cache middleware
``/page/<n>/``      a view under ``cache_page``
``/fragments/``     a template with ``{% cache %}`` fragments, one varying on ``?lang=``
``/lowlevel/<n>/``  a view using ``cache.get_or_set``
``/async/<n>/``     an async view using ``aget``/``aset``
``/plain/<n>/``     no cache and no work: what the server does with nothing to compute
``/async-plain/<n>/`` the same as an async view

Every computed part costs ``DEMO_COST_MS`` milliseconds (see ``settings``) and is written
to the work log, so hits and misses can be counted across all worker processes.
``python -m django_nativecache demo`` serves it under gunicorn and drives load at it.
"""
