"""Django's cache framework on native stores.

Point ``CACHES[...]["BACKEND"]`` at one of ``django_nativecache.backends.*``.
"""

__version__ = "0.1.0"
