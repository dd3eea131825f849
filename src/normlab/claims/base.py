"""What every claim module builds on: `Claim` (what the paper reports, our setup, the criterion, `analyze`),
`Analysis` (its table, plots and the protocol's tests), how runs are matched to a profile, and `write_report`,
which turns an analysis into results/<claim>/README.md and summary.json."""

from __future__ import annotations

import datetime
import functools
import json
import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from normlab import protocol
from normlab.config import Config, identity
from normlab.protocol import Finding, Precondition, TestResult
from normlab.runlog import write_json
from normlab.runs import Run, load_runs


@dataclass
class Analysis:
    table: str  # markdown
    numbers: dict  # the measurements, per arm
    tests: list[TestResult]  # the claim's tests: the verdict follows from them (protocol.verdict)
    reason: str  # one sentence: why this verdict, with the numbers
    plots: list[str] = field(default_factory=list)  # file names written into the output dir
    notes: str = ""
    reported: list[TestResult] = field(default_factory=list)  # intervals shown beside, not part of the verdict
    preconditions: list[Precondition] = field(default_factory=list)  # a failed one: "not testable here"
    findings: list[Finding] = field(default_factory=list)  # the paper's statements, each decided by its tests

    def __post_init__(self) -> None:
        primary = sorted(t.name for t in self.tests if t.statement == "primary")
        decided = sorted(t.name for f in self.findings for t in f.tests)
        if self.findings and primary != decided:
            raise ValueError(f"the primary tests {primary} are not those of the statements {decided}")

    @property
    def verdict(self) -> str:
        if self.findings:
            return protocol.claim_verdict(self.findings, self.preconditions)
        return protocol.verdict(self.tests, self.preconditions)


def statements_table(findings: list[Finding]) -> str:
    """The paper's statements, each with its own verdict and the tests that decide it (estimate [95% interval])."""
    rows = []
    for f in findings:
        evidence = "<br>".join(
            f"{t.name}: {t.estimate:+.2f} {fmt_interval(t.ci95, t.method)} ({t.outcome})" for t in f.tests
        )
        failed = [p for p in f.preconditions if not p.holds]
        evidence += "".join(f"<br>precondition {p.name}: {p.value:.2f}, needs {p.required}" for p in failed)
        verdict = f.verdict.replace("_", " ")
        rows.append(
            f"| {f.statement.key} | “{f.statement.quote}” | {f.statement.source} | {f.statement.test} | "
            f"**{verdict}** | {evidence} |"
        )
    header = "| statement | the paper says | where | how we test it | verdict | tests: estimate [95% interval] |"
    return "\n".join([header, "|---|---|---|---|---|---|", *rows])


def fmt_interval(ci95, method: str = "") -> str:
    """`[low, high]`; an equivalence test's interval is its 90% one (two one-sided tests), and says so."""
    low, high = ci95  # an infinite bound is read back from summary.json as null
    if low is None or high is None or not abs(low) < float("inf"):
        return "none"
    return f"[{low:+.2f}, {high:+.2f}]" + (" (90%)" if "TOST" in method else "")


def fmt_test(t: dict) -> str:
    """A test of a summary.json: `name: estimate [low, high] (outcome)`, in the test's own units; with the
    smallest effect its seeds detect, and whether it is secondary, where the summary says (newer reports)."""
    extra = (
        f"; detectable {t['detectable']:.2f}"
        if isinstance(t.get("detectable"), (int, float)) and math.isfinite(t["detectable"])
        else ""
    )
    extra += "; secondary" if t.get("statement") == "secondary" else ""
    estimate = "n/a" if t["estimate"] is None else f"{t['estimate']:+.2f}"  # NaN (no runs) is read back as null
    return f"{t['name']}: {estimate} {fmt_interval(t['ci95'], t.get('method', ''))} ({t['outcome']}{extra})"


