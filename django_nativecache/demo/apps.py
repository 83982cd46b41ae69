from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "django_nativecache.demo"
    label = "nativecache_demo"
