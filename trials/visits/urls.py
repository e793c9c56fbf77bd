from django.urls import path

from trials.visits import views

urlpatterns = [
    path("trials/<str:code>/sites/<str:site_code>/participants/", views.participant_list, name="participant_list"),
    path("participants/<int:pk>/", views.participant_dashboard, name="participant_dashboard"),
    path("visits/<int:visit_pk>/crf/<str:crf_code>/", views.crf_entry, name="crf_entry"),
]
