from django.urls import path

from trials.safety import summary_views, views

urlpatterns = [
    path("participants/<int:pk>/adverse-events/", views.participant_aes, name="participant_aes"),
    path("participants/<int:pk>/adverse-events/new/", views.ae_edit, name="ae_new"),
    path("participants/<int:pk>/adverse-events/<int:number>/", views.ae_edit, name="ae_edit"),
    path("participants/<int:pk>/adverse-events/<int:number>/report/", views.ae_report, name="ae_report"),
    path("trials/<str:code>/sites/<str:site_code>/adverse-events/", views.site_aes, name="site_aes"),
    path("safety/clocks/", views.clock_dashboard, name="clock_dashboard"),
    path("safety/clocks/<int:pk>/report/", views.clock_report, name="clock_report"),
    path("safety/expectedness/", views.expectedness_list, name="expectedness_list"),
    path("safety/expectedness/<int:pk>/assess/", views.expectedness_assess, name="expectedness_assess"),
    path("safety/coding-terms/", views.coding_term_search, name="coding_term_search"),
    path("trials/<str:code>/safety/", summary_views.safety_summary, name="safety_summary"),
    path("trials/<str:code>/safety/summary.csv", summary_views.safety_summary_csv, name="safety_summary_csv"),
]
