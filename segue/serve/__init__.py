"""`segue serve`: a local web page to try a model by ear (continue, generate, resynthesize).

    engine.py  one AudioLM loaded once, one worker thread, a bounded queue of jobs (no HTTP);
    forms.py   the page's form fields and uploads -> a checked job, or a one-line UserError;
    app.py     the ASGI app (Starlette): the page, its JSON API, the results;
    static/    the page itself (one HTML file, its script and style; nothing from the network).

The command (segue/commands/serve.py) loads the model, builds the app and runs it with uvicorn;
docs/serve.md describes the page, the API and the limits. Needs the `serve` extra.
"""
