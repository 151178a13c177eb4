"""HTML endpoints of the control panel, by area; the URL map is web/routes.py."""
