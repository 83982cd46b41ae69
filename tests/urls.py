"""An empty URLconf: the cache tests build requests by hand and resolve no URLs."""

urlpatterns: list = []
