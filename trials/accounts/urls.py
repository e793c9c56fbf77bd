from django.contrib.auth import views as auth_views
from django.urls import path

from trials.accounts import views

urlpatterns = [
    path("accounts/", views.sessions_page, name="account"),
    path("accounts/pin/", views.pin_page, name="account_pin"),
    path("accounts/2fa/", views.second_factor, name="second_factor"),
    path("accounts/2fa/setup/", views.second_factor_setup, name="second_factor_setup"),
    path("accounts/session/keepalive/", views.session_keepalive, name="session_keepalive"),
    path("accounts/password/change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("accounts/password/reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("accounts/password/reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("accounts/password/reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("accounts/password/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]
