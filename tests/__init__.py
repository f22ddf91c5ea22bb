"""The test suite; a package so that ``tests.support`` (the shared test helpers) imports by one dotted name."""
