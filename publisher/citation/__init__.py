"""Citation metadata from ``CITATION.cff`` (Citation File Format 1.2.0) and its crosswalks."""
