"""`python -m tests.fuzz TARGET CORPUS_DIR [libFuzzer flags]`: fuzz one reader (see __init__.py).

CORPUS_DIR receives the target's seed files (when empty) and the inputs libFuzzer finds
interesting; pass e.g. `-runs=30000 -seed=1 -rss_limit_mb=2048 -timeout=10
-artifact_prefix=DIR/` for a fixed, reproducible budget. A crash exits non-zero with the
input saved under the artifact prefix and the Python traceback on stderr.
"""

from __future__ import annotations

import hashlib
import resource
import sys
from pathlib import Path

import atheris

# Everything a reader runs is instrumented (coverage feedback); numpy, json and the rest are not.
with atheris.instrument_imports(include=["convmigrate"]):
    import convmigrate.formats
    import convmigrate.formats.ckpt
    import convmigrate.formats.detect
    import convmigrate.formats.pickle_reader
    import convmigrate.formats.safetensors_file
    import convmigrate.formats.state_dict
    import convmigrate.formats.torch_zip
    import convmigrate.limits
    import convmigrate.untrusted  # noqa: F401

from tests.fuzz.targets import TARGETS, dictionary

DATA_LIMIT = 2 << 30


def main() -> None:
    name, corpus, flags = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    target = TARGETS[name]
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for seed in target.seeds():
            (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    folder = corpus.parent / f"{name}-scratch"  # beside the corpus: cleaned up with it
    folder.mkdir(exist_ok=True)
    # An allocation beyond 2 GiB fails as MemoryError (a crash, unless the target knows it)
    # before libFuzzer's -rss_limit_mb would kill the whole run.
    resource.setrlimit(resource.RLIMIT_DATA, (DATA_LIMIT, DATA_LIMIT))
    known: dict[str, int] = {}

    def one_input(data: bytes) -> None:
        try:
            target.run(data, folder)
        except target.known as error:
            kind = type(error).__name__
            known[kind] = known.get(kind, 0) + 1
            if known[kind] == 1:
                print(f"KNOWN {target.name}: {kind} (an open bug owned elsewhere)", file=sys.stderr, flush=True)

    dictionary_file = folder / "tokens.dict"
    dictionary_file.write_text(dictionary(target.tokens))
    atheris.Setup([sys.argv[0], *flags, f"-dict={dictionary_file}", str(corpus)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
