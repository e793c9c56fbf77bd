"""URLs of the monitoring locks pages."""

urlpatterns: list = []
