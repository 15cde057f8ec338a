"""Prefect flows of matscreen and the ``matscreen`` command line that runs them."""
