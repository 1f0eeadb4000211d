from django.contrib import admin

from .models import Post


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "tags", "published", "created"]
    list_filter = ["published"]
    search_fields = ["title", "body", "tags"]
    prepopulated_fields = {"slug": ("title",)}
