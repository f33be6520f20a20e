"""The validation corpus (projects the rules were never tuned on) and the judged findings of both corpora.

    python benchmarks/validation_corpus.py                    # build the validation corpus, print its projects
    python benchmarks/validation_corpus.py --run              # check it with every rule (--preview), keep the JSON
    python benchmarks/validation_corpus.py --report           # per rule: findings / true / deliberate / false
    python benchmarks/validation_corpus.py --report --corpus pinned   # the same for the pinned (development) corpus

The validation corpus is PROJECTS, each fetched once with `pip download --no-deps` (a wheel, or an sdist
where no pure wheel exists) into ~/.cache/sharpedges/validation/downloads/, its .py files unpacked into
~/.cache/sharpedges/validation/corpus/<project>/. The pinned corpus is the one benchmarks/corpus.py builds.

--run checks a corpus once with `sharpedges check . --no-cache --format json --preview` (default and
opt-in rules together; the report says which set each rule is in) and keeps the JSON next to the corpus,
so --report re-reads it. --report lists the false findings with their reasons; run --run again after a
detector change, then --report: it also lists judged findings that disappeared and new findings nobody
has judged yet.

Judgments live in benchmarks/judgments/<corpus>.yaml, one entry per finding keyed by
(package, path, line, rule), with a verdict (true: a real bug or hazard; deliberate: intended and
correct for that model; false: the rule is wrong) and a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from corpus import CACHE  # noqa: E402
from corpus import build as build_pinned  # noqa: E402

# Not the pinned five, and not ports of one another: diffusion, vision, CLIP, audio/speech, protein LMs,
# MoE, training frameworks and fine-tuning libraries, lucidrains-style research code.
PROJECTS = (
    "diffusers==0.42.1",
    "open-clip-torch==3.3.0",
    "lightning==2.6.6",
    "mmengine==0.10.7",
    "mmdet==3.3.0",
    "speechbrain==1.1.2",
    "espnet==202511",
    "peft==0.21.2",
    "trl==1.16.0",
    "accelerate==1.16.0",
    "deepspeed==0.19.8",
    "sentence-transformers==6.3.0",
    "vector-quantize-pytorch==1.32.0",
    "audiocraft==1.3.0",
    "openai-whisper==20250625",
    "fair-esm==2.0.0",
    "torchvision==0.29.1",
    "st-moe-pytorch==0.1.8",
    "denoising-diffusion-pytorch==2.3.4",
)
VALIDATION = CACHE / "validation"
JUDGMENTS = HERE / "judgments"
VERDICTS = ("true", "deliberate", "false")


def validation_dir() -> Path:
    return VALIDATION / "corpus"


def _archive_members(archive: Path) -> list[tuple[str, bytes]]:
    """(path inside the project, content) of every .py file in a wheel or sdist, sdists without their top folder."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zipped:
            names = [n for n in zipped.namelist() if n.endswith(".py") and ".dist-info/" not in n]
            members = [(n, zipped.read(n)) for n in names]
        strip = archive.suffix == ".zip"
    else:
        with tarfile.open(archive) as tarred:
            members = [
                (m.name, extracted.read())
                for m in tarred.getmembers()
                if m.isfile() and m.name.endswith(".py") and (extracted := tarred.extractfile(m)) is not None
            ]
        strip = True
    if strip:
        members = [(name.split("/", 1)[1], data) for name, data in members if "/" in name]
    return members


def build_validation(quiet: bool = True) -> Path:
    """Download (once) and unpack (once) every pinned project; returns the corpus directory."""
    target = validation_dir()
    manifest = target / "manifest.json"
    if manifest.exists() and [p["pin"] for p in json.loads(manifest.read_text())] == list(PROJECTS):
        return target
    projects = []
    for pin in PROJECTS:
        name, version = pin.split("==")
        downloads = VALIDATION / "downloads" / name
        if not any(downloads.glob("*")):
            downloads.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(downloads), pin], check=True
            )
        (archive,) = sorted(downloads.glob("*"))
        lines = 0
        for path, data in _archive_members(archive):
            out = target / name / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            lines += data.count(b"\n")
        projects.append({"name": name, "version": version, "pin": pin, "archive": archive.name, "lines": lines})
        if not quiet:
            print(f"{name} {version}: {lines} lines", file=sys.stderr)
    manifest.write_text(json.dumps(projects, indent=1) + "\n")
    return target


def corpus_root(corpus: str) -> Path:
    return build_validation() if corpus == "validation" else build_pinned()


def findings_file(corpus: str) -> Path:
    return CACHE / f"findings-{corpus}.json"


def run_check(corpus: str) -> Path:
    """Check the whole corpus once with every rule; the JSON is kept for --report."""
    root = corpus_root(corpus)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sharpedges",
            "check",
            ".",
            "--no-cache",
            "--format",
            "json",
            "--preview",
            "--exit-zero",
        ],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"sharpedges check failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    out = findings_file(corpus)
    out.write_text(result.stdout)
    return out


def finding_key(diagnostic: dict) -> tuple[str, str, int, str]:
    package, path = Path(diagnostic["path"]).as_posix().removeprefix("./").split("/", 1)
    return package, path, diagnostic["line"], diagnostic["rule"]


def load_findings(corpus: str) -> list[dict]:
    path = findings_file(corpus)
    if not path.exists():
        run_check(corpus)
    return json.loads(path.read_text())["diagnostics"]


