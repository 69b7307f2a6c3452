"""Test package (a regular package, so `tests.*` imports never resolve to a site-packages `tests`)."""
