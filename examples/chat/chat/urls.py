# HTTP pages of the chat: the lobby and one page per room.
from django.urls import path

from chat import views

urlpatterns = [
    path("", views.index, name="index"),
    path("<str:room_name>/", views.room, name="room"),
]
