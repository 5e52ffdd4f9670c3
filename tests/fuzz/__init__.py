"""Coverage-guided fuzzing of every reader with atheris (libFuzzer for Python), issue 12.

`python -m tests.fuzz TARGET [libFuzzer flags]` fuzzes one reader: the readers' modules are
imported under atheris' instrumentation, so libFuzzer sees which branches each input reaches
and mutates towards new ones, starting from the valid seed files of `targets.py`. The one
acceptable outcome per input is a Checkpoint (every tensor's bytes then read to the end) or
convmigrate's one-line `ConvmigrateError`; any other exception is a crash, and libFuzzer's own
`-rss_limit_mb` and `-timeout` turn a memory blow-up or a hang into one. tests/test_fuzz.py
runs each target for a fixed number of executions in CI; every crash found becomes a corpus
case (tests/corpus).
"""
