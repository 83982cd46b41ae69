"""Management commands of django_nativecache: cache_stats, cache_clear, cache_keys."""
