from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from threads_app.views import operations

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Off (404) unless METRICS_ENABLED; the deployment keeps this path to its scraper.
    path(settings.METRICS_PATH, operations.metrics, name="metrics"),
    path("", include("threads_app.urls")),
]
