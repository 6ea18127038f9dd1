"""Files the plugin ships besides code: the icon of its manifest."""
