"""Qt widgets and workers: the only place that imports napari, qtpy and magicgui."""
