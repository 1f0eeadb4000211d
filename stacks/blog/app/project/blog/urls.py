from django.urls import path

from . import views

urlpatterns = [
    path("", views.post_list, name="post_list"),
    path("posts/<slug:slug>/", views.post_detail, name="post_detail"),
    path("api/posts.json", views.api_posts, name="api_posts"),
    path("healthz", views.healthz, name="healthz"),
]
