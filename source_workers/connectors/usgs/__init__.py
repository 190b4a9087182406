"""Connector ``usgs``: source.py reaches the provider, resources/ say what is staged."""
