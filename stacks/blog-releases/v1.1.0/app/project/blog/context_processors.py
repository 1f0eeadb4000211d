from django.conf import settings

from .models import Post


def all_tags():
    """Every tag of a published post, sorted case-insensitively."""
    tags = {}
    for text in Post.objects.filter(published=True).values_list("tags", flat=True):
        for tag in text.split(","):
            tag = tag.strip()
            if tag:
                tags.setdefault(tag.lower(), tag)
    return [tags[k] for k in sorted(tags)]


def site(request):
    return {
        "fleet_version": settings.FLEET_VERSION,
        "site_domain": settings.SITE_DOMAIN,
        # Lazy: only pages that show the nav bar query it.
        "nav_tags": all_tags,
    }
