from django.urls import path

from jobs.api import views

# Under /api/v1/ (no trailing slashes, like the rest of the API). Ids are checked by the views, so
# that a malformed one gets the API's JSON 404 rather than Django's HTML page.
urlpatterns = [
    path("jobs", views.JobListView.as_view(), name="jobs-list"),
    path("jobs/<str:job_id>", views.JobDetailView.as_view(), name="jobs-detail"),
    path("jobs/<str:job_id>/cancel", views.JobCancelView.as_view(), name="jobs-cancel"),
    path("jobs/<str:job_id>/retry", views.JobRetryView.as_view(), name="jobs-retry"),
]
