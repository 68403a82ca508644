"""Fuzz both spec parsers: every input must end as a Spec or a WmapError, and quickly.

    python tests/fuzz/fuzz_parsers.py --seconds 120            # `make fuzz` runs exactly this
    python tests/fuzz/fuzz_parsers.py --seconds 60 --engine hypothesis --seed 3

Engines: `atheris` (coverage-guided libFuzzer, used when `pip install atheris` worked) with a
dictionary of the language's tokens and a structure-aware custom mutator; `hypothesis` (always
available) mutates the seed corpus with token insertions, deletions, duplications, splices and
random characters. The seeds are the example specs, the golden specs of the CLI tests, snippets
covering every statement, and the YAML form of each (`wmap fmt`'s converter).

Each input is parsed with `parse_spec(text, "wmap")` or `parse_spec(text, "yaml")` (the first
byte picks). With `--roundtrip` (on by default) a Spec is also printed back in its own syntax
and must parse again to an equal Spec. Anything else is a finding: an exception other than
WmapError, a round trip that fails, or an input slower than `--slow` seconds. Findings are
printed and saved under tests/fuzz/findings/ (one file per distinct cause:
`found-<kind>-<hash>.wmap` or `.yaml`, the exact input); the summary gives the number of inputs
run. Exit status 1 when there were findings. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FINDINGS = Path(__file__).resolve().parent / "findings"
sys.path.insert(0, str(ROOT))

TOKENS = [
    "wmap 1", "wmap 2", "source", "target", "option", "optional", "drop", "init", "keep", "freeze", "lr",
    "->", "|", ",", "=", "*", "**", "?", "(", ")", "[", "]", "{", "}", "{x}", "{i:int}", "{p:**}", "{i+1}",
    "{a,b,c}", "{q,k.proj}", "src:", "base:", '"', "'", "\\", "\n", "\r\n", "\t", "#", " # c\n", "\n  | ",
    "transpose", "split(0)", "concat(0)", "reshape([-1])", "rearrange(\"a b -> b a\")", "pad(0, 4, init=\"zeros\")",
    "cast(\"bfloat16\")", "layout(auto)", "normal(std=0.02)", "zeros", "copy(\"x\")", "unresolved",
    "strict", "seed", "dtype", "strip_prefix", "nonfinite", "shard_size", "bn_eval", "true", "false", "null",
    "\"warn\"", "\"5GB\"", "\"1e999GB\"", "1e999", "-0.0", "99999999999999999999", "0x10", "nan", "inf",
    "torch", "keras", "tf", "numpy", "safetensors", "\"a.pt\"", "\"pkg.mod:build\"",
    # YAML
    "wmap: 1", "rules:", "- from: ", "  to: ", "  via: ", "sources:", "source:", "target:", "options:",
    "framework:", "path:", "model:", "init:", "drop:", "keep:", "freeze:", "lr:", "optional: true",
    "&a", "*a", "<<: *a", "!!python/object/apply:os.system", "!!binary", "---", "...", "? ", "|-", ">",
    "%YAML 1.1", "{from: a, to: b}", "[a, b]", "~",
]
SNIPPETS = [
    "wmap 1\n",
    "wmap 1\nsource torch \"a.safetensors\"\ntarget keras \"pkg.models:build\"\n",
    "wmap 1\nsource base torch \"a.pt\"\nsource tuned \"b.pt\"\nbase:x, tuned:x -> x | lerp(0.5)\n",
    "wmap 1\noption strict = false\noption seed = 3\noption dtype = \"target\"\noption strip_prefix = [\"module.\", "
    "\"_orig_mod.\"]\noption nonfinite = \"warn\"\noption shard_size = \"2GB\"\noption bn_eval = true\n",
    "wmap 1\nlayers.{i:int}.attn.{q,k,v}.weight -> blocks.{i}.qkv.weight | concat(0)\n",
    "wmap 1\nqkv.weight -> {q,k,v}.weight | split(0)\n  | transpose\n",
    "wmap 1\noptional aux.** -> aux.{x}\ndrop ?**.num_batches_tracked, head.*\n",
    "wmap 1\ninit head.** = normal(std=0.02)\ninit ?pos = zeros\nkeep decoder.**\nfreeze enc.**\nlr head.** * 10\n",
    "wmap 1\nfc.weight -> fc.kernel | linear_to_dense # trailing\n# leading\nx -> y | reshape([2, -1])\n",
    "wmap 1\nemb.weight -> emb.weight | pad(0, 32000, init=\"mean\") | cast(\"bfloat16\")\n",
    "wmap 1\n{a}.{b:**} -> out.{b}.{a}\nlayers.{i:int}.w -> blocks.{i+1}.w\n",
    "wmap: 1\nsource: {framework: torch, path: a.safetensors}\ntarget: pkg.models:build\n"
    "rules:\n  - from: 'layers.{i:int}.w'\n    to: 'blocks.{i}.w'\n    via: [transpose, 'reshape([-1])']\n"
    "drop: ['**.num_batches_tracked']\ninit: {head.bias: zeros}\nkeep: [dec.**]\nlr: {head.**: 10}\n"
    "options: {strict: false, seed: 1}\n",
    "wmap: 1\nsources:\n  base: base.safetensors\n  tuned: {framework: torch, path: t.safetensors}\n"
    "rules:\n  - {from: ['base:x', 'tuned:x'], to: x, via: 'lerp(0.5)', optional: true}\n",
]


def seeds() -> list[tuple[str, str]]:
    """(syntax, text) seeds: files in the repo, the snippets above, and the YAML form of each `.wmap`."""
    from wmap.core.errors import WmapError
    from wmap.lang import format_spec, parse_spec

    out: list[tuple[str, str]] = []
    for pattern in ("specs/**/*.wmap", "specs/**/*.yaml", "tests/golden/**/*.wmap", "tests/golden/**/*.yaml"):
        for p in sorted(ROOT.glob(pattern)):
            out.append(("yaml" if p.suffix == ".yaml" else "wmap", p.read_text(encoding="utf-8")))
    out += [("yaml" if s.startswith("wmap:") else "wmap", s) for s in SNIPPETS]
    for syntax, text in list(out):
        if syntax == "wmap":
            with contextlib.suppress(WmapError):
                out.append(("yaml", format_spec(parse_spec(text, "wmap"), "yaml")))
    return out


NAME_CODES = {"WM103", "WM104", "WM113", "WM117"}  # unknown or badly called transforms and initialisers


# -- the target ------------------------------------------------------------------------------------


class Target:
    """Runs one input; records findings (one per distinct cause) and counts."""

    def __init__(self, roundtrip: bool, slow: float, save: bool = True):
        from wmap.core.errors import WmapError
        from wmap.lang import format_spec, parse_spec

        self.parse, self.format, self.WmapError = parse_spec, format_spec, WmapError
        self.roundtrip, self.slow, self.save = roundtrip, slow, save
        self.runs = 0
        self.outcomes = {"spec": 0, "error": 0, "roundtrip": 0}
        self.findings: dict[str, tuple[str, str, str]] = {}  # signature -> (kind, syntax, text)
        self.repeats = 0

    def __call__(self, syntax: str, text: str) -> None:
        self.runs += 1
        start = time.monotonic()
        try:
            spec = self.parse(text, syntax)  # type: ignore[arg-type]
        except self.WmapError as e:
            self.outcomes["error"] += 1
            try:
                e.render()
            except Exception as exc:  # noqa: BLE001 - any failure to render is a finding
                self._finding("render", syntax, text, exc)
            if self.roundtrip and {d.code for d in e.diagnostics} <= NAME_CODES:
                # only transform/initialiser names are wrong (random calls): the syntax still round-trips
                try:
                    spec = self.parse(text, syntax, names=False)  # type: ignore[arg-type]
                except self.WmapError:
                    pass
                except Exception as exc:  # noqa: BLE001
                    self._finding("crash", syntax, text, exc)
                else:
                    self._check_roundtrip(spec, syntax, text, names=False)
        except Exception as exc:  # noqa: BLE001 - the point: anything but WmapError is a finding
            self._finding("crash", syntax, text, exc)
        else:
            self.outcomes["spec"] += 1
            if self.roundtrip:
                self._check_roundtrip(spec, syntax, text)
        took = time.monotonic() - start
        if took > self.slow:
            self._finding("slow", syntax, text, None, f"took {took:.1f} s (limit {self.slow} s)")

    def _check_roundtrip(self, spec: object, syntax: str, text: str, names: bool = True) -> None:
        self.outcomes["roundtrip"] += 1
        try:
            printed = self.format(spec, syntax)  # type: ignore[arg-type]
            again = self.parse(printed, syntax, names=names)  # type: ignore[arg-type]
        except self.WmapError as e:
            self._finding("roundtrip", syntax, text, None, "the printed spec does not parse:\n" + e.render())
            return
        except Exception as exc:  # noqa: BLE001
            self._finding("roundtrip", syntax, text, exc)
            return
        if again != spec:
            self._finding("roundtrip", syntax, text, None, f"printed and parsed again, the spec differs:\n{printed}")

    def _finding(self, kind: str, syntax: str, text: str, exc: BaseException | None, detail: str = "") -> None:
        if exc is not None:
            tb = traceback.extract_tb(exc.__traceback__)
            where = next((f for f in reversed(tb) if "/wmap/" in f.filename), tb[-1] if tb else None)
            sig = f"{kind}:{type(exc).__name__}:{where.filename if where else '?'}:{where.lineno if where else 0}"
            detail = "".join(traceback.format_exception(exc))
        elif kind == "slow":
            sig = f"slow:{syntax}"  # one slow input per syntax and run: they cost the run seconds each
        else:  # a round trip: by what went wrong, with names, numbers and positions blanked out
            head = " ".join(ln.split("error", 1)[-1] for ln in detail.splitlines()[:2])
            sig = f"{kind}:" + re.sub(r"`[^`]*`|\d+", "_", head)[:100]
        if sig in self.findings:
            self.repeats += 1
            return
        self.findings[sig] = (kind, syntax, text)
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = f"found-{kind}-{digest}.{syntax}"  # not `crash-*`: .gitignore drops libFuzzer's stray artifacts
        print(f"\n== finding {len(self.findings)}: {kind} ({syntax}) -> tests/fuzz/findings/{name}", flush=True)
        print(f"input: {text[:400]!r}{' ...' if len(text) > 400 else ''}")
        print(detail.rstrip()[-3000:], flush=True)
        if self.save:
            FINDINGS.mkdir(exist_ok=True)
            (FINDINGS / name).write_text(text, encoding="utf-8", errors="surrogatepass")

    def summary(self, seconds: float, engine: str) -> str:
        return (f"fuzz_parsers: {engine}: {self.runs:,} inputs in {seconds:.0f} s "
                f"({self.outcomes['spec']:,} specs, {self.outcomes['error']:,} WmapErrors, "
                f"{self.outcomes['roundtrip']:,} round trips); "
                f"{len(self.findings)} finding(s)" + (f" (+{self.repeats} repeats)" if self.repeats else ""))


# -- mutation (shared by both engines) -------------------------------------------------------------


def mutate(text: str, rnd: random.Random, pool: list[tuple[str, str]]) -> str:
    """A few structure-aware edits: tokens in, ranges out or doubled, characters changed, splices."""
    for _ in range(rnd.randint(1, 4)):
        n = len(text)
        i, j = sorted((rnd.randint(0, n), rnd.randint(0, n)))
        op = rnd.randrange(9)
        if op <= 2:
            text = text[:i] + rnd.choice(TOKENS) + text[i:]
        elif op == 3:
            text = text[:i] + text[j:]
        elif op == 4:
            text = text[:j] + text[i:j] + text[j:]
        elif op == 5 and n:
            text = text[:i] + chr(rnd.choice([rnd.randint(0, 127), rnd.randint(128, 0x10FFFF)])) + text[i + 1:]
        elif op == 6:
            other = rnd.choice(pool)[1]
            a, b = sorted((rnd.randint(0, len(other)), rnd.randint(0, len(other))))
            text = text[:i] + other[a:b] + text[j:]
        elif op == 7:  # repeat a token many times: depth and length limits
            text = text[:i] + rnd.choice(["[", "{", "(", "- ", "  ", "a.", "x -> y\n", "&a [*a, *a]\n"]) \
                * rnd.choice([10, 100, 1000]) + text[i:]
        else:
            lines = text.split("\n")
            rnd.shuffle(lines)
            text = "\n".join(lines)
    if rnd.randrange(20) == 0:  # control characters and odd whitespace
        text += rnd.choice(["\x00", "\x0b", "\x0c", "\u2028", "\ufeff", "\r", "\x1b[31m"])
    return text


# -- generation: random but mostly well-formed specs, so the round trip gets exercised ---------------

_WORDS = ["a", "x", "w", "layers", "blocks", "q", "k", "v", "weight", "bias", "kernel", "_p", "L2", "null", "true",
          "false", "wmap", "source", "optional", "drop", "init", "lr", "zeros", "normal", "transpose", "split"]
_CALLS = ["transpose", "split", "concat", "reshape", "rearrange", "pad", "cast", "scale", "permute", "flip",
          "layout", "normal", "zeros", "uniform", "copy", "lerp", "f", "A0", "_x"]
_OPTIONS = ["strict", "seed", "dtype", "strip_prefix", "target_strip_prefix", "nonfinite", "bn_eval", "shard_size",
            "bogus"]


def _string(rnd: random.Random) -> str:
    chars = "ab.Z_- /:#|,()[]{}*?=" + "\\\"'" + "\u00e9\u4e2d\U0001F600\t"
    body = "".join(rnd.choice(chars) for _ in range(rnd.randint(0, 8)))
    quote = rnd.choice(['"', "'"])
    body = body.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return quote + body + quote


def _number(rnd: random.Random) -> str:
    return rnd.choice([str(rnd.randint(-5, 300)), repr(rnd.uniform(-10, 10)), "-0.0", "1e-3", "2.5E+2", ".5", "7.",
                       "+3", str(2**63), "1e308"])


def _value(rnd: random.Random, depth: int = 0) -> str:
    k = rnd.randrange(7 if depth < 3 else 5)
    if k == 0:
        return _number(rnd)
    if k == 1:
        return _string(rnd)
    if k == 2:
        return rnd.choice(["null", "true", "false"])
    if k == 3:
        return rnd.choice(_WORDS)
    if k == 4:
        return _number(rnd)
    return "[" + ", ".join(_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))) + "]"


def _call(rnd: random.Random) -> str:
    name = rnd.choice(_CALLS)
    if rnd.randrange(3) == 0:
        return name
    args = [_value(rnd) for _ in range(rnd.randint(0, 2))]
    args += [f"{rnd.choice(_WORDS)}={_value(rnd)}" for _ in range(rnd.randint(0, 2))]
    return f"{name}({', '.join(args)})"


def _pattern(rnd: random.Random, template: bool = False) -> str:
    segs = []
    for _ in range(rnd.randint(1, 4)):
        seg = rnd.choice([rnd.choice(_WORDS), rnd.choice(_WORDS), str(rnd.randint(0, 12)), "*", "**", "{x}", "{i:int}",
                          "{p:**}", "{a,b}", "{q,k.proj}", "w*", "h{i}", "{i+1}" if template else "{j}", "a-b", "x/y"])
        segs.append(seg)
    text = ".".join(segs)
    if not template and rnd.randrange(6) == 0:
        text = rnd.choice(["src:", "base:", "tuned:"]) + text
    return text


def generate(rnd: random.Random) -> str:
    """A `.wmap` spec of random statements, most of them well-formed."""
    lines = ["wmap 1"] if rnd.randrange(10) else []
    for _ in range(rnd.randint(1, 8)):
        k = rnd.randrange(10)
        if k <= 3:
            srcs = ", ".join(_pattern(rnd) for _ in range(rnd.randint(1, 2)))
            chain = "".join(f" | {_call(rnd)}" for _ in range(rnd.randint(0, 3)))
            opt = "optional " if rnd.randrange(5) == 0 else ""
            line = f"{opt}{srcs} -> {_pattern(rnd, True)}{chain}"
            if rnd.randrange(5) == 0:
                line += f"\n  | {_call(rnd)}"
        elif k == 4:
            line = f"{rnd.choice(['drop', 'keep', 'freeze'])} " + ", ".join(
                ("?" if rnd.randrange(3) == 0 else "") + _pattern(rnd) for _ in range(rnd.randint(1, 3)))
        elif k == 5:
            line = f"init {_pattern(rnd)} = {_call(rnd)}"
        elif k == 6:
            line = f"lr {_pattern(rnd)} * {_number(rnd)}"
        elif k == 7:
            line = f"option {rnd.choice(_OPTIONS)} = {_value(rnd)}"
        elif k == 8:
            words = " ".join(rnd.choice(["base", "torch", "keras", "tuned", "numpy"]) for _ in range(rnd.randint(0, 2)))
            line = f"{rnd.choice(['source', 'target'])} {words} {_string(rnd)}"
        else:
            line = "# " + _string(rnd)[1:-1]
        if rnd.randrange(8) == 0:
            line += "  # " + rnd.choice(_WORDS)
        lines.append(line)
    return "\n".join(lines) + rnd.choice(["\n", "", "\n\n", "\r\n"])


def generated(rnd: random.Random) -> tuple[str, str]:
    """A generated spec, as `.wmap`, or (when it parses) converted to YAML."""
    from wmap.lang import format_spec, parse_spec

    text = generate(rnd)
    if rnd.randrange(3) == 0:
        # a WmapError, or a crash: then the `.wmap` text goes to the target, which records the finding
        with contextlib.suppress(Exception):
            return "yaml", format_spec(parse_spec(text, "wmap"), "yaml")
    return "wmap", text


def decode(data: bytes) -> tuple[str, str]:
    """The first byte picks the syntax; the rest is UTF-8 text (what `load_spec` can produce)."""
    syntax = "yaml" if data[:1] and data[0] & 1 else "wmap"
    return syntax, data[1:].decode("utf-8", "replace")


def encode(syntax: str, text: str) -> bytes:
    return bytes([1 if syntax == "yaml" else 0]) + text.encode("utf-8", "surrogatepass")


# -- engines ---------------------------------------------------------------------------------------


def run_hypothesis(target: Target, pool: list[tuple[str, str]], seconds: float, seed: int) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed
    from hypothesis import strategies as st

    deadline = time.monotonic() + seconds

    def body(seed_input: tuple[str, str], mseed: int, swap: int) -> None:
        if time.monotonic() > deadline:
            return
        rnd = random.Random(mseed)
        if rnd.randrange(3) == 0:
            target(*generated(rnd))
            return
        syntax, text = seed_input
        if swap == 0:  # now and then, feed one syntax to the other parser
            syntax = "yaml" if syntax == "wmap" else "wmap"
        target(syntax, mutate(text, rnd, pool))

    test = settings(max_examples=500, database=None, deadline=None, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck))(
        given(st.sampled_from(pool), st.integers(0, 2**32 - 1), st.integers(0, 9))(body))
    rounds = 0
    while time.monotonic() < deadline:
        fixed_seed(seed * 100_003 + rounds)(test)()
        rounds += 1


def _dict_entry(token: str) -> str:
    """A libFuzzer dictionary line: printable ASCII as is, everything else as \\xNN."""
    out = "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02X}" for b in token.encode("utf-8"))
    return f'"{out}"\n'


def run_atheris(target: Target, pool: list[tuple[str, str]], seconds: float, seed: int) -> None:
    import atheris

    deadline = time.monotonic() + seconds
    work = Path(tempfile.mkdtemp(prefix="wmap-fuzz-"))
    corpus = work / "corpus"
    corpus.mkdir()
    for k, (syntax, text) in enumerate(pool):
        (corpus / f"seed{k}").write_bytes(encode(syntax, text))
    dictionary = work / "wmap.dict"
    dictionary.write_text("".join(_dict_entry(t) for t in TOKENS), encoding="ascii")

    def one(data: bytes) -> None:
        if time.monotonic() > deadline:
            print(target.summary(seconds, "atheris"), flush=True)
            shutil.rmtree(work, ignore_errors=True)
            os._exit(1 if target.findings else 0)
        target(*decode(data))

    def custom_mutator(data: bytes, max_size: int, mseed: int) -> bytes:
        rnd = random.Random(mseed)
        k = rnd.randrange(6)
        if k <= 1:
            return atheris.Mutate(data, max_size)
        if k == 2:
            return encode(*generated(rnd))[: max(max_size, 1)]
        syntax, text = decode(data)
        return encode(syntax, mutate(text, rnd, pool))[: max(max_size, 1)]

    FINDINGS.mkdir(exist_ok=True)
    # slow inputs are reported by `Target`; libFuzzer's own artifacts (a hang past -timeout, memory
    # past -rss_limit_mb) land next to the findings, as raw bytes (first byte: the syntax)
    atheris.Setup([sys.argv[0], str(corpus), f"-dict={dictionary}", f"-seed={seed}", "-max_len=65536",
                   f"-max_total_time={int(seconds) + 60}", "-timeout=60", "-rss_limit_mb=4096",
                   "-report_slow_units=100000", f"-artifact_prefix={FINDINGS}/libfuzzer-",
                   "-print_final_stats=1", "-close_fd_mask=0"], one, custom_mutator=custom_mutator)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120, help="how long to fuzz (default 120)")
    ap.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slow", type=float, default=10.0, help="an input slower than this is a finding (seconds)")
    ap.add_argument("--no-roundtrip", dest="roundtrip", action="store_false",
                    help="only require Spec-or-WmapError; do not print specs back and reparse them")
    ap.add_argument("--replay", nargs="*", metavar="FILE", help="run saved inputs (default: every saved finding)")
    args = ap.parse_args(argv)

    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "hypothesis"

    if engine == "atheris":  # coverage for libFuzzer: instrument the parsers before importing them
        import atheris
        with atheris.instrument_imports(include=["wmap", "lark", "yaml"]):
            import wmap.lang.dsl  # noqa: F401
            import wmap.lang.fmt  # noqa: F401
            import wmap.lang.patterns  # noqa: F401
            import wmap.lang.yaml_spec  # noqa: F401

    target = Target(args.roundtrip, args.slow, save=args.replay is None)
    if args.replay is not None:
        files = [Path(f) for f in args.replay] or sorted(FINDINGS.glob("found-*")) + sorted(FINDINGS.glob("libfuzzer-*"))
        for f in files:
            if f.name.startswith("libfuzzer-"):  # raw libFuzzer bytes: the first byte picks the syntax
                target(*decode(f.read_bytes()))
            else:
                target("yaml" if f.suffix == ".yaml" else "wmap", f.read_text(encoding="utf-8", errors="surrogatepass"))
        print(f"replayed {len(files)} input(s); {len(target.findings)} still fail")
        return 1 if target.findings else 0

    pool = seeds()
    print(f"fuzz_parsers: {engine}, {args.seconds:.0f} s, {len(pool)} seeds, round trip "
          f"{'on' if args.roundtrip else 'off'}", flush=True)
    started = time.monotonic()
    runner: Callable[..., None] = run_atheris if engine == "atheris" else run_hypothesis
    runner(target, pool, args.seconds, args.seed)
    print(target.summary(time.monotonic() - started, engine), flush=True)
    return 1 if target.findings else 0


if __name__ == "__main__":
    sys.exit(main())
