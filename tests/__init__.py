"""vidgen test suite (a regular package, so `tests.conftest` is ours, not a site-packages `tests`)."""
