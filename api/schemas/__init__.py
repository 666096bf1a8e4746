"""Request and response models of the web API (pydantic; request models refuse unknown fields)."""
