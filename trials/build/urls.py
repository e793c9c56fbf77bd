"""Study-build pages."""

from django.urls import path

from trials.build import views

urlpatterns = [
    path("build/", views.build_home, name="build_home"),
    path("build/new/", views.build_trial, name="build_new"),
    path("build/new/apply/", views.build_apply, name="build_new_apply"),
    path("build/new/impact.<str:fmt>", views.build_impact_download, name="build_new_impact"),
    path("build/<str:code>/", views.build_trial, name="build_trial"),
    path("build/<str:code>/apply/", views.build_apply, name="build_apply"),
    path("build/<str:code>/impact.<str:fmt>", views.build_impact_download, name="build_impact"),
    path("build/<str:code>/amendments/", views.build_history, name="build_history"),
    path("build/<str:code>/amendments/<int:number>.<str:fmt>", views.amendment_download, name="amendment_download"),
    path("trials/<str:code>/crfs/", views.crf_list, name="crf_list"),
    path("trials/<str:code>/crfs/<str:crf>/v<int:version>/", views.crf_print, name="crf_print"),
]