def fmt_statements(summary: dict) -> str:
    """A summary.json's statements as `key: verdict`, one a line (markdown <br>); "" where it has none."""
    return "<br>".join(f"{s['key']}: **{s['verdict'].replace('_', ' ')}**" for s in summary.get("statements", []))


def label(summary: dict) -> str:
    """`quick`, `cpu, tuned`: a summary's profile and, when not the fixed lr, its variant."""
    variant = summary.get("variant", "fixed lr")
    return summary["profile"] + ("" if variant == "fixed lr" else f", {variant}")


def tests_table(tests: list[TestResult], reported: list[TestResult]) -> str:
    """The tests as a markdown table: statement (primary decides), estimate, 95% interval, margin, outcome, the
    smallest effect the seeds detect, method, runs per arm."""

    def role(t: TestResult) -> str:
        return "reported" if t not in tests else t.statement

    rows = [
        f"| {t.name} | {role(t)} | {t.estimate:+.2f} | {fmt_interval(t.ci95, t.method)} | {t.margin:+.3g} | "
        f"{t.outcome} | {t.detectable:.2f} | {t.method} | {len(t.favoured)} / {len(t.baseline)} |"
        for t in [*tests, *reported]
    ]
    header = (
        "| test (paper's direction: positive) | statement | estimate | 95% interval | margin | outcome | detectable "
        "| method | runs |"
    )
    notes = [f"- {t.name}: {t.note}" for t in [*tests, *reported] if t.note]
    return "\n".join([header, "|---|---|---|---|---|---|---|---|---|", *rows, "", *notes])


def preconditions_table(preconditions: list[Precondition]) -> str:
    """The conditions under which the tests can speak, each with its value and bound; what would be needed."""
    if not preconditions:
        return "No preconditions stated."
    rows = [
        f"| {p.name}{f' (conditions: {p.scope})' if p.scope else ''} | {p.value:.2f} | {p.required} | "
        f"{'holds' if p.holds else '**fails**'} | {p.need or '—'} |"
        for p in preconditions
    ]
    return "\n".join(["| precondition | value | required | | what would be needed |", "|---|---|---|---|---|", *rows])


def arms(runs) -> dict[str, list]:
    """Runs grouped by everything in their config that makes a run (config.identity) but the seed."""
    out: dict[str, list] = {}
    for run in runs:
        out.setdefault(identity(run.config, seed=False), []).append(run)
    return out


@dataclass(frozen=True)
class Claim:
    name: str
    title: str
    paper: str  # markdown: the paper's figure/table for the same quantity
    setup: str  # markdown: our setting and how it differs
    criterion: str
    analyze: Callable[[list, Path], Analysis]  # (runs, out_dir) -> Analysis
    # the report the verdict is read from, under results/<claim>/ ("": the quick profile; "cpu/tuned": the cpu
    # profile at per-arm tuned lrs), and why that one
    reference: str = ""
    reference_why: str = "the one profile run at 5 seeds under the protocol (no tuned or longer one was made)"
    # a profile whose design is not one full grid: further sweeps of its experiment, each a line of overrides
    # (`run.py -m experiment=<claim>_<profile> <line>`) run after the grid, into the same runs/<experiment>/
    sweeps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # "reproduction" of a paper's claim, or a "mechanism check": a property a norm has by construction, measured
    # (in_contrast); the index lists mechanism checks apart, with their own words (MECHANISM_WORDS)
    kind: str = "reproduction"
    # `normlab verify`: how far (accuracy points) a re-made run may be from its archived record at any evaluation
    # (0: identical; runs on one CPU build are deterministic)
    verify_tolerance: float = 0.0


MECHANISM_WORDS = {"reproduced": "mechanism confirmed", "not_reproduced": "mechanism not confirmed"}


def verdict_words(claim: Claim, verdict: str) -> str:
    """The verdict as the index prints it: a mechanism check is confirmed or not, never "reproduced"."""
    words = MECHANISM_WORDS.get(verdict, verdict) if claim.kind == "mechanism check" else verdict
    return words.replace("_", " ")


