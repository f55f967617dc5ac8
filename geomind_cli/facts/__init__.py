"""Facts without code behind them: modalities, bands, statistics, classes and colours.

Importable by the engine, the tasks and the models alike, and free of torch, so that the engine (and a Dask worker
or a test that only reads scenes) never pays for loading it.
"""
