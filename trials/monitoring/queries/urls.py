"""URLs of the site's query pages (reviewers work in the admin: admin_queries.py)."""

from django.urls import path

from trials.monitoring import views_queries

urlpatterns = [
    path("trials/<str:code>/sites/<str:site_code>/queries/", views_queries.site_queries, name="site_queries"),
    path("queries/<int:pk>/answer/", views_queries.query_answer, name="query_answer"),
]
