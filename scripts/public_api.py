#!/usr/bin/env python3
"""conpaas-core's public API, listed from rustdoc's JSON, and the foreign types it names.

Reads the JSON rustdoc writes for the crate (scripts/public-api.sh makes it) and prints one
line per public item reachable from the crate root: every path an item can be named by, its
signature, the fields and variants of its types, the methods and trait impls (auto traits
included: losing `Send` breaks callers). Blanket impls are left out: they follow from the rest.

With --external-types FILE it also checks that every type of another crate the API names
(outside std, core and alloc) matches a pattern of FILE ("crate::path::Type", or "crate::*"),
and that every pattern still matches something, as cargo-check-external-types does for rustls.

Only the standard library: runs wherever CI does.
"""

import argparse
import fnmatch
import json
import sys

STD_CRATES = {"std", "core", "alloc"}


class Api:
    def __init__(self, doc):
        self.doc = doc
        self.index = doc["index"]
        self.paths = doc["paths"]
        self.crates = doc["external_crates"]
        self.lines = set()
        # (foreign path, the API line naming it)
        self.external = []
        self._current = None
        self._seen = set()

    # ---- names -------------------------------------------------------------------------

    def item(self, item_id):
        return self.index.get(str(item_id))

    def foreign_path(self, item_id):
        """`crate::path::Name` of an item of another crate, or None for this crate's."""
        summary = self.paths.get(str(item_id))
        if summary is None or summary["crate_id"] == 0:
            return None
        return "::".join(summary["path"])

    def note(self, item_id, shown):
        """Records a foreign type met while rendering the current line."""
        path = self.foreign_path(item_id)
        if path is None:
            return
        crate = path.split("::", 1)[0]
        if crate not in STD_CRATES:
            self.external.append((path, shown))

    # ---- types -------------------------------------------------------------------------

    def ty(self, t):
        if t is None:
            return "()"
        (kind, v), = t.items()
        if kind == "resolved_path":
            return self.resolved(v)
        if kind == "dyn_trait":
            bounds = [self.poly_trait(p) for p in v["traits"]]
            if v.get("lifetime"):
                bounds.append(v["lifetime"])
            return "dyn " + " + ".join(bounds)
        if kind == "generic":
            return v
        if kind == "primitive":
            return v
        if kind == "function_pointer":
            sig = self.sig(v["sig"], named=False)
            return f"fn{sig}"
        if kind == "tuple":
            inner = ", ".join(self.ty(x) for x in v)
            return f"({inner},)" if len(v) == 1 else f"({inner})"
        if kind == "slice":
            return f"[{self.ty(v)}]"
        if kind == "array":
            return f"[{self.ty(v['type'])}; {v['len']}]"
        if kind == "pat":
            return self.ty(v["type"])
        if kind == "impl_trait":
            return "impl " + " + ".join(self.bound(b) for b in v)
        if kind == "infer":
            return "_"
        if kind == "raw_pointer":
            return ("*mut " if v["is_mutable"] else "*const ") + self.ty(v["type"])
        if kind == "borrowed_ref":
            lifetime = v["lifetime"] + " " if v.get("lifetime") else ""
            mutable = "mut " if v["is_mutable"] else ""
            return f"&{lifetime}{mutable}{self.ty(v['type'])}"
        if kind == "qualified_path":
            self_type = self.ty(v["self_type"])
            if v.get("trait"):
                return f"<{self_type} as {self.resolved(v['trait'])}>::{v['name']}"
            return f"{self_type}::{v['name']}"
        return f"<{kind}?>"

    def resolved(self, p):
        """A path as written for std's types (`Option`, `Result`), else in full: `Error` is
        the name of a dozen types here."""
        shown = p["path"]
        if p.get("id") is not None:
            self.note(p["id"], shown)
            summary = self.paths.get(str(p["id"]))
            if summary is not None:
                crate = self.crate_name(summary["crate_id"])
                if crate not in STD_CRATES:
                    shown = "::".join(summary["path"])
        return shown + self.args(p.get("args"))

    def crate_name(self, crate_id):
        if crate_id == 0:
            return self.index[str(self.doc["root"])]["name"]
        return self.crates[str(crate_id)]["name"]

    def args(self, a):
        if not a:
            return ""
        (kind, v), = a.items()
        if kind == "angle_bracketed":
            parts = []
            for arg in v["args"]:
                (k, x), = arg.items()
                if k == "lifetime":
                    parts.append(x)
                elif k == "type":
                    parts.append(self.ty(x))
                elif k == "const":
                    parts.append(x.get("expr", "_"))
                else:
                    parts.append("_")
            for c in v["constraints"]:
                binding = c["binding"]
                (bk, bv), = binding.items()
                if bk == "equality":
                    (tk, tv), = bv.items()
                    value = self.ty(tv) if tk == "type" else tv.get("expr", "_")
                    parts.append(f"{c['name']} = {value}")
                else:
                    parts.append(f"{c['name']}: " + " + ".join(self.bound(b) for b in bv))
            return "<" + ", ".join(parts) + ">" if parts else ""
        if kind == "parenthesized":
            inputs = ", ".join(self.ty(x) for x in v["inputs"])
            output = f" -> {self.ty(v['output'])}" if v.get("output") else ""
            return f"({inputs}){output}"
        return ""

    def poly_trait(self, p):
        lifetimes = [g["name"] for g in p.get("generic_params", [])]
        prefix = f"for<{', '.join(lifetimes)}> " if lifetimes else ""
        return prefix + self.resolved(p["trait"])

    def bound(self, b):
        (kind, v), = b.items()
        if kind == "trait_bound":
            modifier = {"none": "", "maybe": "?", "maybe_const": "~const "}.get(v["modifier"], "")
            lifetimes = [g["name"] for g in v.get("generic_params", [])]
            prefix = f"for<{', '.join(lifetimes)}> " if lifetimes else ""
            return prefix + modifier + self.resolved(v["trait"])
        if kind == "outlives":
            return v
        if kind == "use":
            return "use<..>"
        return "?"

    def generics(self, g):
        params = []
        for p in g["params"]:
            (kind, v), = p["kind"].items()
            if kind == "lifetime":
                params.append(p["name"])
            elif kind == "type":
                if v.get("is_synthetic"):
                    continue
                bounds = " + ".join(self.bound(b) for b in v["bounds"])
                params.append(p["name"] + (f": {bounds}" if bounds else ""))
            elif kind == "const":
                params.append(f"const {p['name']}: {self.ty(v['type'])}")
        head = "<" + ", ".join(params) + ">" if params else ""
        wheres = []
        for w in g["where_predicates"]:
            (kind, v), = w.items()
            if kind == "bound_predicate":
                bounds = " + ".join(self.bound(b) for b in v["bounds"])
                wheres.append(f"{self.ty(v['type'])}: {bounds}")
            elif kind == "lifetime_predicate":
                wheres.append(f"{v['lifetime']}: " + " + ".join(v["outlives"]))
            elif kind == "eq_predicate":
                wheres.append(f"{self.ty(v['lhs'])} = {self.ty(v['rhs'].get('type'))}")
        tail = " where " + ", ".join(wheres) if wheres else ""
        return head, tail

    def sig(self, s, named=True):
        inputs = []
        for name, t in s["inputs"]:
            rendered = self.ty(t)
            if name == "self":
                if rendered == "Self":
                    inputs.append("self")
                elif rendered == "&Self":
                    inputs.append("&self")
                elif rendered == "&mut Self":
                    inputs.append("&mut self")
                else:
                    inputs.append(f"self: {rendered}")
            else:
                inputs.append(f"{name}: {rendered}" if named else rendered)
        output = f" -> {self.ty(s['output'])}" if s.get("output") else ""
        return f"({', '.join(inputs)}){output}"

    def function(self, path, f):
        header = f["header"]
        prefix = "".join(
            word
            for flag, word in (
                ("is_const", "const "),
                ("is_async", "async "),
                ("is_unsafe", "unsafe "),
            )
            if header.get(flag)
        )
        head, tail = self.generics(f["generics"])
        return f"pub {prefix}fn {path}{head}{self.sig(f['sig'])}{tail}"

    # ---- items -------------------------------------------------------------------------

    def emit(self, line):
        self.lines.add(line)

    def flags(self, item):
        return "#[non_exhaustive] " if "non_exhaustive" in item.get("attrs", []) else ""

    def visit(self, item_id, path):
        key = (item_id, path)
        if key in self._seen:
            return
        self._seen.add(key)
        item = self.item(item_id)
        if item is None:
            foreign = self.foreign_path(item_id)
            if foreign is not None:
                self.note(item_id, foreign)
                self.emit(f"pub use {foreign} as {path}")
            return
        (kind, inner), = item["inner"].items()
        if kind == "module":
            self.emit(f"pub mod {path}")
            for child in inner["items"]:
                self.child(child, path)
        elif kind == "struct":
            head, tail = self.generics(inner["generics"])
            self.emit(f"{self.flags(item)}pub struct {path}{head}{tail}")
            (skind, sv), = inner["kind"].items() if isinstance(inner["kind"], dict) else (
                (inner["kind"], None),
            )
            if skind == "plain":
                for field in sv["fields"]:
                    f = self.item(field)
                    self.emit(f"pub {path}::{f['name']}: {self.ty(f['inner']['struct_field'])}")
                if sv["has_stripped_fields"]:
                    self.emit(f"{path}: private fields")
            elif skind == "tuple":
                for n, field in enumerate(sv):
                    if field is None:
                        self.emit(f"{path}.{n}: private")
                    else:
                        f = self.item(field)
                        self.emit(f"pub {path}.{n}: {self.ty(f['inner']['struct_field'])}")
            self.impls(inner["impls"], path)
        elif kind == "enum":
            head, tail = self.generics(inner["generics"])
            self.emit(f"{self.flags(item)}pub enum {path}{head}{tail}")
            for variant in inner["variants"]:
                v = self.item(variant)
                self.variant(f"{path}::{v['name']}", v)
            self.impls(inner["impls"], path)
        elif kind == "union":
            self.emit(f"pub union {path}")
            self.impls(inner["impls"], path)
        elif kind == "function":
            self.emit(self.function(path, inner))
        elif kind == "trait":
            head, tail = self.generics(inner["generics"])
            bounds = " + ".join(self.bound(b) for b in inner["bounds"])
            bounds = f": {bounds}" if bounds else ""
            unsafe = "unsafe " if inner["is_unsafe"] else ""
            self.emit(f"pub {unsafe}trait {path}{head}{bounds}{tail}")
            for member in inner["items"]:
                self.assoc(member, path, in_trait=True)
        elif kind == "constant":
            self.emit(f"pub const {path}: {self.ty(inner['type'])}")
        elif kind == "static":
            self.emit(f"pub static {path}: {self.ty(inner['type'])}")
        elif kind == "type_alias":
            head, _ = self.generics(inner["generics"])
            self.emit(f"pub type {path}{head} = {self.ty(inner['type'])}")
        elif kind == "macro":
            self.emit(f"macro {path}!")
        elif kind == "proc_macro":
            self.emit(f"proc macro {path}")
        elif kind == "use":
            self.child(item_id, path.rsplit("::", 1)[0])
        else:
            self.emit(f"{kind} {path}")

    def child(self, child_id, parent):
        item = self.item(child_id)
        if item is None:
            return
        inner = item["inner"]
        if "use" in inner:
            use = inner["use"]
            target = use.get("id")
            if use["is_glob"]:
                module = self.item(target) if target is not None else None
                if module is not None and "module" in module["inner"]:
                    for grandchild in module["inner"]["module"]["items"]:
                        self.child(grandchild, parent)
                elif module is not None and "enum" in module["inner"]:
                    for variant in module["inner"]["enum"]["variants"]:
                        v = self.item(variant)
                        self.emit(f"pub use {use['source']}::{v['name']} as {parent}::{v['name']}")
                else:
                    self.emit(f"pub use {use['source']}::* in {parent}")
                return
            if target is None:
                self.emit(f"pub use {use['source']} as {parent}::{use['name']}")
                return
            self.visit(target, f"{parent}::{use['name']}")
            return
        if item.get("name") is None:
            return
        self.visit(child_id, f"{parent}::{item['name']}")

    def variant(self, path, v):
        inner = v["inner"]["variant"]
        (kind, value), = inner["kind"].items() if isinstance(inner["kind"], dict) else (
            (inner["kind"], None),
        )
        if kind == "plain":
            self.emit(f"{path}")
        elif kind == "tuple":
            fields = []
            for field in value:
                if field is None:
                    fields.append("_")
                else:
                    fields.append(self.ty(self.item(field)["inner"]["struct_field"]))
            self.emit(f"{path}({', '.join(fields)})")
        elif kind == "struct":
            self.emit(f"{self.flags(v)}{path} {{ .. }}")
            for field in value["fields"]:
                f = self.item(field)
                self.emit(f"{path}::{f['name']}: {self.ty(f['inner']['struct_field'])}")
            if value["has_stripped_fields"]:
                self.emit(f"{path}: private fields")

    def impls(self, impl_ids, path):
        for impl_id in impl_ids:
            item = self.item(impl_id)
            if item is None:
                continue
            imp = item["inner"]["impl"]
            if imp.get("blanket_impl") is not None:
                continue
            head, tail = self.generics(imp["generics"])
            if imp.get("trait") is not None:
                negative = "!" if imp["is_negative"] else ""
                trait = self.resolved(imp["trait"])
                self.emit(f"impl{head} {negative}{trait} for {self.ty(imp['for'])}{tail}")
                # A trait's own items are the trait's: only associated types and constants
                # chosen by this impl are part of this type's API.
                for member in imp["items"]:
                    m = self.item(member)
                    if m is None:
                        continue
                    if "assoc_type" in m["inner"]:
                        t = m["inner"]["assoc_type"].get("type")
                        self.emit(
                            f"impl {trait} for {self.ty(imp['for'])}: type {m['name']} = {self.ty(t)}"
                        )
                continue
            for member in imp["items"]:
                self.assoc(member, path, in_trait=False)

    def assoc(self, member_id, path, in_trait):
        m = self.item(member_id)
        if m is None:
            return
        if not in_trait and m.get("visibility") != "public":
            return
        (kind, inner), = m["inner"].items()
        name = f"{path}::{m['name']}"
        if kind == "function":
            line = self.function(name, inner)
            if in_trait and not inner.get("has_body"):
                line += " (required)"
            self.emit(line)
        elif kind == "assoc_const":
            self.emit(f"pub const {name}: {self.ty(inner['type'])}")
        elif kind == "assoc_type":
            bounds = " + ".join(self.bound(b) for b in inner.get("bounds", []))
            self.emit(f"type {name}" + (f": {bounds}" if bounds else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", help="rustdoc's JSON of the crate")
    parser.add_argument("--external-types", metavar="FILE", help="the allow-list to check")
    args = parser.parse_args()
    with open(args.json, encoding="utf-8") as f:
        doc = json.load(f)
    api = Api(doc)
    root = doc["root"]
    crate_name = api.item(root)["name"]
    api._seen.add((root, crate_name))
    for child in api.item(root)["inner"]["module"]["items"]:
        api.child(child, crate_name)
    sys.stdout.write("".join(line + "\n" for line in sorted(api.lines)))

    if args.external_types:
        with open(args.external_types, encoding="utf-8") as f:
            patterns = [
                line.split("#", 1)[0].strip()
                for line in f
                if line.split("#", 1)[0].strip()
            ]
        used = {pattern: 0 for pattern in patterns}
        unlisted = {}
        for path, shown in api.external:
            matched = [p for p in patterns if fnmatch.fnmatchcase(path, p)]
            for p in matched:
                used[p] += 1
            if not matched:
                unlisted.setdefault(path, shown)
        failed = False
        for path in sorted(unlisted):
            print(f"E: the public API names {path}, which {args.external_types} does not allow",
                  file=sys.stderr)
            failed = True
        for pattern, n in used.items():
            if n == 0:
                print(f"E: {args.external_types}: {pattern!r} matches no type of the public API "
                      "(remove it)", file=sys.stderr)
                failed = True
        if failed:
            sys.exit(1)


if __name__ == "__main__":
    main()
