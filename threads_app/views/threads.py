from django.shortcuts import render
from django.views.decorators.http import require_GET

from threads_app import selectors


@require_GET
def thread_list(request):
    threads = selectors.visible_threads(request.user)[:25]
    return render(request, "threads_app/thread_list.html", {"threads": threads})
