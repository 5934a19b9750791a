"""Headless CLI commands. Keep these modules light: heavy imports go inside ``run``."""
