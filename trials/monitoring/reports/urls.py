"""URLs of the operational reports."""

from django.urls import path

from trials.monitoring.reports import views

urlpatterns = [
    path("trials/<str:code>/reports/", views.reports_page, name="trial_reports"),
    path("trials/<str:code>/reports/<slug:report>.csv", views.report_csv, name="trial_report_csv"),
]
