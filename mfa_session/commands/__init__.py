"""One module per verb: ``add_parser`` builds its argparse sub-parser, ``run`` does it.

Only the CLI layer (``cli`` and these modules) prints or reads arguments; the
work itself lives in the core modules one level up.
"""
