"""Test suite for django-nativecache (pytest, pytest-django)."""
