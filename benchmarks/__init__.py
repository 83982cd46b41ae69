"""Side-by-side benchmarks of django-nativecache's backends against their peers.

Run from the repository root with ``python -m benchmarks.run`` (see ``benchmarks/run.py``).
"""
