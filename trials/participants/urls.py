from django.urls import path

from trials.participants import views

urlpatterns = [
    path("trials/<str:code>/sites/<str:site_code>/participants/new/", views.participant_new, name="participant_new"),
    path("trials/<str:code>/screening-log/", views.trial_screening_log, name="trial_screening_log"),
    path("trials/<str:code>/cohorts/", views.trial_cohorts, name="trial_cohorts"),
    path("trials/<str:code>/allocation-list/", views.trial_allocation_list, name="trial_allocation_list"),
    path("trials/<str:code>/allocation-list/import/", views.trial_allocation_list_import, name="trial_allocation_list_import"),
    path("participants/<int:pk>/consent/", views.participant_consent, name="participant_consent"),
    path("participants/<int:pk>/eligibility/", views.participant_eligibility, name="participant_eligibility"),
    path("participants/<int:pk>/screen-failure/", views.participant_screen_fail, name="participant_screen_fail"),
    path("participants/<int:pk>/enrol/", views.participant_enrol, name="participant_enrol"),
    path("participants/<int:pk>/allocate/", views.participant_allocate, name="participant_allocate"),
    path("participants/<int:pk>/treatment/", views.participant_treatment, name="participant_treatment"),
    path("participants/<int:pk>/status/", views.participant_status, name="participant_status"),
    path("participants/<int:pk>/dates/", views.participant_anchor, name="participant_anchor"),
    path("participants/<int:pk>/unblind/", views.participant_unblind, name="participant_unblind"),
]
