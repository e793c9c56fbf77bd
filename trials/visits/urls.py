from django.urls import path

from trials.visits import views

urlpatterns = [
    path("trials/<str:code>/sites/<str:site_code>/participants/", views.participant_list, name="participant_list"),
    path("visits/<int:visit_pk>/crf/<str:crf_code>/", views.crf_entry, name="crf_entry"),
    path("visits/<int:visit_pk>/date/", views.visit_date, name="visit_date"),
    path("visits/<int:visit_pk>/missed/", views.visit_mark, name="visit_mark"),
    path("participants/<int:pk>/logs/<str:crf_code>/add/", views.log_record_add, name="log_record_add"),
    path("participants/<int:pk>/visits/new/", views.visit_unscheduled, name="visit_unscheduled"),
    path("files/<uuid:file_id>/", views.crf_file, name="crf_file"),
    path("files/<uuid:file_id>/thumbnail/", views.crf_file_thumbnail, name="crf_file_thumbnail"),
    path("calendar/", views.coordinator_calendar, name="coordinator_calendar"),
    path("calendar/<str:token>.ics", views.calendar_feed, name="calendar_feed"),
]
