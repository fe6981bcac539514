"""The built-in plugins, installed as ``curator_plugins``.

Each module registers itself through the ``curator`` entry-point group, the
same way a third-party package does. A complete third-party filter is this
small::

    # my_filter.py, with in pyproject.toml:
    # [project.entry-points.curator]
    # short_rationales = "my_filter"
    from dataclasses import dataclass

    import pyarrow.compute as pc
    from curator import Filter, Selection, hookimpl, select_option


    @dataclass(kw_only=True)
    class ShortRationales(Filter):
        name = "short_rationales"
        columns = ("rationale_chars",)
        scope = "row"  # a score depends on its own row only (the default, "group": on its group)
        score_meaning = {"rationale_chars": "lower"}  # select keeps the low end
        max_chars: int = select_option(2000)

        def score(self, batch, context):
            return {"rationale_chars": pc.utf8_length(batch["rationale"])}

        def select(self, batch, stats):
            return Selection(keep=pc.less_equal(batch["rationale_chars"], self.max_chars))


    @hookimpl
    def register_filters(register):
        register(ShortRationales)
"""
