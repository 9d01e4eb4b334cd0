"""Runtime base images faaspub builds itself."""
