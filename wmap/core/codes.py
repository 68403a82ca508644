"""The catalogue of diagnostic codes, for `wmap explain WM301` and for docs.

Every `WMxxx` code the code base raises has an entry here (a test greps `wmap/` to keep it so).
Codes are stable: a code is never reused for a different problem, so scripts and search
engines can rely on them. Ranges by stage: 1xx syntax and spec structure, 2xx matching,
3xx shapes and dtypes, 4xx coverage, 5xx backends, files and I/O, 6xx execution.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DiagnosticCode:
    """One code: a short title, what it means and why wmap refuses, and an example of a fix."""

    code: str
    title: str
    explanation: str
    fix: str

    @property
    def stage(self) -> str:
        return STAGES.get(self.code[2], "other")


STAGES = {"1": "syntax and spec structure", "2": "matching", "3": "shapes and dtypes", "4": "coverage",
          "5": "backends, files and I/O", "6": "execution"}

_ENTRIES: tuple[tuple[str, str, str, str], ...] = (
    # -- 1xx: syntax and spec structure ---------------------------------------------------------
    ("WM100", "syntax error",
     "The `.wmap` text does not parse: an unexpected character or token, or a statement that ends "
     "too early. Each logical line is reported on its own, so one run lists every syntax error.",
     "conv1.weight -> conv1.kernel |            # a `|` with no transform\n"
     "conv1.weight -> conv1.kernel | conv_to_keras"),
    ("WM101", "unknown statement",
     "A line starts with a word that is not a statement. Statements are `wmap`, `source`, `target`, "
     "`option`, rules (`a -> b`), `drop`, `init`, `keep`, `freeze`, `lr` and `ack`.",
     "frezze conv1.**   ->   freeze conv1.**"),
    ("WM102", "missing or unsupported language version",
     "A spec starts by saying which version of the language it is written in, so a later wmap can "
     "read old specs exactly as they were meant. This wmap reads version 1.",
     "add `wmap 1` as the first line (YAML: `wmap: 1`)"),
    ("WM103", "unknown transform",
     "A rule's chain names a transform the registry does not have. `wmap explain` with no argument "
     "lists every transform; an initialiser (zeros, normal, ...) belongs in `init`, not in a chain.",
     "fc.weight -> fc.kernel | tranpose   ->   fc.weight -> fc.kernel | transpose"),
    ("WM104", "bad transform parameters",
     "A transform got a parameter it does not take, a value of the wrong type, too many positional "
     "arguments, or lacks a required one. The hint shows the signature; `wmap explain NAME` shows more.",
     "x -> y | split(dims=0)   ->   x -> y | split(dim=0)"),
    ("WM105", "unknown option",
     "`option NAME = value` names an option the language does not know; a typo would otherwise be "
     "ignored silently. Known options: strict, seed, dtype, strip_prefix, target_strip_prefix, "
     "nonfinite, bn_eval, shard_size.",
     "option strip_prefixes = \"module.\"   ->   option strip_prefix = \"module.\""),
    ("WM106", "bad option value",
     "An option has a value of the wrong type or outside its choices (e.g. `dtype` is strict, widen "
     "or target), a shard size that is not a size, or an `lr` multiplier below zero.",
     "option dtype = \"loose\"   ->   option dtype = \"widen\""),
    ("WM107", "stated twice",
     "The version line, a source name, the target, an option, or a YAML key appears twice. wmap does "
     "not pick one silently: say it once.",
     "source \"a.pt\" + source \"b.pt\"   ->   source base \"a.pt\" + source tuned \"b.pt\""),
    ("WM108", "bad pattern",
     "A pattern or target template is malformed (unbalanced braces, an empty segment, a bad capture), "
     "or a rule's source starts with `?`, which only drop/keep/freeze/init/lr patterns may.",
     "layers.{i:int.q -> blocks.{i}.q   ->   layers.{i:int}.q -> blocks.{i}.q"),
    ("WM109", "target template cannot be filled",
     "A target template uses a capture that a source pattern does not bind, or filling it failed for "
     "some matched name (e.g. arithmetic on a capture that is not an integer).",
     "layers.{i}.q -> blocks.{j}.q   ->   layers.{i:int}.q -> blocks.{i}.q"),
    ("WM110", "bad YAML spec structure",
     "A YAML spec has an unknown or missing key, a value of the wrong type, or is empty; it is "
     "checked against the JSON Schema in `specs/`.",
     "rules: [{form: a, to: b}]   ->   rules: [{from: a, to: b}]"),
    ("WM111", "YAML syntax error",
     "The YAML document does not parse. The location points at the problem YAML reports.",
     "rules: [{from: a, to: b}   ->   rules: [{from: a, to: b}]"),
    ("WM112", "unknown source name",
     "A pattern reads a named source (`tuned:layers.**`) that the spec does not declare, or that was "
     "not given on the command line.",
     "source tuned \"ft.safetensors\"  (declare it), or --source tuned=ft.safetensors"),
    ("WM113", "unknown or bad initialiser",
     "`init PATTERN = NAME(...)` names an initialiser that does not exist, or gives it bad "
     "parameters. `wmap explain` lists the initialisers.",
     "init head.bias = zero   ->   init head.bias = zeros"),
    ("WM114", "unterminated string",
     "A quoted string does not end on the line it starts on.",
     "source \"model.pt   ->   source \"model.pt\""),
    ("WM115", "cannot read the spec file",
     "The spec path does not exist, is a directory, is not UTF-8 text, or cannot be read.",
     "wmap check specs/port.wmap   (check the path)"),
    ("WM116", "spec too large or too deep",
     "wmap reads specs up to 4 MB and YAML nested to a sane depth; a mapping spec is a few hundred "
     "lines, because patterns generate rules.",
     "replace 300 per-layer rules with `layers.{i:int}.q -> blocks.{i}.q`"),
    ("WM117", "unresolved mapping left by `wmap init`",
     "`wmap init` writes `| unresolved` (or `= unresolved`) where it could not decide what a tensor "
     "maps to. The marker is never valid, so the spec fails `wmap check` until a person decides.",
     "head.weight -> head.weight | unresolved   ->   head.weight -> classifier.weight\n"
     "(or replace the rule with `drop head.weight`)"),
    ("WM118", "reference to nothing",
     "A `$name` in a transform or initialiser argument (or in index arithmetic, `{i+$first}`), or a name "
     "inside a `let`, refers to no `let` bound before it. Lets are evaluated in file order.",
     "let heads = config.num_attention_heads\nq.weight -> q.kernel | reshape($heads, -1)"),
    ("WM119", "bad `let` expression",
     "A `let` calls a function wmap does not have, or calls one with the wrong number of arguments. "
     "Expressions have numbers, strings, `config.KEY`, earlier lets, `+ - * / // %`, `a ?? b` (b when a "
     "is absent or null), and `min`, `max`, `int`.",
     "let d = int(config.hidden_size / config.num_attention_heads)"),
    ("WM121", "the config has no such key",
     "A `let` reads `config.KEY`, and the model's config (the `config.json` the spec names, or --config) "
     "has no such key. Models of one family spell some sizes differently or leave them out; give a "
     "default with `??`.",
     "let head_dim = config.head_dim ?? config.hidden_size // config.num_attention_heads"),
    ("WM122", "a config value of the wrong kind",
     "A `let` computes with a value that is not a number (a string, a list, an object), divides by zero, "
     "binds an object, or index arithmetic (`{i+$n}`) gets something that is not a whole number >= 0.",
     "let n = config.num_experts          # not config.moe (an object)"),
    ("WM123", "a `let` reads a config, but there is none",
     "A `let` reads `config.KEY`, but the spec says nowhere where the config is and none was passed.",
     "config \"config.json\"      (beside the spec), or: config src   (the config.json beside src's checkpoint), "
     "or --config PATH"),
    ("WM124", "a rule expands past wmap's bounds",
     "A target template's alternations multiply (`{a,b}` ten times is 1024 names per source tensor) and "
     "each `| transform` is a step wmap checks and runs; a rule may name at most 4096 targets per source "
     "and chain at most 256 transforms, so a spec cannot make planning (or `wmap check`) run for hours.",
     "write the targets with a capture (`layers.{i:int}.w -> blocks.{i}.w`) instead of listing them, "
     "and a preset or `layout(...)` instead of a long chain"),
    ("WM125", "a `use` names nothing",
     "`use \"PATH\"` brings in another spec's statements. A name ending in .wmap, .yaml or .yml is a file "
     "relative to the spec that says `use` (not to the current folder, so a repository of mapping files "
     "works from anywhere); any other name is a recipe under wmap/recipes/ (`hf_to_keras_hub/llama3`). "
     "wmap refuses a `use` it cannot find rather than run the spec without those rules.",
     "use \"llama3.wmap\"   (a file beside this spec)   or   use \"hf_to_keras_hub/llama3\"   (see `wmap recipes`)"),
    ("WM126", "`use`s that go round in a cycle",
     "A spec that uses itself, directly or through others (a.wmap uses b.wmap, which uses a.wmap), has no "
     "first statement, so wmap refuses it and names the cycle. `use`s may also nest at most 32 deep.",
     "move the rules both files need into a third file, and `use` it from each"),
    ("WM127", "specs that declare one thing differently",
     "A spec and the specs it uses are merged into one. The same declaration in two of them (source, target, "
     "config, option, `let`) is fine when it says the same thing, and a source or target left open (no "
     "location) is filled in by another's; two that differ are refused, since which one won would depend on "
     "the order of the `use`s. (The file being loaded may name its own source and target locations: they "
     "replace the used specs', as --source and --target do; frameworks may not differ.) The same file "
     "reached twice with different `| steps` is refused too.",
     "keep `let heads = config.num_attention_heads` in the used spec only, or give the new value another name"),
    ("WM130", "a step that cannot run backwards",
     "`wmap invert` and `--reverse` turn every rule around and replace each transform by its inverse. "
     "Some steps have none: they lose information (`prune`, `lerp`, `cast`, `average`), create values "
     "(`init`), pick their transform from the models (`layout(auto)`), or do not state what they undo "
     "(`reshape(...)` does not say the shape it reshapes from), or index arithmetic other than + and -.",
     "rearrange(\"e (h d) -> e h d\", h=$heads)   (instead of reshape(-1, $heads, $head_dim): names its axes, inverts)"),
    ("WM131", "a rule with several source patterns cannot be reversed",
     "A reverse rule has one source pattern and one target template, so a forward rule that reads several "
     "patterns (or several named sources) has no reverse: the reverse would not know which target each "
     "part goes to.",
     "{q,k,v}_proj.weight -> qkv.weight | concat(0)   (one pattern with an alternation: the reverse fans out over it)"),
    ("WM140", "an `ack` that can acknowledge nothing",
     "`ack CODE PATTERN` marks a plan warning as reviewed. CODE must be one of the warnings a plan "
     "can carry (the same-shape traps WM310-WM314, WM213, and WM401/WM402 under `option strict = false`); "
     "errors cannot be acknowledged, they must be fixed.",
     "ack WM301 fc.weight   ->   fix the shape (wmap explain WM301); ack WM310 fc.kernel for a reviewed warning"),
    # -- 2xx: matching -------------------------------------------------------------------------
    ("WM201", "rule matched nothing",
     "A rule's source pattern matched no source tensor (first matching rule claims a tensor, so an "
     "earlier rule may have taken them). A rule that matches nothing is usually a typo or a wrapper "
     "prefix; mark it `optional` only if it really may match nothing.",
     "option strip_prefix = \"module.\"   (the hint names the prefix), or `optional a.** -> b.**`"),
    ("WM202", "statement matched nothing",
     "A `drop`, `init`, `keep`, `freeze` or `lr` pattern matched no tensor (for init/keep: no target "
     "that is still unfilled). Start the pattern with `?` if it may legitimately match nothing.",
     "drop **.num_batches_tracked   ->   drop ?**.num_batches_tracked"),
    ("WM203", "a target lacks an input",
     "In a rule with several source patterns, each target needs one tensor from every pattern; for "
     "this target one of them matched nothing.",
     "base:x, tuned:x -> x | lerp(0.5)   (check both sources hold `x`)"),
    ("WM204", "rule writes tensors the target does not have",
     "The target template produced names the target model or template checkpoint does not hold.",
     "fc.weight -> head.weight   ->   fc.weight -> classifier.weight  (see the nearest names in the hint)"),
    ("WM205", "target written twice",
     "Two rules (or two groups of sources in one rule) write the same target tensor. Exactly-once "
     "accounting makes this an error that names both rules.",
     "remove one rule, or narrow the earlier rule's pattern"),
    ("WM206", "several inputs, no fan-in transform",
     "A rule feeds several source tensors into one target, but its chain has no transform that "
     "combines them.",
     "{q,k,v}.weight -> qkv.weight   ->   {q,k,v}.weight -> qkv.weight | concat(0)"),
    ("WM207", "bad fan-out or copy source",
     "A rule writes several targets from one tensor without a fan-out transform (split, chunk, a "
     "fan-out preset), a transform that must be last is not, or `copy(\"name\")` names a source "
     "tensor that does not exist.",
     "qkv.weight -> {q,k,v}.weight   ->   qkv.weight -> {q,k,v}.weight | split(0)"),
    ("WM208", "init or keep overlaps a filled target",
     "An `init` or `keep` pattern also matches a target that a rule (or an earlier statement) already "
     "fills. init and keep are for targets nothing else fills.",
     "init head.** = zeros   ->   init head.bias = zeros"),
    ("WM210", "prefix stripping makes names collide",
     "`strip_prefix` turns two different source tensors into the same visible name.",
     "strip a longer prefix, or address those tensors by their full names"),
    ("WM211", "a fan-in's index is not a clean range",
     "The sources that land on one target (stacked experts, concatenated tensor-parallel shards, "
     "an alternation fan-in) are put in the order of the captures the target does not bind: "
     "integers numerically, other text with digit runs compared as numbers, alternations as "
     "written. That order is only meaningful if the index is complete: a gap (expert 7 missing), "
     "one index spelled twice (`01` beside `1`), an alternation option with no tensor, or two "
     "indices that do not fill their grid would silently put weights in the wrong slots.",
     "layers.{l:int}.experts.{e:int}.w1.weight -> layers.{l}.experts.w1 | stack(0)\n"
     "(the checkpoint lacks experts.7: restore it, or map the experts that exist explicitly)"),
    ("WM212", "an acknowledgement matched no warning (warning)",
     "An `ack CODE PATTERN` in the spec matched no warning of the plan: the warning it was written for "
     "is gone (the spec or the models changed) or the pattern names other tensors. Like a rule that "
     "matches nothing, a stale acknowledgement is reported, so it cannot silently hide the next warning "
     "of that code.",
     "delete the `ack` line, or correct its code or pattern (the plan's warnings name the tensors)"),
    ("WM213", "`lr` on frozen tensors",
     "A frozen tensor does not train, so an `lr` multiplier on it does nothing. When every tensor an "
     "`lr` statement matches is frozen the statement is an error (it cannot have any effect); when only "
     "some are, the plan warns and names them, since those tensors silently get no multiplier.",
     "freeze stem.**  +  lr stem.** * 0.1   ->   drop one of the two, or narrow the lr pattern"),
    # -- 3xx: shapes and dtypes ----------------------------------------------------------------
    ("WM301", "shape mismatch",
     "The transform chain's output shape differs from the target's shape (or a transform cannot "
     "accept its input). Shapes are checked before any weight is read.",
     "fc.weight -> fc.kernel   ->   fc.weight -> fc.kernel | linear_to_dense"),
    ("WM302", "dtype not converted implicitly",
     "The result's dtype differs from the target's and the dtype policy does not allow the cast: "
     "narrowing (float32 -> bfloat16) loses precision, so wmap asks you to say so.",
     "x -> y   ->   x -> y | cast(bfloat16)   (or `option dtype = \"target\"`)"),
    ("WM304", "`layout(auto)` cannot decide",
     "`layout(auto)` picks a PyTorch <-> Keras preset from the layer kinds, parameter roles and "
     "frameworks; here one is missing or unknown (a checkpoint file carries no layer kinds), or the "
     "pair has no rule. It refuses to guess.",
     "fc.weight -> fc.kernel | layout   ->   fc.weight -> fc.kernel | linear_to_dense"),
    ("WM310", "cross-framework move with no layout transform (warning)",
     "A tensor of 2 or more dims moves between PyTorch and Keras unchanged, and a transposed layout "
     "would have the same shape, so the shape check cannot catch a layout error.",
     "fc.weight -> fc.kernel   ->   fc.weight -> fc.kernel | linear_to_dense"),
    ("WM311", "split into equal blocks (warning)",
     "A fused tensor splits into blocks of equal size; a wrong block order or interleaving has the "
     "same shapes, so only you can confirm the order.",
     "check the order: qkv.weight -> {q,k,v}.weight | split(0)"),
    ("WM312", "recurrent gate order (warning)",
     "A recurrent layer crosses frameworks without a gate-aware transform; PyTorch and Keras order "
     "GRU gates differently.",
     "gru.weight_ih_l0 -> gru.kernel | gru_kernel_to_keras"),
    ("WM313", "normalisation epsilon differs (warning)",
     "The source and target normalisation layers use different epsilons, so outputs differ slightly "
     "even with identical weights.",
     "build the Keras layer with BatchNormalization(epsilon=1e-5)"),
    ("WM314", "a step wmap cannot check (warning)",
     "A layout that depends on what the models do between layers, not on the tensors: a Linear that "
     "follows a Flatten reads its input in the source's flattening order (channels-first in PyTorch, "
     "channels-last in Keras), and neither a checkpoint nor a layer says a Flatten came before it. "
     "`linear_to_dense` and `layout(auto)` treat it as any Linear.",
     "fc.weight -> dense.kernel | flatten_dense_to_keras(c, h, w)   (or `ack WM314 dense.kernel` once checked)"),
    # -- 4xx: coverage -------------------------------------------------------------------------
    ("WM401", "target tensors left unfilled",
     "In strict mode every target tensor must be filled by a rule, initialised, or kept. The hint "
     "names the nearest unused sources.",
     "init head.** = normal(std=0.02)   or   keep head.**   or a rule that fills them"),
    ("WM402", "source tensors neither mapped nor dropped",
     "In strict mode every source tensor must be used or dropped deliberately, so nothing is lost "
     "by accident.",
     "drop **.num_batches_tracked   (or map them)"),
    # -- 5xx: backends, files and I/O ----------------------------------------------------------
    ("WM500", "cannot read a checkpoint",
     "The path does not exist or the file cannot be read (permissions, I/O error).",
     "--source checkpoints/model.safetensors   (check the path; the hint lists near names)"),
    ("WM501", "format or framework not recognised",
     "wmap does not recognise the file format, the object, or the framework name, a directory holds "
     "several candidate checkpoints, or a framework needed to read it is not installed.",
     "pass one file, e.g. model.safetensors, or `pip install wmap[torch]`"),
    ("WM502", "Keras model not built",
     "A Keras layer has no variables yet, so there is nothing to inventory.",
     "call `model.build(input_shape)` (or call it on data) before handing it to wmap"),
    ("WM503", "tensor has no data or does not exist",
     "A read asked for a tensor the source does not hold, or a tensor on the meta device, which has "
     "shapes but no values.",
     "pass a model with real weights (not built on the meta device) as the source"),
    ("WM504", "bad safetensors header",
     "The file is too short, its header is truncated, too large, or not valid JSON of the expected "
     "structure, or a name in it is not valid Unicode (a `\\ud800` escape decodes to a lone surrogate, "
     "which the safetensors library refuses too and no output could store).",
     "re-export the checkpoint; the file is damaged or not safetensors"),
    ("WM505", "bad safetensors data layout",
     "Tensor data offsets are out of range, overlap, leave holes, or do not match shape x dtype.",
     "re-export the checkpoint; the file is damaged"),
    ("WM506", "unsupported dtype",
     "A tensor has a dtype wmap cannot plan with (or the output format cannot store).",
     "cast it in the exporting framework first, e.g. to float32"),
    ("WM507", "bad sharded checkpoint index",
     "A sharded checkpoint's index is not valid JSON, lacks `weight_map`, names a missing shard or "
     "one outside the directory, or disagrees with what the shards hold.",
     "regenerate model.safetensors.index.json with the shards"),
    ("WM508", "pickle carrying code refused",
     "The checkpoint would need to unpickle code (not only tensors and plain containers). wmap never "
     "runs code from a weights file.",
     "convert it once, where you trust it:\nsafetensors.torch.save_file(state_dict, 'model.safetensors')"),
    ("WM509", "bad Keras or HDF5 file",
     "A `.keras`, `.weights.h5` or `.h5` file lacks the expected groups or attributes, is damaged, or "
     "reaches outside itself. Every group and dataset must be reached through hard links: external links "
     "(which would read another file on the machine) and soft links are refused, and so are datasets with "
     "external storage or virtual datasets. Nothing allocates what the file merely declares: a dataset may "
     "declare at most 100 bytes per byte HDF5 has stored for it (the first MiB is free), so unwritten "
     "chunks read as a fill value are refused, and a `.keras` archive's members are checked the same way "
     "(and must lie where the zip says) before anything is inflated.",
     "re-save with model.save_weights('model.weights.h5')"),
    ("WM510", "bad PyTorch checkpoint or archive",
     "The file is not a readable PyTorch checkpoint or .npz archive, holds no tensors, or holds two "
     "tensors of the same name; or it does not hold what it declares: a storage or `.npy` member with "
     "fewer (or more) bytes than its shape x dtype, a member whose bytes run into the next one, a "
     "compressed member that would expand more than 100x (a zip bomb, refused from its declared size); or "
     "it holds a tensor wmap cannot read: a sparse or nested layout, a view outside its storage, or zero "
     "or overlapping strides that declare more than 100x the bytes they span.",
     "save the state dict: torch.save(model.state_dict(), 'model.pt')"),
    ("WM511", "factory failed",
     "A `module:callable` target or source could not be imported, is not callable, or raised when "
     "called. The message carries the original error.",
     "target torch \"mypkg.models:build\"   (the module must be importable from the spec's folder)"),
    ("WM512", "cannot write the output",
     "The output cannot be written (missing folder, permissions, disk full, a file where a directory "
     "was asked for). Nothing was changed: outputs appear only when complete.",
     "--out out/model.safetensors   (create `out/` first)"),
    ("WM513", "bad TensorFlow checkpoint",
     "The path is not a readable TensorFlow checkpoint (no `.index` file, a `.data-*` shard missing or not "
     "a regular file, or a variable cannot be read), or a folder's `checkpoint` state file names a prefix "
     "outside that folder, which wmap refuses before TensorFlow opens it.",
     "pass the checkpoint prefix, e.g. ckpt/model.ckpt-1000"),
    ("WM514", "output written out of plan order",
     "A writer received a tensor twice, out of order, of the wrong shape, or was committed with "
     "tensors missing. This is a bug in a backend; please report it.",
     "rerun with WMAP_DEBUG=1 and report the traceback"),
    ("WM515", "cannot read the model config",
     "The config a spec's `let`s read is missing, not a regular file, larger than 16 MB, not UTF-8 JSON, "
     "or not a JSON object at its top. `config NAME` reads the `config.json` in the folder of source "
     "NAME's checkpoint, where Hugging Face keeps it.",
     "--config path/to/config.json"),
    ("WM520", "not a valid saved plan",
     "The file given to `apply`/`verify`/`diff` as a plan is unreadable, of another format version, "
     "or damaged.",
     "wmap plan port.wmap -o plan.json   (re-create it)"),
    ("WM521", "missing or unusable argument",
     "A command lacks an input it needs (no source, no target, no --out), got several sources "
     "without names, or was given a name it does not know.",
     "wmap apply port.wmap --out ported.safetensors"),
    ("WM522", "cannot run distributed",
     "A distributed apply (`--distributed`, `wmap.run.distributed.apply`) reads byte ranges of safetensors "
     "sources (one file, or shards with an index) and writes into parameters placed with `Shard`/`Replicate` "
     "on a device mesh, or into a new DCP checkpoint folder. Another source format, a parameter still on "
     "the meta device, another placement, an output folder that already exists, or no process group is "
     "refused on every rank before anything is read.",
     "torchrun --nproc-per-node 4 -m wmap apply port.wmap --distributed --out ckpt/step0"),
    # -- 6xx: execution ------------------------------------------------------------------------
    ("WM601", "a step failed while applying",
     "Executing a planned step raised. Nothing was written: outputs are atomic.",
     "the message names the step and rule; rerun with WMAP_DEBUG=1 for a traceback"),
    ("WM602", "cannot write into the target",
     "The target model lacks a planned tensor, has no values to keep (meta device, not a checkpoint), "
     "or a value does not fit.",
     "`keep` needs real target values: pass a checkpoint as --target"),
    ("WM603", "non-finite values",
     "A value about to land holds NaN or Inf (from the source, or from a cast that overflowed), and the "
     "spec asks for `option nonfinite = \"error\"`: nothing was written.",
     "fix the checkpoint, or: option nonfinite = \"warn\""),
    ("WM604", "inputs changed since the plan",
     "A saved plan pins fingerprints of every source and the target; one of them changed, so the "
     "plan no longer describes what would happen.",
     "wmap plan port.wmap -o plan.json   (plan again against the current files)"),
    ("WM605", "ranks planned differently",
     "In a distributed apply every rank compiles the plan from the same headers and compares a digest of "
     "it with the others before reading anything; they differed, so the ranks see different files, specs "
     "or wmap versions. Nothing was read or written.",
     "run every rank from the same checkout against one shared copy of the checkpoint"),
    ("WM606", "another rank failed",
     "In a distributed apply every rank stages its part and the ranks exchange verdicts before the first "
     "write; a rank failed (its message is quoted), so no rank wrote anything.",
     "fix what the failing rank reports; its own error is printed by that rank"),
    ("WM607", "copies of one tensor differ",
     "`deduplicate` writes one tensor from several that were copies of it (`duplicate` made them, or the "
     "other side keeps one weight in several places); they no longer hold the same values, so no one of "
     "them is the tensor. Nothing was written.",
     "choose one copy in the spec (map it, drop the others), or make them equal in the model first"),
)

CODES: dict[str, DiagnosticCode] = {c: DiagnosticCode(c, t, e, f) for c, t, e, f in _ENTRIES}

# The warnings a plan can carry, which `ack CODE PATTERN` may mark as reviewed (errors must be fixed).
ACKNOWLEDGEABLE = frozenset({"WM213", "WM310", "WM311", "WM312", "WM313", "WM314", "WM401", "WM402"})


def lookup(code: str) -> DiagnosticCode | None:
    """The entry for `code` (any case, with or without the `WM`), or None."""
    key = code.strip().upper()
    if key.isdigit():
        key = "WM" + key
    return CODES.get(key)


__all__ = ["ACKNOWLEDGEABLE", "CODES", "DiagnosticCode", "STAGES", "lookup"]
