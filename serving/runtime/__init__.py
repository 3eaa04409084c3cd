"""The runtime layer: everything a bento needs to score a customer, and nothing else.

Bottom-up the project reads config -> features -> serving.runtime -> training / serving -> CLI. Training imports
this package to write models in the form the service loads (bundle, calibration); the service, the batch job and
the Spark job import it to score. Nothing here imports ``training``: a test checks it.
"""
