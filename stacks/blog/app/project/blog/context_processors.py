from django.conf import settings


def site(request):
    return {"fleet_version": settings.FLEET_VERSION, "site_domain": settings.SITE_DOMAIN}
