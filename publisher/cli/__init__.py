"""The ``faaspub`` command line: thin verbs over the pipeline core."""
