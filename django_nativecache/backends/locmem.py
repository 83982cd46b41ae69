"""Drop-in name for Django's LocMemCache settings: the same cache, in shared memory,
so every worker process of the site shares it."""

from django_nativecache.backends.shm import SharedMemoryCache


class LocMemCache(SharedMemoryCache):
    pass
