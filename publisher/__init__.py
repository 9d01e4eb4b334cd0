"""faaspub: publish scientific functions from GitLab as tested, citable, event-triggered FaaS actions."""

__version__ = "0.1.0"
