from allauth.account import views as account_views
from allauth.account.decorators import secure_admin_login
from allauth.mfa.base import views as mfa_views
from allauth.mfa.recovery_codes import views as recovery_code_views
from allauth.mfa.totp import views as totp_views
from allauth.socialaccount import views as socialaccount_views
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from threads_app import sso
from threads_app.views import accounts, operations

# django-allauth's pages that the dashboard uses (no sign-up, no email management; third-party
# log-in only through OpenID Connect providers, threads_app/sso.py), under its own names.
# Who may open each is in tests/test_access_matrix.py.
ACCOUNT_ROUTES = [
    path("login/", account_views.login, name="account_login"),
    path("logout/", account_views.logout, name="account_logout"),
    path("inactive/", account_views.account_inactive, name="account_inactive"),
    path("reauthenticate/", account_views.reauthenticate, name="account_reauthenticate"),
    path("password/change/", account_views.password_change, name="account_change_password"),
    path("password/set/", account_views.password_set, name="account_set_password"),
    path("password/reset/", account_views.password_reset, name="account_reset_password"),
    path(
        "password/reset/done/",
        account_views.password_reset_done,
        name="account_reset_password_done",
    ),
    re_path(
        r"^password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
        account_views.password_reset_from_key,
        name="account_reset_password_from_key",
    ),
    path(
        "password/reset/key/done/",
        account_views.password_reset_from_key_done,
        name="account_reset_password_from_key_done",
    ),
    path("2fa/", mfa_views.index, name="mfa_index"),
    path("2fa/authenticate/", mfa_views.authenticate, name="mfa_authenticate"),
    path("2fa/reauthenticate/", mfa_views.reauthenticate, name="mfa_reauthenticate"),
    path("2fa/totp/activate/", totp_views.activate_totp, name="mfa_activate_totp"),
    path("2fa/totp/deactivate/", totp_views.deactivate_totp, name="mfa_deactivate_totp"),
    path(
        "2fa/recovery-codes/",
        recovery_code_views.view_recovery_codes,
        name="mfa_view_recovery_codes",
    ),
    path(
        "2fa/recovery-codes/generate/",
        recovery_code_views.generate_recovery_codes,
        name="mfa_generate_recovery_codes",
    ),
    path(
        "2fa/recovery-codes/download/",
        recovery_code_views.download_recovery_codes,
        name="mfa_download_recovery_codes",
    ),
    # Single sign-on (OIDC_PROVIDERS): to the provider, and back (the redirect URI to register).
    path("oidc/<str:provider_id>/login/", sso.login, name="openid_connect_login"),
    path("oidc/<str:provider_id>/login/callback/", sso.callback, name="openid_connect_callback"),
    path(
        "oidc/cancelled/",
        socialaccount_views.login_cancelled,
        name="socialaccount_login_cancelled",
    ),
    # Debug mode only (a 404 otherwise): the emails the demo sent, to follow their links.
    path("dev/emails/", accounts.sent_email_list, name="sent_email_list"),
]

# The admin's log-in is allauth's too: the same lockout, two-factor and audit.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    # The log-in page moved to /accounts/login/; old links and bookmarks still arrive there.
    path(
        "login/",
        login_not_required(RedirectView.as_view(pattern_name="account_login", query_string=True)),
        name="login",
    ),
    path("accounts/", include(ACCOUNT_ROUTES)),
    path("admin/", admin.site.urls),
    # The automation API: tokens only (no session, no CSRF), answers in JSON.
    path("api/v1/", include("threads_app.api.urls")),
    # Off (404) unless METRICS_ENABLED; the deployment keeps this path to its scraper.
    path(settings.METRICS_PATH, operations.metrics, name="metrics"),
    path("", include("threads_app.urls")),
]

# A request that cannot be read answers with the app's page, never re-reading its body.
handler400 = "threads_app.views.errors.bad_request"
