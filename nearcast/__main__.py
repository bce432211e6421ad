"""``python -m nearcast``: the ``nearcast`` command."""

from nearcast.service.cli import app

app(prog_name="nearcast")
