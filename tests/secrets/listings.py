"""The three listings that read a client's sealed search index (guarantee 29), and the file
writer's copy and put-back of that index row, for the tests that replay an older index put back
(test_list_index_*.py)."""

from __future__ import annotations

#: ``secret list acme``, ``secret search alpha`` (the term every path of these tests holds) and
#: ``secret list --all``
LISTINGS = ("list", "search", "list --all")


def listing(v, op, how: str):
    """The listing ``how`` names, of client acme."""
    if how == "list":
        return v.secrets.list(op, "acme")
    if how == "search":
        return v.secrets.search(op, "alpha")
    return v.secrets.list_all(op)


def acme_index(v) -> tuple:
    """Client acme's ``search_index`` row as it is now (the file writer's copy)."""
    (row,) = v.ctx.db.all(
        "SELECT s.* FROM search_index s JOIN clients c ON c.id = s.client_id WHERE c.name = 'acme'"
    )
    return tuple(row)


def put_back(conn, index: tuple) -> None:
    """The file writer puts a copied ``search_index`` row back in place of its client's."""
    conn.execute("DELETE FROM search_index WHERE client_id = ?", (index[0],))
    conn.execute(f"INSERT INTO search_index VALUES ({','.join('?' * len(index))})", index)
