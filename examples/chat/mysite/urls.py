# URLs of the chat example: the chat app owns the site.
from django.urls import include, path

urlpatterns = [
    path("chat/", include("chat.urls")),
    path("", include("chat.urls")),
]
