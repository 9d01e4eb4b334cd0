"""The pipeline core: one sequence of stages over pluggable parts chosen by configuration."""
