from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from trials.api import pages, views

router = SimpleRouter(use_regex_path=False)
router.register("trials", views.TrialViewSet, basename="api-trial")
router.register("sites", views.SiteViewSet, basename="api-site")
router.register("visit-plan", views.VisitDefinitionViewSet, basename="api-visit-definition")
router.register("crfs", views.CrfDefinitionViewSet, basename="api-crf")
router.register("participants", views.ParticipantViewSet, basename="api-participant")
router.register("visits", views.VisitViewSet, basename="api-visit")
router.register("entries", views.CrfEntryViewSet, basename="api-entry")
router.register("adverse-events", views.AdverseEventViewSet, basename="api-ae")
router.register("queries", views.QueryViewSet, basename="api-query")
router.register("exports", views.ExportViewSet, basename="api-export")

urlpatterns = [
    path("api/v1/", include(router.urls)),
    path("api/v1/labs/import/", views.LabImportView.as_view(), name="api_labs_import"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", pages.docs_page, name="api_docs"),
    path("api/docs/swagger/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_swagger"),
    path("accounts/api-tokens/", pages.tokens_page, name="api_tokens"),
    path("accounts/api-tokens/<int:pk>/revoke/", pages.token_revoke_view, name="api_token_revoke"),
    re_path(r"^api/v1/", views.NotFoundView.as_view()),  # any other API path: a JSON 404, logged
]
