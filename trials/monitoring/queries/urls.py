"""URLs of the site's query pages (reviewers work in the admin: queries/admin.py)."""

from django.urls import path

from trials.monitoring.queries import views as views_queries

urlpatterns = [
    path("trials/<str:code>/sites/<str:site_code>/queries/", views_queries.site_queries, name="site_queries"),
    path("queries/<int:pk>/answer/", views_queries.query_answer, name="query_answer"),
]
