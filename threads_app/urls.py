from django.urls import path

from threads_app.views import audit, keys, teams, threads

app_name = "threads_app"

thread_urls = [
    path("", threads.thread_list, name="thread_list"),
]

key_urls = []

team_urls = []

audit_urls = []

urlpatterns = thread_urls + key_urls + team_urls + audit_urls
