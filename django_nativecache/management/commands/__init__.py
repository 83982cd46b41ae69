"""cache_stats, cache_clear and cache_keys (``python manage.py help <name>``)."""