def profile_jobs(claim: Claim, profile: str, overrides: list[str], conf: Path) -> list[tuple[tuple[str, ...], Config]]:
    """Every job of the profile: its experiment's grid and the claim's further sweeps (`Claim.sweeps`), each with
    `overrides`; as (the job's overrides, its typed config), composed as `run.py -m` does."""
    from normlab.cli import precheck

    experiment = experiment_name(claim.name, profile)
    return [
        job
        for sweep in sweep_lines(claim, profile)
        for job in precheck(["-m", f"experiment={experiment}", *sweep, *overrides], conf)
    ]


def sweep_lines(claim: Claim, profile: str) -> list[list[str]]:
    """The overrides of each sweep the profile runs: the grid (none) and the claim's further sweeps."""
    return [[], *(line.split() for line in claim.sweeps.get(profile, ()))]


# quick: short, 5 seeds; steps: the equal-steps control of the batch-size claims; cpu, full: longer variants;
# paper: the paper's own setup choices where ours differ (bn_convergence), paper_full: those at the paper's scale.
# Claim.reference names each claim's.
PROFILES = ("quick", "steps", "cpu", "full", "paper", "paper_full")


def experiment_name(claim: str, profile: str) -> str:
    return claim if profile == "quick" else f"{claim}_{profile}"


def results_dir(results: Path, claim: str, profile: str) -> Path:
    return results / claim if profile == "quick" else results / claim / profile


def report_summaries(results: Path, claim: str) -> list[Path]:
    """The summary.json of every report of a claim under results/<claim>/, quick first, then its variants and the
    longer profiles; archived run records (a `runs/` folder, scripts/archive_runs.py) are not reports."""
    paths = [p for p in (results / claim).glob("**/summary.json") if "runs" not in p.relative_to(results).parts]
    return sorted(paths, key=lambda p: (len(p.parts), str(p)))


def reference_summary(results: Path, claim: str, reference: str = "") -> tuple[dict | None, Path | None]:
    """A claim's reference summary.json (`Claim.reference`; where it was not made yet, the quick profile, else the
    longest one there is), and its directory."""
    for directory in (results / claim / reference, *(results_dir(results, claim, p) for p in ("quick", "cpu", "full"))):
        if (directory / "summary.json").exists():
            return json.loads((directory / "summary.json").read_text()), directory
    return None, None


def matching(runs: list, jobs: list[dict]) -> tuple[list, list]:
    """The runs whose config is one of `jobs` (the configs a profile's sweep runs), and the others (runs of
    another profile, another override, another version of normlab): a report describes exactly its profile."""
    wanted = {identity(job) for job in jobs}
    keep = [r for r in runs if identity(r.config) in wanted]
    return keep, [r for r in runs if r not in keep]


# Claim fields that describe and judge nothing: changing them (or a docstring, or a comment) leaves a report's
# criteria as they were when its runs were made
DESCRIPTIVE = ("title", "paper", "setup", "reference", "reference_why", "verify_tolerance")


def criteria_source(source: str) -> str:
    """What of a claim module (or of the protocol) can change a verdict: its code as an AST, without comments,
    docstrings, type annotations and the DESCRIPTIVE fields of `Claim(...)`. The criterion text, margins, tests,
    preconditions and the analysis stay in."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
        if isinstance(node, ast.arg):
            node.annotation = None
        if isinstance(node, ast.AnnAssign):  # (kept: a dataclass's field is its annotated name)
            node.annotation = ast.Name("_")
        body = node.body if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) else []
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):  # a docstring
            body[:] = body[1:] or [ast.Pass()]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Claim":
            node.keywords = [k for k in node.keywords if k.arg not in DESCRIPTIVE]
    return ast.dump(tree)


ROOT = Path(__file__).resolve().parents[3]  # the checkout (git's working tree) this module runs from


def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)


def criteria_files(claim: str) -> list[str]:
    """What a claim's verdict depends on: its module and the protocol."""
    return [f"src/normlab/claims/{claim}.py", "src/normlab/protocol.py"]


