"""Stand-in for the ais_bench wheel (tests only): ``ais_bench.infer.interface.InferSession``
and ``python -m ais_bench`` behave like the real ones on the stand-in .om files."""
