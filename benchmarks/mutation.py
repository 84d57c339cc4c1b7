"""Mutation testing of the diffusion and nn code with mutmut (run by hand, never in CI).

Run: make mutation
     .venv/bin/python benchmarks/mutation.py [--paths minigen/nn minigen/diffusion]
                [--max-children 2] [--report-only | --rerun-survivors]

mutmut copies the package into mutants/ (git-ignored), rewrites every function of the
files under --paths into one variant per small change (a flipped operator, a changed
constant, a dropped argument...), runs the tests that reach each function against each
variant, and calls a variant "killed" when some test fails. The configuration (which
files by default, which tests, fork-server isolation for torch) is the [tool.mutmut]
section of pyproject.toml; --paths only narrows which files are mutated. Every run
starts from an empty mutants/ so that an earlier run with other --paths cannot leave
stale mutants behind; --report-only prints the report of the last run again, and
--rerun-survivors, after tests were added (same --paths, the code under them left
alone), runs only the mutants that the last run did not kill and keeps the others.

Printed: mutants in total, killed, survived, timeout, suspicious, skipped and no-tests
counts, the score killed / (total - skipped) in %, and for each survivor (and timeout,
suspicious, no-tests mutant) its file, line and the diff of the mutated line.

Limits of the tool worth knowing when reading the score: mutmut mutates the bodies of
functions and methods only (not module-level constants), and skips functions with
decorators other than @staticmethod / @classmethod (e.g. @torch.no_grad(): ddpm_sample,
ddim_sample, ddim_invert, eps_error; their helpers are mutated). It forks every mutant
from a process that has already imported the test modules, so a call made at import
time (a module-level `MIXTURE = GaussianMixture2d.ring(...)` in a test file) never sees
a mutant: only calls inside test functions count. The tests run on the CPU, so a
mutant that only drops a `device=` argument survives; such survivors are listed.

Time on the 2-core development machine, shared with other work (load 4-7),
--max-children 2: minigen/nn (about 1,970 mutants) 16 to 30 minutes, minigen/diffusion
(2,050 mutants) 40 minutes, both (the default, `make mutation`) about an hour;
--rerun-survivors after adding tests 1 to 6 minutes. Narrow --paths to one file to
stay under 10 minutes.
"""

import argparse
import ast
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from mutmut.configuration import config
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files
from mutmut.utils.format_utils import orig_function_and_class_names_from_key

ROOT = Path(__file__).resolve().parent.parent

# Runs mutmut in a child process with the files to mutate narrowed to --paths (argv[2])
# and, for --rerun-survivors, only the named mutants (argv[3:]). torch.testing's
# assert_close imports torch.distributed.tensor on its first call (1.5 s): imported
# once here, every forked test run inherits it.
RUN_MUTMUT = """
import sys
import torch.distributed.tensor
import mutmut.__main__ as mutmut_main
from mutmut.configuration import config

config().only_mutate = sys.argv[2].split(",")
run = ["run", "--max-children", sys.argv[1], *sys.argv[3:]]
mutmut_main.cli.main(run, prog_name="mutmut")
"""

STATUSES = ("killed", "survived", "timeout", "suspicious", "segfault", "no tests")
REPORTED = (
    "survived",
    "timeout",
    "suspicious",
    "segfault",
    "no tests",
    "not checked",
)


def patterns_for(paths: list[str]) -> list[str]:
    """mutmut's only_mutate globs for a list of files and folders."""
    patterns = []
    for path in paths:
        path = path.rstrip("/")
        patterns.append(path if path.endswith(".py") else path + "/*")
    return patterns


def run_mutmut(paths: list[str], max_children: int, names: list[str]) -> float:
    """A mutmut run over `paths` (from an empty mutants/ unless `names` are given,
    the mutants to run again); returns its wall time in seconds."""
    if not names:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    else:
        # Which tests reach which function is measured again (tests were added or
        # changed); without a record of the last run's settings mutmut also keeps
        # its verdicts, which a changed test selection would otherwise reset.
        (ROOT / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    env = dict(
        os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg"
    )
    patterns = ",".join(patterns_for(paths))
    command = [
        sys.executable,
        "-c",
        RUN_MUTMUT,
        str(max_children),
        patterns,
        *names,
    ]
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env=env)
    if completed.returncode != 0:
        sys.exit(f"mutmut run failed with exit code {completed.returncode}")
    return time.perf_counter() - start


