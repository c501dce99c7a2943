"""The recipe-space search (``edgehad search``): which variant of a model fits a device best.

    space.py       the search space TOML: a recipe with choices and ranges; one trial's recipe
    objectives.py  objectives (accuracy, latency, size), the budget and its constraints
    trial.py       one trial: a real conversion with its recipe, then its metrics
    worker.py      ``python -m edgehad.search.worker``: one trial in a fresh process
    executor.py    where trials run: K local worker processes (a Ray executor later, same interface)
    study.py       the Optuna study: NSGA-II in generations, SQLite storage, resume
    results.py     search.json, the Pareto front's folders, the console table
    run.py         one search from inputs to outputs (edgehad.api.search)
"""
