"""Serves ``N`` requests to the demo site in this process, through Django's WSGI handler.

``python -m benchmarks.http_cost_driver PREFIX PAGES WARMUP N``: with the demo's settings from
the environment (as ``demo/run.py:site_env`` makes it), asks for the ``PAGES`` pages
``PREFIX<n>/`` in turn, ``WARMUP`` requests first (each page is computed and cached on its
first request, and by the end the interpreter has specialised the code), then ``N`` more,
and checks every answer. The http-cost group runs it under callgrind with two values of
``N``: the difference in instructions, divided by the difference in ``N``, is what one
request costs.
"""

from __future__ import annotations

import io
import sys

import django
from django.core.handlers.wsgi import WSGIHandler


def environ(path: str) -> dict[str, object]:
    """What gunicorn hands the application for ``GET path`` from wrk."""
    return {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.multithread": False,
        "wsgi.multiprocess": True, "wsgi.run_once": False,
    }


def main(argv: list[str]) -> int:
    prefix, pages, warmup, n = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    django.setup(set_prefix=False)
    handler = WSGIHandler()
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc: object = None) -> None:
        status.append(line)

    paths = [f"{prefix}{i}/" for i in range(pages)]
    for i in range(warmup + n):
        path = paths[i % pages]
        response = handler(environ(path), start_response)
        try:
            body = b"".join(response)
        finally:
            response.close()  # type: ignore[attr-defined]
        if not status.pop().startswith("200") or f" page {i % pages}".encode() not in body:
            print(f"GET {path}: unexpected answer {body[:200]!r}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