def mutant_results(paths: list[str]) -> dict[str, tuple[Path, str]]:
    """Mutant name -> (source file, status) for the mutated files under `paths`."""
    config().only_mutate = patterns_for(paths)
    results = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in data.exit_code_by_key.items():
            results[name] = (path, status_by_exit_code[exit_code])
    return results


def function_start_line(path: Path, mutant_name: str) -> int:
    """Line of the `def` of the function or method that `mutant_name` mutates."""
    function_name, class_name = orig_function_and_class_names_from_key(mutant_name)
    function_name = function_name.rpartition(".")[2]
    body = ast.parse(path.read_text()).body
    if class_name is not None:
        body = next(
            node.body
            for node in body
            if isinstance(node, ast.ClassDef) and node.name == class_name
        )
    return next(
        node.lineno
        for node in body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name == function_name
    )


def changed_line(diff: str) -> int:
    """Offset (1-based, from the `def` line) of the first removed line of a diff."""
    offset = None
    for line in diff.splitlines():
        if line.startswith("@@"):
            offset = int(line.split()[1].lstrip("-").split(",")[0])
        elif offset is not None:
            if line.startswith("-"):
                return offset
            if not line.startswith("+"):
                offset += 1
    return 1


def source_line(path: Path, name: str, diff: str) -> int:
    """Line of the source file that the mutant changes (the nearest line with the
    removed text, should the file have been edited since the run)."""
    line = function_start_line(ROOT / path, name) + changed_line(diff) - 1
    removed = [row[1:].strip() for row in diff.splitlines()[2:] if row[:1] == "-"]
    lines = [text.strip() for text in (ROOT / path).read_text().splitlines()]
    matches = [
        i + 1 for i, text in enumerate(lines) if removed and text == removed[0]
    ]
    return min(matches, key=lambda i: abs(i - line), default=line)


def describe(name: str, path: Path, status: str) -> str:
    """File, line and changed lines of one mutant."""
    diff = get_diff_for_mutant(name, path=path)
    line = source_line(path, name, diff)
    changes = [
        "      " + row
        for row in diff.splitlines()[2:]
        if row[:1] in "+-" and not row.startswith("@@")
    ]
    return "\n".join([f"  {status:<10} {path}:{line}  {name}", *changes])


def report(paths: list[str]) -> None:
    """Print the counts, the score and every mutant that was not killed."""
    results = mutant_results(paths)
    if not results:
        sys.exit(
            f"no mutants of {' '.join(paths)} in mutants/: run without options"
        )
    counts = Counter(status for _, status in results.values())
    total = len(results)
    skipped = counts["skipped"]
    score = 100.0 * counts["killed"] / max(total - skipped, 1)
    print(f"\nMutation testing of {' '.join(paths)}")
    print(f"  {'mutants':<11}{total}")
    for status in (*STATUSES, "skipped"):
        print(f"  {status:<11}{counts[status]}")
    for status in sorted(set(counts) - {*STATUSES, "skipped"}):
        print(f"  {status}: {counts[status]}")
    print(
        f"  {'score':<11}{score:.1f}% killed of {total - skipped} (total - skipped)"
    )
    for name, (path, status) in sorted(results.items()):
        if status in REPORTED:
            print(describe(name, path, status))


def main() -> None:
    os.chdir(ROOT)  # mutmut reads pyproject.toml and writes mutants/ here
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_paths = [p.removesuffix("/*") for p in config().only_mutate]
    parser.add_argument("--paths", nargs="+", default=default_paths)
    parser.add_argument("--max-children", type=int, default=2)
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--report-only", action="store_true")
    again.add_argument("--rerun-survivors", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        names = []
        if args.rerun_survivors:
            results = mutant_results(args.paths)
            names = [
                name for name, (_, status) in results.items() if status in REPORTED
            ]
            if not names:
                sys.exit("no survivors of an earlier run under --paths to rerun")
        seconds = run_mutmut(args.paths, args.max_children, names)
        print(
            f"\nmutmut run: {seconds / 60:.1f} min wall, {args.max_children} children"
        )
    report(args.paths)


if __name__ == "__main__":
    main()
