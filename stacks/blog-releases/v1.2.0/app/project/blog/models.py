import os

from django.db import models
from django.urls import reverse


def split_tags(text):
    """"go, Docker ,,deploy" -> ["go", "Docker", "deploy"] (order kept,
    duplicates dropped case-insensitively)."""
    seen, tags = set(), []
    for tag in (text or "").split(","):
        tag = tag.strip()
        if tag and tag.lower() not in seen:
            seen.add(tag.lower())
            tags.append(tag)
    return tags


class Post(models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    body = models.TextField()
    tags = models.CharField(
        max_length=500, blank=True, help_text="Comma-separated, e.g. go, docker")
    image = models.ImageField(upload_to="posts/", blank=True)
    published = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("post_detail", args=[self.slug])

    @property
    def tag_list(self):
        return split_tags(self.tags)


class Attachment(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to="attachments/")
    name = models.CharField(max_length=200, blank=True, help_text="Link text; the file name when blank")

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if not self.name and self.file:
            self.name = os.path.basename(self.file.name)
        super().save(*args, **kwargs)


class WriteJournal(models.Model):
    """One row per successful unsafe request (see FreezeMiddleware);
    blog-writes counts them for fleet."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)

    class Meta:
        ordering = ["-at"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.method} {self.path}"
