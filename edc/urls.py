from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from edc import views

urlpatterns = [
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("trials.accounts.urls")),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("language/", views.language_set, name="language_set"),
    path("", include("trials.protocol.urls")),
    path("", include("trials.visits.urls")),
    path("", include("trials.participants.urls")),
    path("", include("trials.safety.urls")),
    path("", include("trials.monitoring.urls")),
    path("", include("trials.exports.urls")),
    path("", include("trials.epro.urls")),
    path("", include("trials.build.urls")),
    path("", include("trials.api.urls")),
]
