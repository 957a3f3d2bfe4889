"""``.. agg-client-options::`` and ``.. agg-server-options::``: the commands'
references, from their real parsers.

Renders every option of ``ensemble_agg.cli.agg_client.build_parser()`` (or
``ensemble_agg.cli.agg_server.build_parser()``): flag, metavar, environment
variable, help with its default, as a table, so the docs cannot drift from
the code.
"""

from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Directive


class AggClientOptions(Directive):
    has_content = False

    @staticmethod
    def build_parser(environ):
        from ensemble_agg.cli.agg_client import build_parser

        return build_parser(environ)

    def run(self):
        parser = self.build_parser({})
        table = nodes.table()
        group = nodes.tgroup(cols=2)
        table += group
        group += nodes.colspec(colwidth=30)
        group += nodes.colspec(colwidth=70)
        head = nodes.thead()
        group += head
        head += self._row("option", "meaning")
        body = nodes.tbody()
        group += body
        for action in parser._actions:
            if not action.option_strings:
                continue
            flag = ", ".join(action.option_strings)
            if action.metavar:
                flag += f" {action.metavar}"
            text = (action.help or "") % {
                "default": action.default,
                "prog": parser.prog,
            }
            if action.choices and not all(str(c) in text for c in action.choices):
                text += f" (choices: {', '.join(map(str, action.choices))})"
            body += self._row(flag, text)
        usage = nodes.literal_block(text=parser.format_usage().strip())
        return [usage, table]

    @staticmethod
    def _row(*cells):
        row = nodes.row()
        for i, cell in enumerate(cells):
            entry = nodes.entry()
            entry += nodes.paragraph(
                "", "", nodes.literal(text=cell) if i == 0 else nodes.Text(cell)
            )
            row += entry
        return row


class AggServerOptions(AggClientOptions):
    @staticmethod
    def build_parser(environ):
        from ensemble_agg.cli.agg_server import build_parser

        return build_parser(environ)


def setup(app):
    app.add_directive("agg-client-options", AggClientOptions)
    app.add_directive("agg-server-options", AggServerOptions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
