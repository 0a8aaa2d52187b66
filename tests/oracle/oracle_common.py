"""Bookkeeping shared by the oracle scripts: a failed check, `need`, and the per-case report."""
import time
import traceback


class Failure(Exception):
    """A check failed; the message says exactly what differs."""


def need(cond, msg):
    if not cond:
        raise Failure(msg)


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def case(self, name, fn):
        """Run one case; print one line `ok   name: detail` or `FAIL name: reason`."""
        t0 = time.perf_counter()
        try:
            detail = fn()
        except Failure as e:
            self.failed += 1
            self.failures.append(f"{name}: {e}")
            print(f"FAIL {name}: {e} ({time.perf_counter() - t0:.2f} s)", flush=True)
            return None
        except Exception as e:  # noqa: BLE001 - any crash of a case is a failure of that case
            self.failed += 1
            tb = traceback.format_exc(limit=3).strip().splitlines()
            self.failures.append(f"{name}: {type(e).__name__}: {e}")
            print(f"FAIL {name}: {type(e).__name__}: {e} [{' | '.join(tb[-3:])}] "
                  f"({time.perf_counter() - t0:.2f} s)", flush=True)
            return None
        self.passed += 1
        print(f"ok   {name}: {detail} ({time.perf_counter() - t0:.2f} s)", flush=True)
        return detail


def shared_stems(*groups):
    """Stems of the given groups of tests/shared_corpus.txt, the one selection of shared models
    that the cargo suites (tests/common/mod.rs) and these oracles share. `supported` = the families
    postmerge merges; other families are listed as `unsupported` and asserted by the cargo tests."""
    import pathlib

    lst = pathlib.Path(__file__).resolve().parents[1] / "shared_corpus.txt"
    out = []
    for line in lst.read_text().splitlines():
        words = line.split()
        if words and not words[0].startswith("#") and words[0] in groups:
            out.append(words[1])
    return out
