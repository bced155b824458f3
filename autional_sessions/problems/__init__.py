"""Error responses: the problem factory and catalogue (`factory`), the pages their `type` URIs point at
(`pages`), and their texts in the caller's language (`languages`, with the gettext catalogues in `locale/`
and the Babel extractor of the spec's titles, `babel_extractor`)."""
