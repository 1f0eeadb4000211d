# The code's release; /healthz reports it next to FLEET_VERSION.
RELEASE = "v1.1.0"
