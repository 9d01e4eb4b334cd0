"""``faaspub init``: scaffold a function repository from Jinja2 templates."""
