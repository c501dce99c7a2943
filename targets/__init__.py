"""Device descriptions (TOML) and their JSON Schema, shipped in the wheel as ``edgehad.target_files``.

This folder stays at the top of the repository (see the README's layout);
pyproject.toml maps it into the package so that ``importlib.resources`` finds
the same files in a checkout, an editable install and a wheel. This file
exists so that an editable install can import the mapped package.
"""