def criteria(claim: str, rev: str | None, root: Path = ROOT) -> tuple[str, ...]:
    """The claim's `criteria_source` at commit `rev` (None: the working tree, read afresh each time); a file that
    does not parse as its text."""
    files = criteria_files(claim)
    if rev is not None:
        return _criteria_at(claim, rev, root)
    return _criteria_of(tuple((root / f).read_text() for f in files))


@functools.cache  # a commit never changes: each read and parsed once, however often the walks below ask
def _criteria_at(claim: str, rev: str, root: Path) -> tuple[str, ...]:
    return _criteria_of(tuple(git(root, "show", f"{rev}:{f}").stdout for f in criteria_files(claim)))


def _criteria_of(texts: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(criteria_source(t) if t else "" for t in texts)
    except SyntaxError:
        return tuple(texts)


def criteria_commit(claim: str, runs_commit: str, root: Path | None = None) -> tuple[str, str, bool]:
    """The commit at which the claim's criteria (its module's `criteria_source` and the protocol's) last changed,
    a sentence saying whether the runs were made under them (each runs' commit holds today's criteria), and
    whether the criteria were written after the runs (a re-analysis: it decides only on fresh seeds)."""
    root = root or ROOT

    def since(rev: str) -> str:  # the oldest commit of rev's history back to which the criteria are today's
        found = ""
        for c in git(root, "log", "--format=%h", rev, "--", *criteria_files(claim)).stdout.split():  # newest first
            if criteria(claim, c, root) != now:
                break
            found = c
        return found

    try:
        now = criteria(claim, None, root)
        runs = [c for c in runs_commit.split(",") if c and c != "unknown"]
        before = bool(runs) and all(criteria(claim, c, root) == now for c in runs)
        commit = since(runs[0] if before else "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown", "The commit of the criteria is unknown (no git).", False
    if not commit:
        return "unknown", "The commit of the criteria is unknown (not committed, or not in a git checkout).", False
    if before:
        return commit, f"Criteria (tests, margins, preconditions) last changed at {commit}, before the runs.", False
    return (
        commit,
        (
            f"Criteria last changed at {commit}, after the runs were made: a re-analysis under statements "
            "and tests written after these runs were seen, whose verdicts decide only on fresh seeds."
        ),
        True,
    )


@functools.cache  # one walk of the history per claim and runs in a process
def criteria_history(claim: str, runs_commit: str, root: Path | None = None, limit: int = 30) -> str:
    """Every commit that changed what can move the claim's verdict (its module's `criteria_source` or the
    protocol's), newest first, each marked "after these runs" where the report's runs were made at an earlier
    commit (criteria written after runs were seen decide only on fresh seeds); a markdown table."""
    root = root or ROOT
    try:
        log = git(root, "log", f"-{limit}", "--format=%h %as %s", "--", *criteria_files(claim)).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "The criteria's history is unknown (no git)."
    runs = [c for c in runs_commit.split(",") if c and c != "unknown"]
    rows, previous = [], None
    for line in reversed(log):  # oldest first, so that each commit is compared with the one before it
        commit, date, subject = (line.split(" ", 2) + ["", ""])[:3]
        now = criteria(claim, commit, root)
        if now != previous:
            after = any(
                git(root, "merge-base", "--is-ancestor", r, commit).returncode == 0 and r != commit for r in runs
            )
            rows.append(f"| {commit} | {date} | {subject[:90]} | {'**after these runs**' if after else 'before'} |")
        previous = now
    if not rows:
        return "The criteria's history is unknown (not in a git checkout)."
    return "\n".join(["| commit | date | change | the report's runs |", "|---|---|---|---|", *reversed(rows)])


def pilots_section(path: Path) -> str:
    """The claim's pilots table (results/<claim>/pilots.md, written by scripts/pilots.py), as a report section
    (where the analysis does not show it already)."""
    if not path.is_file():
        return ""
    return "\n## Pilots\n\n" + path.read_text().split("\n", 2)[2]


# how a report's tests decide, below its criterion ({index}: the path to results/README.md)
HOW_TESTS_DECIDE = """\
The tests (normlab.protocol, stated in [results/README.md]({index}#the-protocol)): each a difference in the
paper's direction over seeds, with its 95% interval, against a margin stated before running (an equivalence test:
its 90% interval inside ±δ). A test **holds** if the interval's low end is above the margin, is **contradicted**
if its high end is below it, **unclear** otherwise; *detectable* is the smallest true effect its seeds detect
with 80% power. The claim is **not testable here** if a precondition of the whole claim fails; a precondition
scoped to one test makes that test *not testable*. Over its primary tests, the claim is not reproduced if any is
contradicted, not testable here if any is not testable, reproduced if all hold, inconclusive otherwise (the table
under Results; secondary and *reported* rows do not decide)."""


def sweep_time(run_dir: Path, runs: list[Run]) -> tuple[float, str]:
    """The sweep's minutes and what they measure: the wall time of the `reproduce` call that finished it
    (reproduce.json), else, for runs made otherwise (e.g. by `normlab train -m`), their own times summed."""
    timing = json.loads((run_dir / "reproduce.json").read_text()) if (run_dir / "reproduce.json").exists() else {}
    trained_s = sum(r.summary.get("wall_s") or 0 for r in runs)
    if not timing:
        return trained_s, "training time, summed over the runs"
    return timing["wall_s"], (
        f"wall time on {timing['machine']} (the `reproduce.py` call that finished the sweep, which may have "
        f"resumed earlier calls' runs; the runs trained {trained_s / 60:.1f} min, summed)"
    )


def report_summary(
    claim: Claim,
    profile: str,
    variant: str,
    overrides: tuple[str, ...],
    runs: list[Run],
    left_out: int,
    analysis,
    wall_s: float,
) -> dict:
    """A report's summary.json, less its criteria's commit."""
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    return {
        "claim": claim.name,
        "title": claim.title,
        "profile": profile,
        "variant": variant or "fixed lr",
        "overrides": list(overrides),  # anything but the profile as configured
        "verdict": analysis.verdict,
        "statements": [f.to_dict() for f in analysis.findings],
        "reason": analysis.reason,
        "criterion": claim.criterion,
        "numbers": analysis.numbers,
        "seeds": min((len(rs) for rs in arms(runs).values()), default=0),  # the fewest of any arm
        "preconditions": [p.to_dict() for p in analysis.preconditions],
        "tests": [t.to_dict() for t in analysis.tests],  # each with the per-seed values it was computed from
        "reported": [t.to_dict() for t in analysis.reported],
        "runs": len(runs),
        "left_out": left_out,  # runs under runs/<experiment>/ of other configs
        "statuses": statuses,
        "wall_s": wall_s,
        # the code the runs were made with (each run records it), not the code writing this report
        "commit": ",".join(sorted({(r.summary.get("git_commit") or "unknown")[:7] for r in runs})) or "unknown",
        "date": datetime.date.today().isoformat(),
    }


def report_readme(claim: Claim, summary: dict, analysis, made_by: str, index: str, results: Path) -> str:
    """A report's README.md: the verdict, the paper's statements, the paper, our setup and how the runs were made
    (`made_by`), preconditions, results, the criterion and its history, how tests decide."""
    reanalysed = ", re-analysed under statements written after its runs were seen"
    head = (
        f"# {claim.title}\n\n**Verdict: {verdict_words(claim, analysis.verdict)}** ({summary['profile']} profile, "
        f"{summary['variant']}{reanalysed if summary['criteria_after_runs'] else ''}). {analysis.reason}\n"
    )
    if analysis.findings:
        head += (
            "\n## The paper's statements\n\nEach decided on its own (the claim's word follows from them: "
            "normlab.protocol.claim_verdict):\n\n" + statements_table(analysis.findings) + "\n"
        )
    plots = "\n\n".join(f"![{p}]({p})" for p in analysis.plots)
    pilots = "" if "## Pilots" in analysis.notes else pilots_section(results / claim.name / "pilots.md")
    sections = [
        head,
        f"## The paper\n\n{claim.paper}\n",
        f"## Our setup\n\n{claim.setup}\n\n{made_by}\n",
        f"## Preconditions\n\n{preconditions_table(analysis.preconditions)}\n",
        f"## Results\n\n{analysis.table}\n\n{plots}\n",
        f"## Criterion\n\n{claim.criterion}\n\n"
        "The commits that changed this claim's criteria (its module's tests, margins, preconditions and statements, "
        "or the\nprotocol), newest first; one made after the report's runs means a re-analysis:\n\n"
        f"{criteria_history(claim.name, summary['commit'])}\n\n{HOW_TESTS_DECIDE.format(index=index)}\n\n"
        "Per-seed values of every test are in `summary.json` (`tests`); the measurements per arm:\n"
        f"`{json.dumps(analysis.numbers)}`\n{analysis.notes}{pilots}\n",
    ]
    return "\n".join(sections)


def write_report(
    claim: Claim,
    profile: str,
    runs_root: Path,
    results: Path,
    jobs: list[dict] | None = None,
    overrides: tuple[str, ...] = (),
    variant: str = "",
    notes: str = "",
    flags: str = "",
) -> dict:
    """Analyze runs/<experiment>/ and write results/<claim>[/<profile>][/<variant>]/{README.md, summary.json,
    *.png}. With `jobs` (the configs of the profile's sweep, `overrides` included) only the runs of those configs
    count; the others are left out and counted. `variant` "tuned": the per-arm tuned learning rates; `notes`
    (tuning's) and `flags` (reproduce's own, --tune ...) go into the report's setup."""
    experiment = experiment_name(claim.name, profile)
    run_dir = runs_root / experiment
    runs, left_out = load_runs(run_dir), list[Run]()
    if jobs is not None:
        runs, left_out = matching(runs, jobs)
    if not runs:
        make = f"normlab reproduce {claim.name} --profile {profile}"
        raise SystemExit(f"error: no finished runs under {run_dir}; make them with `{make}`")
    out = results_dir(results, claim.name, profile) / variant
    out.mkdir(parents=True, exist_ok=True)
    analysis = claim.analyze(runs, out)
    wall_s, time_of = sweep_time(run_dir, runs)
    summary = report_summary(claim, profile, variant, overrides, runs, len(left_out), analysis, wall_s)
    summary["criteria_commit"], criteria_note, summary["criteria_after_runs"] = criteria_commit(
        claim.name, summary["commit"]
    )
    write_json(out / "summary.json", summary)
    command = f"normlab reproduce {claim.name} --profile {profile}" + "".join(f" {o}" for o in overrides) + flags
    others = f" {len(left_out)} runs of other configs under runs/{experiment}/ were left out." if left_out else ""
    made_by = (
        f"Made by `{command}` (it runs `normlab train -m experiment={experiment}` and then\n"
        f"`normlab report {claim.name} --profile {profile}`), {len(runs)} runs ({summary['statuses']}), "
        f"{wall_s / 60:.1f} min of\n{time_of}, commit {summary['commit']}, {summary['date']}.{others} "
        f"{criteria_note}\n{notes}"
    )
    index = "../" * (len(out.relative_to(results).parts)) + "README.md"
    (out / "README.md").write_text(report_readme(claim, summary, analysis, made_by, index, results))
    return summary
