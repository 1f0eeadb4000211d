from django.contrib import admin

from .models import Attachment, Comment, Post


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


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ["author", "post", "status", "created", "checked_at"]
    list_filter = ["status"]
    search_fields = ["author", "email", "body"]
    readonly_fields = ["user_ip", "user_agent", "created", "checked_at"]
    actions = ["approve", "hold"]

    @admin.action(description="Approve the selected comments")
    def approve(self, request, queryset):
        queryset.update(status=Comment.APPROVED)

    @admin.action(description="Hold the selected comments")
    def hold(self, request, queryset):
        queryset.update(status=Comment.HELD)
