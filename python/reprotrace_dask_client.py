"""Client preload that ``reprotrace run --dask`` gives every Dask client of the
traced tree (``DASK_DISTRIBUTED__CLIENT__PRELOAD``): the client registers
reprotrace's plugins on the cluster, and when it closes it collects its
workers' audits into the directory given as ``--reports`` (from
``DASK_DISTRIBUTED__CLIENT__PRELOAD_ARGV``), which reprotrace merges into the
run's manifest. See reprotrace/dask.py.
"""
import os
import sys

import click

# Distributed imports this file by path; the reprotrace package sits beside it.
_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from reprotrace import dask as _reprotrace_dask  # noqa: E402


@click.command()
@click.option("--reports", required=True, type=click.Path(exists=True, file_okay=False))
async def dask_setup(client, reports):
    await _reprotrace_dask.setup_client(client, reports)


async def dask_teardown(client):
    await _reprotrace_dask.teardown_client(client)
