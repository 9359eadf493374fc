"""The command-line application: `ktransfer train | evaluate | export | predict | report | demo`.

Built on the library (`ktransfer.*`) and apart from it: `config` (the YAML
run schema), `train` (a run folder from a config), `report`, `demo`, `cli`.
"""
