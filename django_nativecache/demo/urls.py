from django.urls import path

from django_nativecache.demo import views

urlpatterns = [
    path("site/<int:n>/", views.site_page, name="site"),
    path("page/<int:n>/", views.view_page, name="page"),
    path("fragments/", views.fragments, name="fragments"),
    path("lowlevel/<int:n>/", views.lowlevel, name="lowlevel"),
    path("async/<int:n>/", views.async_page, name="async"),
    path("plain/<int:n>/", views.plain, name="plain"),
    path("async-plain/<int:n>/", views.async_plain, name="async-plain"),
]
