"""URLs of the signature and protocol-deviation pages (locks are applied in the admin: locks/admin.py)."""

from django.urls import path

from trials.monitoring.locks import views as views_locks

urlpatterns = [
    path("participants/<int:pk>/signature/", views_locks.signature_casebook, name="signature_casebook"),
    path("visits/<int:visit_pk>/signature/", views_locks.signature_visit, name="signature_visit"),
    path("participants/<int:pk>/deviations/", views_locks.deviation_log, name="deviation_log"),
    path(
        "participants/<int:pk>/deviations/<int:deviation_pk>/decide/",
        views_locks.deviation_decide,
        name="deviation_decide",
    ),
]
