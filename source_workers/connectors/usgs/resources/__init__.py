"""The resources of ``usgs``: one file per resource, named after it."""
