"""GitLab integration: API client, webhook job handlers, release state machine, previews, reconciliation."""
