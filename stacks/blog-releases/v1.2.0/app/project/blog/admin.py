from django.contrib import admin

from .models import Attachment, Post


class AttachmentInline(admin.TabularInline):
    model = Attachment
    extra = 1


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "tags", "published", "created"]
    list_filter = ["published"]
    search_fields = ["title", "body", "tags"]
    prepopulated_fields = {"slug": ("title",)}
    inlines = [AttachmentInline]
