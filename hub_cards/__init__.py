"""Jinja templates for model cards, installed as ``timm_transfusion.hub_cards`` (see pyproject.toml)."""
