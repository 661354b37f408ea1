from django.contrib.auth.views import LoginView
from django.urls import include, path

from tests.oidc_provider import views

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", LoginView.as_view(template_name="login.html"), name="login"),
    path("__admin__/user", views.user),
    path("__admin__/client", views.client),
    path("__admin__/misbehave", views.misbehave),
]
