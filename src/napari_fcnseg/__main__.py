"""``python -m napari_fcnseg`` runs the ``fcnseg`` command."""

import sys

from .cli import main

sys.exit(main())
