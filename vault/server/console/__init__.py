"""The web console (docs/console.md): server-rendered pages at ``/`` in the ``cvault serve``
process, over the same pool, facade, policy and audit log as the JSON API.

Nothing here decides who may do what: every page calls the facade as the signed-in principal and
shows what the facade answers, refusals included. This package adds only what a browser needs:
the session cookie, CSRF tokens, security headers, forms and templates (Jinja2, imported by the
server only) and a small script (``static/console.js``, no inline script or style anywhere).
"""
