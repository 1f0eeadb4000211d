from django.urls import path

from . import views

urlpatterns = [
    path("", views.post_list, name="post_list"),
    path("posts/<slug:slug>/", views.post_detail, name="post_detail"),
    path("posts/<slug:slug>/comments/", views.comment_create, name="comment_create"),
    path("posts/<slug:slug>/comments.json", views.comments_json, name="comments_json"),
    path("tags/<path:tag>/", views.tag_posts, name="tag"),
    path("api/posts.json", views.api_posts, name="api_posts"),
    path("healthz", views.healthz, name="healthz"),
]
