"""URLs of the monitoring queries pages."""

urlpatterns: list = []
