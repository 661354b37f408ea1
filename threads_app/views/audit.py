"""Views: thin, reads through selectors, writes through services."""
