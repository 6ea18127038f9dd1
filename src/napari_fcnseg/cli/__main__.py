"""``python -m napari_fcnseg.cli`` runs the ``fcnseg`` command."""

import sys

from . import main

sys.exit(main())
