"""The work of a screening campaign: plain functions over plain data, wrapped as Prefect tasks."""