def load_judgments(corpus: str) -> dict[tuple[str, str, int, str], dict]:
    path = JUDGMENTS / f"{corpus}.yaml"
    if not path.exists():
        return {}
    entries = (yaml.safe_load(path.read_text()) or {}).get("judgments") or []
    judged = {}
    for entry in entries:
        key = (entry["package"], entry["path"], entry["line"], entry["rule"])
        verdict = str(entry["verdict"]).lower()  # a bare YAML `true` reads as a boolean
        if verdict not in VERDICTS:
            raise SystemExit(f"{path}: {key}: verdict must be one of {', '.join(VERDICTS)}, not {entry['verdict']!r}")
        if not str(entry.get("reason") or "").strip():
            raise SystemExit(f"{path}: {key}: a judgment needs a one-line reason")
        if key in judged:
            raise SystemExit(f"{path}: {key} is judged twice")
        judged[key] = entry | {"verdict": verdict}
    return judged


def rule_sets() -> dict[str, str]:
    from sharpedges.specs import load_specs

    return {code: "default" if spec.default else "opt-in" for code, spec in load_specs().items()}


def compare(findings: list[dict], judged: dict) -> tuple[dict[str, Counter], list[tuple], list[tuple]]:
    """Per rule, how many findings got each verdict ("unjudged" where none); the judged keys no finding
    has any more; and (key, message) of each finding nobody has judged."""
    counts: dict[str, Counter] = {}
    seen, unjudged = set(), []
    for diagnostic in findings:
        key = finding_key(diagnostic)
        seen.add(key)
        verdict = judged[key]["verdict"] if key in judged else "unjudged"
        counts.setdefault(key[3], Counter())[verdict] += 1
        if key not in judged:
            unjudged.append((key, diagnostic["message"]))
    gone = sorted(key for key in judged if key not in seen)
    return counts, gone, sorted(unjudged)


def report(corpus: str) -> int:
    findings = load_findings(corpus)
    judged = load_judgments(corpus)
    sets = rule_sets()
    counts, gone, unjudged = compare(findings, judged)
    print(f"{corpus} corpus: {len(findings)} findings, {len(judged)} judgments")
    print(f"{'rule':8} {'set':8} {'findings':>8} {'true':>5} {'delib':>5} {'false':>5} {'unjudged':>8}")
    for code in sorted(counts):
        c = counts[code]
        print(
            f"{code:8} {sets.get(code, '?'):8} {sum(c.values()):>8} {c['true']:>5} {c['deliberate']:>5} "
            f"{c['false']:>5} {c['unjudged']:>8}"
        )
    total = sum(counts.values(), Counter())
    print(
        f"{'all':8} {'':8} {sum(total.values()):>8} {total['true']:>5} {total['deliberate']:>5} "
        f"{total['false']:>5} {total['unjudged']:>8}"
    )
    false = sorted(
        (key for key in judged if key not in gone and judged[key]["verdict"] == "false"), key=lambda key: (key[3], key)
    )
    if false:
        print(f"\nfalse findings ({len(false)}):")
        for key in false:
            print(f"  {key[3]} {key[0]}/{key[1]}:{key[2]}: {judged[key]['reason']}")
    if gone:
        print(f"\njudged findings that disappeared ({len(gone)}):")
        for key in gone:
            entry = judged[key]
            print(f"  {key[3]} {key[0]}/{key[1]}:{key[2]} was {entry['verdict']}: {entry['reason']}")
    if unjudged:
        print(f"\nnew findings nobody has judged ({len(unjudged)}):")
        for key, message in unjudged:
            print(f"  {key[3]} {key[0]}/{key[1]}:{key[2]}: {message}")
    return 0


def meets_bar(verdicts: Counter) -> bool:
    """The default set's bar (issue 13): at least 90% of a rule's findings true or deliberate, and at
    most a fifth deliberate. No findings meets it."""
    total = sum(verdicts.values())
    right = verdicts["true"] + verdicts["deliberate"]
    return total == 0 or (right >= 0.9 * total and verdicts["deliberate"] * 5 <= total)


def gate() -> int:
    """Per rule and per corpus: findings / true / deliberate / false, whether the default-set bar is
    met on both, and the set the spec declares (a Markdown table). Exit 1 when a default rule misses it."""
    sets = rule_sets()
    per_corpus = {
        corpus: compare(load_findings(corpus), load_judgments(corpus))[0] for corpus in ("pinned", "validation")
    }
    print("| rule | set | pinned f/t/d/x | validation f/t/d/x | bar on both |")
    print("|---|---|---|---|---|")
    missed = []
    for code in sorted(sets):
        cells, met = [], True
        for corpus in ("pinned", "validation"):
            c = per_corpus[corpus].get(code, Counter())
            cells.append(f"{sum(c.values())}/{c['true']}/{c['deliberate']}/{c['false'] + c['unjudged']}")
            met = met and meets_bar(c) and not c["unjudged"]
        if sets[code] == "default" and not met:
            missed.append(code)
        print(f"| {code} | {sets[code]} | {cells[0]} | {cells[1]} | {'yes' if met else 'no'} |")
    if missed:
        print(f"\ndefault rules that miss the bar: {', '.join(missed)}")
    return 1 if missed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("validation", "pinned"), default="validation")
    parser.add_argument("--run", action="store_true", help="check the corpus with every rule and keep the JSON")
    parser.add_argument("--report", action="store_true", help="per rule: findings / true / deliberate / false")
    parser.add_argument(
        "--gate", action="store_true", help="both corpora: per rule f/t/d/x and whether a default rule meets the bar"
    )
    args = parser.parse_args()
    if args.gate:
        return gate()
    if args.run:
        print(run_check(args.corpus))
    if args.report:
        return report(args.corpus)
    if not args.run:
        root = corpus_root(args.corpus)
        if args.corpus == "validation":
            projects = json.loads((root / "manifest.json").read_text())
            for project in projects:
                print(f"{project['name']:28} {project['version']:12} {project['lines']:>8} lines")
            print(f"{len(projects)} projects, {sum(p['lines'] for p in projects)} lines in {root}")
        else:
            print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
